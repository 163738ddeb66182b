"""Load data from AWS (S3, Kinesis) into PostgreSQL-protocol warehouses.

The engine (config, sources, formats, filters, warehouse) never imports Dagster;
``pipeline.definitions`` is the Dagster code location built on top of it, from the ``dg`` defs
folder ``pipeline/defs``. The Dagster Components ``pipeline.EmbulkLoad`` and
``pipeline.EmbulkLoadCollection`` and the translator are imported on first use, so that
``pipeline run`` never loads Dagster.
"""

__version__ = "0.1.0"

_COMPONENTS = {
    "EmbulkLoad": "pipeline.components",
    "EmbulkLoadCollection": "pipeline.components",
    "PipelineTranslator": "pipeline.orchestration.translation",
}


def __getattr__(name: str):
    if name in _COMPONENTS:
        import importlib

        return getattr(importlib.import_module(_COMPONENTS[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_COMPONENTS])
