"""Load data from AWS (S3, Kinesis) into PostgreSQL-protocol warehouses.

The engine (config, sources, formats, filters, warehouse) never imports Dagster;
``pipeline.definitions`` is the Dagster code location built on top of it.
"""

__version__ = "0.1.0"
