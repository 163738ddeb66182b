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


# ----------------------------------------------------------------- in.notifications: the sensor drains the queue


@pytest.fixture
def notified(stack: Any, s3: Any, tmp_path: Any, unique: str) -> Any:
    """A book_order pipeline over a bucket of its own that notifies a queue of its own."""
    from pipeline_tests.conftest import _aws_client, notifying_bucket
    from pipeline_tests.defs.conftest import BookOrder, book_order_document

    sqs = _aws_client(stack, "sqs")
    bucket, queue = f"{unique}-bucket", f"{unique}-events"
    url = notifying_bucket(stack, s3, sqs, bucket, queue)
    document = book_order_document("landing/", unique)
    document["in"]["bucket"] = bucket
    document["in"]["notifications"] = {"queue": queue, "sweep_interval": "1h"}
    pipeline = BookOrder(tmp_path / "pipelines", unique, bucket, document)
    pipeline.sqs, pipeline.url = sqs, url  # type: ignore[attr-defined]
    yield pipeline
    sqs.delete_queue(QueueUrl=url)


def messages(pipeline: Any, *, visible_only: bool = False) -> int:
    names = ["ApproximateNumberOfMessages"] + ([] if visible_only else ["ApproximateNumberOfMessagesNotVisible"])
    attributes = pipeline.sqs.get_queue_attributes(QueueUrl=pipeline.url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def wait_until(condition: Any, what: str, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_notified_object_is_requested_without_a_listing_and_its_message_goes_once_loaded(notified, s3,
                                                                                          hologres):
    first = tick(notified, visibility_timeout=1)  # lists once (no listing yet), and takes S3's test event
    assert run_keys(first) == [] and cursor_of(first)["listed_at"] is not None
    key = notified.key("2024-06-01.csv")
    put_objects(s3, notified.bucket, {key: orders_csv(0, 4)})
    etag = etags(s3, notified.bucket, [key])[key]

    second = tick(notified, first.cursor, visibility_timeout=1)

    assert run_keys(second) == [f"{key}:{etag}"] and partition_keys(second) == [key]
    assert cursor_of(second)["listed_at"] == cursor_of(first)["listed_at"]  # no listing: the sweep is hourly
    assert messages(notified) == 1  # kept until the ledger has the object
    BatchLoad(notified.pipeline.resolve()).run(keys=[key])  # what the run does
    wait_until(lambda: messages(notified, visible_only=True) == 1, "the message's return")

    third = tick(notified, second.cursor, visibility_timeout=1)

    assert run_keys(third) == [] and messages(notified) == 0
    assert "1 deleted" in third.skip_reason.skip_message


def test_a_duplicate_notification_requests_nothing_and_is_deleted(notified, s3, hologres):
    key = notified.key("2024-06-02.csv")
    put_objects(s3, notified.bucket, {key: orders_csv(0, 4)})
    BatchLoad(notified.pipeline.resolve()).run()
    # The message of an object already loaded goes. (This first tick also lists, with no ledger look, as the
    # listing always has: its request's run would find the object loaded.)
    first = tick(notified, visibility_timeout=1)
    assert messages(notified) == 0
    put_objects(s3, notified.bucket, {key: orders_csv(0, 4)})  # the same bytes again: the same ETag

    second = tick(notified, first.cursor, visibility_timeout=1)

    assert run_keys(second) == [] and messages(notified) == 0
    assert count_rows(hologres, notified.table) == 4


def _receives(monkeypatch: Any, on_listen: Any = None) -> list[float]:
    """The wait of each ReceiveMessage the sensor makes; ``on_listen()`` runs at the first that waits."""
    from pipeline.sources import sqs

    waits: list[float] = []
    receive = sqs.Queue.receive

    def recorded(self: Any, wait_seconds: float, **options: Any) -> Any:
        waits.append(wait_seconds)
        if wait_seconds and on_listen is not None and waits.count(wait_seconds) == 1:
            on_listen()
        return receive(self, wait_seconds, **options)

    monkeypatch.setattr(sqs.Queue, "receive", recorded)
    return waits


def test_a_tick_that_finds_nothing_listens_to_the_queue_and_requests_what_comes_meanwhile(
        notified, s3, hologres, monkeypatch):
    first = tick(notified, visibility_timeout=1)
    key = notified.key("2024-06-03.csv")
    # The object lands while the tick waits on the queue: at its first long poll, not before it.
    waits = _receives(monkeypatch, on_listen=lambda: put_objects(s3, notified.bucket, {key: orders_csv(0, 4)}))

    with dg.instance_for_test(overrides={"sensors": {"use_threads": True}}) as instance:
        second = tick(notified, first.cursor, instance=instance, visibility_timeout=1)

    etag = etags(s3, notified.bucket, [key])[key]
    assert run_keys(second) == [f"{key}:{etag}"] and partition_keys(second) == [key]
    assert waits[0] == 0 and 1 in waits  # drained first, then listened
    assert messages(notified) == 1  # kept until the ledger has the object, as a drained one


def test_a_tick_listens_only_with_a_thread_of_its_own_and_a_free_listener(notified, s3, hologres, monkeypatch):
    first = tick(notified, visibility_timeout=1)
    waits = _receives(monkeypatch)
    # Sensors evaluated in turn (Dagster's default): a wait would hold up every other sensor.
    second = tick(notified, first.cursor, visibility_timeout=1)
    assert waits and not any(waits) and run_keys(second) == []
    # LISTENERS ticks of this process listening already: this one does not wait either.
    waits.clear()
    taken = [sensors._listeners.acquire(blocking=False) for _ in range(sensors.LISTENERS)]
    try:
        with dg.instance_for_test(overrides={"sensors": {"use_threads": True}}) as instance:
            tick(notified, second.cursor, instance=instance, visibility_timeout=1)
    finally:
        for _ in filter(None, taken):
            sensors._listeners.release()
    assert all(taken) and waits and not any(waits)


def count_rows(conn: Any, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]  # test-owned name


def test_in_continuous_mode_one_run_follows_the_queue_and_reports_each_object_as_its_partition(
        notified, s3, hologres, tmp_path):
    import threading

    import yaml

    from pipeline_tests.defs.conftest import BookOrder

    document = yaml.safe_load(notified.path.read_text(encoding="utf-8"))
    document.setdefault("exec", {})["mode"] = "continuous"
    pipeline = BookOrder(tmp_path / "continuous", notified.name, notified.bucket, document)
    request = tick(pipeline)
    assert [(r.job_name, r.run_key) for r in request.run_requests] == [(f"{pipeline.name}_continuous",
                                                                        "follow")]
    # A long run holds no slot of the per-warehouse run limit (two would starve the warehouse's other runs).
    job_tags = pipeline.defs.resolve_job_def(f"{pipeline.name}_continuous").tags
    for tags in (request.run_requests[0].tags, job_tags):
        assert tags["pipeline/continuous"] == "hologres" and "pipeline/warehouse" not in tags
    keys = [pipeline.key("2024-07-01.csv"), pipeline.key("2024-07-02.csv")]
    outcome: dict[str, Any] = {}
    with dg.instance_for_test() as instance:
        job = pipeline.defs.resolve_job_def(f"{pipeline.name}_continuous")
        runner = threading.Thread(target=lambda: outcome.update(result=job.execute_in_process(
            instance=instance, resources=pipeline.defs.resources, raise_on_error=False)), daemon=True)
        runner.start()
        try:
            wait_until(lambda: instance.get_runs(), "the run's start")
            put_objects(s3, pipeline.bucket, {keys[0]: orders_csv(0, 3)})
            put_objects(s3, pipeline.bucket, {keys[1]: orders_csv(3, 2)})
            wait_until(lambda: hologres.execute("SELECT to_regclass(%s)", (f"public.{pipeline.table}",)).fetchone()[0]
                       and count_rows(hologres, pipeline.table) == 5, "both objects' rows")
            wait_until(lambda: messages(notified) == 0, "the messages' deletion")
        finally:
            (run,) = instance.get_runs()
            instance.report_run_canceling(run)  # what terminating the run in the UI does first
            runner.join(120)
        assert not runner.is_alive()
        result = outcome["result"]
        materialized = {e.partition for e in result.get_asset_materialization_events()}
        assert materialized == set(keys)
        assert set(instance.get_dynamic_partitions(f"{pipeline.name}_objects")) == set(keys)
