"""What one sensor tick costs when a few objects are new and many already exist.

Our sensor lists after the last key it saw (ListObjectsV2 ``StartAfter``): one request for ten
new objects, however many exist. The stock ``dagster_aws.s3.sensor.get_objects`` lists the whole
prefix and sorts it by modification time: a request per 1,000 existing objects. Both are timed on
the same bucket, and so is a real evaluation of this project's Dagster sensor when it is defined.

moto's ListObjectsV2 sorts every key of the bucket on each request, so on the local stack even a
one-page listing grows with the bucket; on S3 a page costs about the same whatever the bucket holds.
The request counts are the figures that carry over to S3.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.bench.harness import Bench, BenchError
from pipeline.bench.results import Figure, Section, best, timings

BODY = b"order_id,user_id,book_id,book_name,order_cnt,order_amt\no1,1,6,x,1,100\n"
PREFIX = "orders/"
PUT_THREADS = 16
# Repeat a timing while it is cheap; a listing of 100,000 objects on moto is timed once.
REPEAT_BUDGET_SECONDS = 3.0
MAX_REPEATS = 5


def key_of(index: int) -> str:
    return f"{PREFIX}{index:08d}.csv"


class ListCounter:
    """Counts ListObjectsV2 requests made through one boto3 client."""

    def __init__(self, client: Any):
        self.requests = 0
        client.meta.events.register("before-call.s3.ListObjectsV2", self._count)

    def _count(self, **_: Any) -> None:
        self.requests += 1


def measure(bench: Bench, section: Section) -> None:
    from dagster_aws.s3.sensor import get_objects

    from pipeline.sources.s3 import list_objects

    s3 = bench.s3
    bucket = f"pipeline-bench-{bench.run_id}"
    region = bench.env.get("AWS_DEFAULT_REGION") or "us-east-1"
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)
    bench.on_cleanup(f"bucket {bucket}", lambda: (bench.delete_prefix("", bucket), s3.delete_bucket(Bucket=bucket)))
    counter = ListCounter(s3)
    tick = _dagster_sensor(bench, section, bucket)
    new = bench.sizes.sensor_new
    odd_counts: list[str] = []  # what get_objects returned instead of the new objects
    existing = 0
    put_seconds = 0.0
    for size in bench.sizes.sensor_objects:
        started = time.perf_counter()
        _put(s3, bucket, range(existing, size))
        last_seen = key_of(size - 1)
        _put(s3, bucket, range(size, size + new))
        put_seconds += time.perf_counter() - started
        existing = size + new

        def ours(last_seen: str = last_seen) -> int:
            return len(list(list_objects(s3, bucket, PREFIX, start_after=last_seen)))

        def stock(last_seen: str = last_seen) -> int:
            return len(get_objects(bucket, PREFIX, since_key=last_seen, client=s3))

        ours_samples, ours_requests, ours_found = _timed(ours, counter)
        stock_samples, stock_requests, stock_found = _timed(stock, counter)
        if ours_found != new:
            raise BenchError(f"our lister found {ours_found} new objects after {last_seen}, expected {new}")
        if stock_found != new:
            odd_counts.append(f"{stock_found} objects with {size:,} existing")
        label = f"{size:,} existing objects, {new} new"
        section.add(Figure(
            f"sensor.{size}.ours", f"our lister (StartAfter the last key seen), {label}", best(ours_samples), "s",
            ratio=best(stock_samples) / best(ours_samples),
            compared_with=f"dagster_aws get_objects, {best(stock_samples):.3f} s", ratio_meaning="as fast as",
            detail={**timings(ours_samples), "list_requests": ours_requests}))
        section.add(Figure(
            f"sensor.{size}.stock", f"dagster_aws get_objects (lists the prefix, sorts it), {label}",
            best(stock_samples), "s", detail={**timings(stock_samples), "list_requests": stock_requests,
                                               "objects_returned": stock_found}))
        message = (f"sensor: {size:,} existing: ours {best(ours_samples):.3f} s ({ours_requests} request), "
                   f"stock {best(stock_samples):.3f} s ({stock_requests} requests)")
        if tick is not None:
            sensor_samples, run_requests = _timed_sensor(tick, last_seen, new)
            section.add(Figure(
                f"sensor.{size}.dagster", f"this project's Dagster sensor, one evaluation, {label}",
                best(sensor_samples), "s", detail={**timings(sensor_samples), "run_requests": run_requests}))
            message += f", Dagster sensor {best(sensor_samples):.3f} s"
        bench.emit(message)
    if odd_counts:
        section.notes.append(f"dagster_aws get_objects returned {'; '.join(odd_counts)}, not just the {new} new "
                             "ones: it orders by LastModified, so an object whose upload finished after the last key "
                             "seen is returned again (and one finishing before it can be missed).")
    total = bench.sizes.sensor_objects[-1] + new
    section.notes.append(f"Putting the {total:,} tiny objects into moto took {put_seconds:.0f} s "
                         f"({total / put_seconds:,.0f} objects/s with {PUT_THREADS} threads).")
    section.notes.append("moto's ListObjectsV2 sorts every key of the bucket on each request, so here even our "
                         "one-request listing grows with the bucket; on S3 a request costs about the same whatever "
                         "the bucket holds. The request counts are what carries over to S3.")


def _put(s3: Any, bucket: str, indexes: range) -> None:
    if not indexes:
        return
    with ThreadPoolExecutor(PUT_THREADS) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=key_of(i), Body=BODY), indexes))


def _timed(listing: Callable[[], int], counter: ListCounter) -> tuple[list[float], int, int]:
    """Best-of timings of ``listing``, the requests one listing makes, and how many objects it returned."""
    samples: list[float] = []
    requests = found = 0
    while len(samples) < MAX_REPEATS and sum(samples) < REPEAT_BUDGET_SECONDS:
        before = counter.requests
        started = time.perf_counter()
        found = listing()
        samples.append(time.perf_counter() - started)
        requests = counter.requests - before
    return samples, requests, found


def _timed_sensor(tick: Callable[[str], int], last_seen: str, expected: int) -> tuple[list[float], int]:
    samples: list[float] = []
    runs = 0
    while len(samples) < MAX_REPEATS and sum(samples) < REPEAT_BUDGET_SECONDS:
        started = time.perf_counter()
        runs = tick(last_seen)
        samples.append(time.perf_counter() - started)
        if runs != expected:
            raise BenchError(f"the Dagster sensor requested {runs} runs, expected {expected}")
    return samples, runs


def _dagster_sensor(bench: Bench, section: Section, bucket: str) -> Callable[[str], int] | None:
    """One evaluation of the book_order sensor built by the code location, or None (and a note) without one."""
    try:
        import dagster as dg

        from pipeline.orchestration import sensors
        from pipeline.orchestration.factory import build_definitions
    except ImportError as error:
        section.notes.append(f"Dagster sensor not timed: {error}")
        return None
    name = bench.name("sensor")
    directory: Path = bench.workdir / "sensor-configs"
    bench.book_order_config(name, PREFIX, name, bucket=bucket, directory=directory)
    bench.drop_on_cleanup(bench.hologres_url, "public", name, f"{name}_rejected")
    try:
        defs = build_definitions(directory)
        sensor = defs.resolve_sensor_def(f"{name}_sensor")
    except Exception as error:  # another engineer's module may be mid-change: say so, time the rest
        section.notes.append(f"Dagster sensor not timed: building it failed: {error}")
        return None

    # One instance for every tick, as under the daemon (the sensor reads its failed runs to retry them).
    instance = dg.DagsterInstance.ephemeral()

    def tick(last_seen: str) -> int:
        cursor = sensors.Cursor(last_key=last_seen).to_json()
        with dg.build_sensor_context(cursor=cursor, resources=defs.resources, instance=instance) as context:
            result = sensor(context)
        return len(getattr(result, "run_requests", None) or [])

    try:
        tick(key_of(0))  # warm-up: the S3 resource makes (and caches) its client on the first tick
    except Exception as error:
        section.notes.append(f"Dagster sensor not timed: its first evaluation failed: {error}")
        return None
    section.notes.append("The Dagster sensor is evaluated with dagster.build_sensor_context (no daemon): the time "
                         "of one tick's work, not the interval between ticks.")
    return tick
