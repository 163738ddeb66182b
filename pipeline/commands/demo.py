"""``pipeline demo``: the whole mission on the local stack, from sample data to loaded tables.

Brings the stack up, generates the tutorials' data (book orders under ``original-data/`` in
plaintext and under ``encryption-data/`` with SSE-KMS; sensor records in the stream), then
materializes both pipelines through Dagster, on the stack's PostgreSQL storage, and prints what
landed. Running it again adds new sensor records; the book orders are the same objects, so the
ledger says they are already loaded.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, LiteralString

if TYPE_CHECKING:
    import psycopg

BOOK_ROWS = 10_000
SENSOR_RECORDS = 2_500
PIPELINES_DIR = Path(__file__).resolve().parents[2] / "pipelines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=BOOK_ROWS, help="book orders per prefix (default 10,000)")
    parser.add_argument("--records", type=int, default=SENSOR_RECORDS, help="sensor records (default 2,500)")
    parser.add_argument("--state-dir", help="the local stack's state directory (default .local)")


def say(message: str) -> None:
    print(message, flush=True)


def run(args: argparse.Namespace) -> int:
    from pipeline.local.stack import LocalStack

    started = time.monotonic()
    stack = LocalStack(state_dir=Path(args.state_dir) if args.state_dir else None)
    say("== local stack")
    for service in stack.up():
        say(f"   {service.describe()}")
    env = stack.env()
    os.environ.update(env)

    say("== sample data")
    generate(env, args.rows, args.records)

    say("== materializing through Dagster (storage: the stack's PostgreSQL)")
    landed = materialize_all()

    say("== what landed")
    for line in report(env):
        say(f"   {line}")
    say(f"done in {time.monotonic() - started:.1f} s. Next: eval \"$(pipeline local env)\" && dagster dev")
    return 0 if landed else 1


def generate(env: dict[str, str], rows: int, records: int) -> None:
    from pipeline.generate import put_sensor_records, write_books
    from pipeline.sources.aws import client

    s3 = client("s3")
    bucket = env["PIPELINE_BUCKET"]
    plain = write_books(rows, f"s3://{bucket}/original-data/", seed=1, client=s3)
    say(f"   {plain.rows:,} book orders -> s3://{bucket}/original-data/ (plaintext)")
    encrypted = write_books(rows, f"s3://{bucket}/encryption-data/", seed=2, client=s3,
                            sse_kms_key_id=env["PIPELINE_KMS_KEY"])
    say(f"   {encrypted.rows:,} book orders -> s3://{bucket}/encryption-data/ (SSE-KMS {env['PIPELINE_KMS_KEY']})")
    stream = env.get("PIPELINE_STREAM", "test-streaming-data")
    landed = put_sensor_records(client("kinesis"), stream, records)
    say(f"   {landed:,} sensor records -> kinesis stream {stream}")


def materialize_all() -> bool:
    """Materialize every asset of both pipelines through Dagster; False if any run failed."""
    import dagster as dg

    from pipeline.definitions import defs

    instance = dg.DagsterInstance.get()
    # The run's own event stream goes to Dagster's storage (see it in the UI); keep the terminal readable.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    ok = True
    repository = defs.get_repository_def()
    book_order = dg.AssetKey("book_order")
    if repository.asset_graph.has(book_order):
        from pipeline.batch import BatchLoad
        from pipeline.config import load

        keys = [o.key for o in BatchLoad(load(PIPELINES_DIR / "book_order.yml")).listed_objects()]
        partitions = repository.asset_graph.get(book_order).partitions_def
        # book_order is partitioned by object key (pipeline.orchestration.partitions).
        assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name is not None
        name = partitions.name
        instance.add_dynamic_partitions(name, [k for k in keys if not instance.has_dynamic_partition(name, k)])
        for key in keys:
            result = dg.materialize([defs.get_assets_def(book_order)], partition_key=key, instance=instance,
                                    resources=defs.resources, raise_on_error=False, tags={"pipeline/demo": "1"},
                                    run_config=quiet)
            say(f"   book_order[{key}]: {'success' if result.success else 'FAILED'}")
            ok = ok and result.success
    else:
        say("   book_order: not in the Dagster definitions yet")
        ok = False
    sensor_data = dg.AssetKey("sensor_data")
    if repository.asset_graph.has(sensor_data):
        result = dg.materialize([defs.get_assets_def(sensor_data)], instance=instance, resources=defs.resources,
                                raise_on_error=False, tags={"pipeline/demo": "1"}, run_config=quiet)
        say(f"   sensor_data: {'success' if result.success else 'FAILED'}")
        ok = ok and result.success
    else:
        # Said plainly: the stream runs through the engine until its Dagster assets exist.
        from pipeline.config import load
        from pipeline.stream import StreamLoad

        summary = StreamLoad(load(PIPELINES_DIR / "sensor_data.yml")).run()
        say(f"   sensor_data: not in the Dagster definitions yet; ran the engine directly: {summary.describe()}")
    return ok


def report(env: dict[str, str]) -> list[str]:
    """What each reference pipeline landed, and on which dialect path (the stand-in answers as its target)."""
    import psycopg

    from pipeline.config import load
    from pipeline.warehouse.dialects import detect

    lines = []
    for config_name, url_name in (("book_order.yml", "HOLOGRES_URL"), ("sensor_data.yml", "REDSHIFT_URL")):
        config = load(PIPELINES_DIR / config_name)
        out = config.output
        with psycopg.connect(env[url_name], autocommit=True) as conn:
            dialect = detect(conn, out.type)
            rows = _scalar(conn, psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                psycopg.sql.Identifier(out.schema, out.table)))
            exists = _scalar(conn, "SELECT to_regclass(%s)", (f"{out.schema}.{out.rejected}",))
            bad = _scalar(conn, psycopg.sql.SQL("SELECT count(*) FROM {}").format(
                psycopg.sql.Identifier(out.schema, out.rejected))) if exists else 0
        strategy = dialect.strategy(out.mode, stream=config.is_stream)
        lines.append(f"{out.qualified_table}: {rows:,} rows, {bad:,} rejected  "
                     f"({dialect.describe()} stand-in, mode {out.mode}: {strategy.name})")
    return lines


def _scalar(conn: psycopg.Connection, query: LiteralString | psycopg.sql.Composed, params: tuple[Any, ...] = ()) -> Any:
    """The value of a query that answers one row (count(*), to_regclass())."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]
