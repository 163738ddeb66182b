"""The object sensor on the real moto server: what each tick requests, and what its cursor keeps."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
import pytest

from pipeline.batch import BatchLoad
from pipeline.orchestration import sensors
from pipeline_tests.defs.conftest import delete_objects, orders_csv, put_objects

pytestmark = pytest.mark.stack


def tick(book_order: Any, cursor: str | None = None, *, instance: dg.DagsterInstance | None = None,
         **options: Any) -> dg.SensorResult:
    """One evaluation of the pipeline's sensor (built with ``options`` when given)."""
    instance = instance or dg.DagsterInstance.ephemeral()
    defs = book_order.defs
    sensor = defs.resolve_sensor_def(f"{book_order.name}_sensor")
    if options:
        sensor = sensors.object_sensor(book_order.pipeline, defs.resolve_job_def(f"{book_order.name}_load"),
                                       **options)
    with dg.build_sensor_context(cursor=cursor, resources=defs.resources, instance=instance) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def run_keys(result: dg.SensorResult) -> list[str]:
    return [request.run_key for request in result.run_requests or []]


def partition_keys(result: dg.SensorResult) -> list[str]:
    return [key for request in result.dynamic_partitions_requests or [] for key in request.partition_keys]


def etags(s3: Any, bucket: str, keys: list[str]) -> dict[str, str]:
    return {key: s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"') for key in keys}


def cursor_of(result: dg.SensorResult) -> dict[str, Any]:
    return json.loads(result.cursor)


def test_an_empty_prefix_requests_nothing_and_the_cursor_stays_at_the_start(book_order):
    pipeline = book_order()

    result = tick(pipeline)

    assert run_keys(result) == []
    assert partition_keys(result) == []
    assert "nothing new" in result.skip_reason.skip_message
    assert cursor_of(result)["last_key"] is None


def test_each_new_object_gets_a_partition_and_a_run_keyed_by_key_and_etag(book_order, s3):
    pipeline = book_order()
    keys = [pipeline.key("2024-01-01.csv"), pipeline.key("2024-01-02.csv")]
    put_objects(s3, pipeline.bucket, {keys[0]: orders_csv(0, 3), keys[1]: orders_csv(3, 3)})
    tags = etags(s3, pipeline.bucket, keys)

    result = tick(pipeline)

    assert run_keys(result) == [f"{key}:{tags[key]}" for key in keys]
    assert [request.partition_key for request in result.run_requests] == keys
    assert all(request.tags["pipeline/warehouse"] == "hologres" for request in result.run_requests)
    # The sensor retries its own runs; dagster.yaml's run_retries must not retry them a second time.
    assert all(request.tags["dagster/max_retries"] == "0" for request in result.run_requests)
    (request,) = result.dynamic_partitions_requests
    assert isinstance(request, dg.AddDynamicPartitionsRequest)
    assert request.partitions_def_name == f"{pipeline.name}_objects"
    assert list(request.partition_keys) == keys
    assert cursor_of(result)["last_key"] == keys[1]


def test_the_next_tick_requests_only_what_was_added_since(book_order, s3):
    pipeline = book_order()
    first = pipeline.key("a.csv")
    put_objects(s3, pipeline.bucket, {first: orders_csv(0, 1)})
    before = tick(pipeline)
    later = pipeline.key("b.csv")
    put_objects(s3, pipeline.bucket, {later: orders_csv(1, 1)})

    after = tick(pipeline, before.cursor)
    quiet = tick(pipeline, after.cursor)

    assert partition_keys(after) == [later]
    assert run_keys(after) == [f"{later}:{etags(s3, pipeline.bucket, [later])[later]}"]
    assert run_keys(quiet) == []
    assert quiet.cursor == after.cursor


def test_keys_outside_the_pattern_get_no_run_but_the_cursor_moves_past_them(book_order, s3):
    pipeline = book_order()
    put_objects(s3, pipeline.bucket, {pipeline.key("a.csv"): orders_csv(0, 1), pipeline.key("b.txt"): "notes",
                                      pipeline.key("c.json"): "{}"})

    result = tick(pipeline)

    assert partition_keys(result) == [pipeline.key("a.csv")]
    assert cursor_of(result)["last_key"] == pipeline.key("c.json")


def test_a_large_backlog_is_worked_off_one_page_per_tick_without_duplicates(book_order, s3):
    pipeline = book_order()
    keys = [pipeline.key(f"part-{i:05d}.csv") for i in range(2345)]
    put_objects(s3, pipeline.bucket, dict.fromkeys(keys, orders_csv(0, 1)))

    seen: list[str] = []
    cursor = None
    sizes = []
    for _ in range(4):
        result = tick(pipeline, cursor)
        seen += partition_keys(result)
        sizes.append(len(result.run_requests or []))
        cursor = result.cursor

    assert sizes == [1000, 1000, 345, 0]
    assert seen == keys
    assert len(cursor) < 200  # the cursor holds a key, never the listing


def test_after_a_deletion_only_new_objects_are_requested_and_no_partition_is_dropped(book_order, s3):
    pipeline = book_order()
    old, last = pipeline.key("1.csv"), pipeline.key("2.csv")
    put_objects(s3, pipeline.bucket, {old: orders_csv(0, 1), last: orders_csv(1, 1)})
    first = tick(pipeline)
    delete_objects(s3, pipeline.bucket, [last])  # the very key the cursor points at
    new = pipeline.key("3.csv")
    put_objects(s3, pipeline.bucket, {new: orders_csv(2, 1)})

    result = tick(pipeline, first.cursor)

    assert partition_keys(result) == [new]
    assert all(isinstance(r, dg.AddDynamicPartitionsRequest) for r in result.dynamic_partitions_requests)
    assert cursor_of(result)["last_key"] == new


def test_in_last_path_mode_a_reuploaded_object_is_not_noticed(book_order, s3):
    pipeline = book_order()
    key = pipeline.key("orders.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 2)})
    first = tick(pipeline)
    put_objects(s3, pipeline.bucket, {key: orders_csv(100, 2)})

    result = tick(pipeline, first.cursor)

    assert run_keys(result) == []
    assert cursor_of(result)["sweep_after"] is None  # no sweep in this mode


def test_the_sweep_requests_a_reuploaded_object_again_under_its_new_etag(book_order, s3, hologres):
    pipeline = book_order(incremental=False)
    keys = [pipeline.key(f"orders-{i}.csv") for i in range(3)]
    put_objects(s3, pipeline.bucket, {key: orders_csv(i * 10, 10) for i, key in enumerate(keys)})
    first = tick(pipeline)
    BatchLoad(pipeline.pipeline.resolve()).run()  # what the runs do: the ledger now has every object
    put_objects(s3, pipeline.bucket, {keys[1]: orders_csv(500, 10)})
    new_etag = etags(s3, pipeline.bucket, [keys[1]])[keys[1]]

    result = tick(pipeline, first.cursor)

    assert run_keys(first) != run_keys(result)
    assert run_keys(result) == [f"{keys[1]}:{new_etag}"]
    assert partition_keys(result) == [keys[1]]
    assert cursor_of(result)["sweeps"] == 1


def test_the_sweep_finds_an_object_whose_key_sorts_before_the_cursor(book_order, s3, hologres):
    pipeline = book_order(incremental=False)
    put_objects(s3, pipeline.bucket, {pipeline.key("2024-05.csv"): orders_csv(0, 1)})
    first = tick(pipeline)
    BatchLoad(pipeline.pipeline.resolve()).run()
    late = pipeline.key("2024-04.csv")  # arrives late, under a name before the last one seen
    put_objects(s3, pipeline.bucket, {late: orders_csv(1, 1)})

    result = tick(pipeline, first.cursor)

    assert partition_keys(result) == [late]
    assert cursor_of(result)["last_key"] == pipeline.key("2024-05.csv")


def test_the_sweep_moves_a_page_per_tick_and_starts_again_at_the_top(book_order, s3, hologres):
    pipeline = book_order(incremental=False)
    keys = [pipeline.key(f"{i}.csv") for i in range(7)]
    put_objects(s3, pipeline.bucket, {key: orders_csv(i, 1) for i, key in enumerate(keys)})
    cursor = tick(pipeline, sweep_keys=3).cursor
    BatchLoad(pipeline.pipeline.resolve()).run()

    positions = []
    for _ in range(4):
        result = tick(pipeline, cursor, sweep_keys=3)
        assert run_keys(result) == []  # every swept object is in the ledger at its ETag
        cursor = result.cursor
        positions.append((cursor_of(result)["sweep_after"], cursor_of(result)["sweeps"]))

    assert positions == [(keys[2], 0), (keys[5], 0), (None, 1), (keys[2], 1)]


def test_the_sweep_requests_objects_that_were_never_loaded(book_order, s3, hologres):
    pipeline = book_order(incremental=False)
    keys = [pipeline.key(f"{i}.csv") for i in range(2)]
    put_objects(s3, pipeline.bucket, dict.fromkeys(keys, orders_csv(0, 1)))
    first = tick(pipeline)  # requested, but (say) the runs failed: the ledger has nothing

    result = tick(pipeline, first.cursor)

    # The same run keys as before, so Dagster does not launch them twice; a fixed object gets a new ETag.
    assert run_keys(result) == run_keys(first)
