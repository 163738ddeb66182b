"""``pipeline bench``: this project's speed and memory, each figure next to its reference.

One run on the local stack measures the bulk S3 load against ``psql \\copy`` (the floor) and a
bare boto3 loop, peak memory against object size, parallel objects, the S3 sensor's tick against
listing everything, and Kinesis throughput and latency against a bare GetRecords loop. It prints
a table, writes the results as JSON and rewrites ``docs/benchmarks.md`` (with charts when
matplotlib is installed).

Modules: ``harness`` (stack, names, tables, configs), one module per section (``load``,
``memory``, ``parallel``, ``sensor``, ``stream``), ``results`` (the figures), ``report`` (table
and markdown), ``charts`` and ``runner`` (one run from start to end).
"""
