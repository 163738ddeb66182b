"""How long a sensor tick takes as the prefix grows: it should depend on what is new, not on what exists.

Prints a table; asserts only what each tick found, never a time. Run with
``pytest -m slow -s pipeline_tests/defs/test_sensor_benchmark.py``; PIPELINE_BENCH_SIZES
(default ``100,2000``, so the suite stays fast; the issue's figures use ``100,10000,100000``) sets the
numbers of existing objects.
"""

from __future__ import annotations

import hashlib
import io
import os
import statistics
import time
from typing import Any

import dagster as dg
import psycopg
import pytest
from psycopg import sql

from pipeline.orchestration.sensors import Cursor
from pipeline.sources.s3 import list_objects
from pipeline.warehouse import state
from pipeline.warehouse.dialects import LEDGER_TABLE, dialect_for
from pipeline_tests.defs.conftest import put_objects

pytestmark = [pytest.mark.stack, pytest.mark.slow]

NEW_OBJECTS = 10
REPEAT = 3


def sizes() -> list[int]:
    return [int(size) for size in os.environ.get("PIPELINE_BENCH_SIZES", "100,2000").split(",")]


def timed_tick(book_order: Any, cursor: str) -> tuple[float, int, dg.SensorResult]:
    """Median seconds of a tick, and the S3 requests one tick makes."""
    sensor = book_order.defs.resolve_sensor_def(f"{book_order.name}_sensor")
    # The sensor's client comes from the resource's cache: count the requests it sends.
    client = book_order.defs.resources["s3"].client(book_order.pipeline.resolve().input.aws)
    requests: list[str] = []

    def count(model: Any, **_: Any) -> None:
        requests.append(model.name)

    client.meta.events.register("before-call.s3", count)
    times = []
    # One instance for all ticks, as in the daemon: a new ephemeral one per tick would be timed too.
    with dg.DagsterInstance.ephemeral() as instance:
        for _ in range(REPEAT):
            started = time.perf_counter()
            with dg.build_sensor_context(cursor=cursor, resources=book_order.defs.resources,
                                         instance=instance) as context:
                result = sensor(context)
            times.append(time.perf_counter() - started)
    client.meta.events.unregister("before-call.s3", count)
    return statistics.median(times), len(requests) // REPEAT, result


def record_as_loaded(conninfo: str, pipeline: str, keys: list[str], etag: str) -> None:
    """Ledger rows for ``keys``, as if every one had been loaded (the sweep compares against them)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        state.ensure_state_tables(conn, "public", dialect_for("hologres"))
        buffer = io.StringIO("".join(f"{pipeline}\t{key}\t{etag}\t1\t0\t1\n" for key in keys))
        statement = sql.SQL("COPY {} (pipeline, object_key, etag, rows, rejected, bytes) FROM STDIN").format(
            sql.Identifier("public", LEDGER_TABLE))
        with conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(buffer.getvalue())


@pytest.mark.parametrize("existing", sizes())
def test_sensor_tick_time_with_many_existing_objects_and_ten_new(existing, book_order, s3, stack, capsys):
    last_path = book_order()
    sweeping = book_order(name=f"{last_path.name}_sweep", incremental=False)  # the same objects, swept
    keys = [last_path.key(f"existing/{i:07d}.csv") for i in range(existing)]
    started = time.perf_counter()
    put_objects(s3, last_path.bucket, dict.fromkeys(keys, b"x"), threads=64)
    put_seconds = time.perf_counter() - started
    # A single-part upload's ETag is the MD5 of its body.
    record_as_loaded(stack.hologres_url, sweeping.name, keys, hashlib.md5(b"x").hexdigest())
    new = [last_path.key(f"new/{i:03d}.csv") for i in range(NEW_OBJECTS)]
    put_objects(s3, last_path.bucket, dict.fromkeys(new, b"y"))

    started = time.perf_counter()
    everything = list(list_objects(s3, last_path.bucket, last_path.prefix))
    full_listing = time.perf_counter() - started
    started = time.perf_counter()
    page = list(list_objects(s3, last_path.bucket, last_path.prefix, start_after=keys[existing // 2], limit=1000))
    one_page = time.perf_counter() - started
    at_end = Cursor(last_key=keys[-1]).to_json()
    mode1, requests1, result1 = timed_tick(last_path, at_end)
    # Mid-sweep: the page swept this tick lies in the middle of the existing objects.
    mid_sweep = Cursor(last_key=keys[-1], sweep_after=keys[existing // 2]).to_json()
    mode2, requests2, result2 = timed_tick(sweeping, mid_sweep)

    assert len(everything) == existing + NEW_OBJECTS
    assert len(page) == min(1000, existing - existing // 2 - 1 + NEW_OBJECTS)
    assert [r.partition_key for r in result1.run_requests] == new
    assert len(result2.run_requests) == NEW_OBJECTS  # new keys only: every swept object is in the ledger
    with capsys.disabled():
        print(f"\n{existing:>7,} existing + {NEW_OBJECTS} new objects: last_path tick {mode1 * 1000:7.1f} ms "
              f"({requests1} S3 request), sweep tick {mode2 * 1000:7.1f} ms ({requests2} S3 requests + 1 ledger "
              f"query); one 1000-key page from the middle {one_page * 1000:7.1f} ms, full listing "
              f"{full_listing * 1000:8.1f} ms (put {existing:,} objects in {put_seconds:.1f} s)")
