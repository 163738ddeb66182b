"""A load that failed comes back: the sensors run it again, bounded by exec.retries, waiting exec.retry_wait, doubling.

The runs are launched as the daemon launches a sensor's request (its run key and sensor name as
tags) on a real Dagster instance; the failures are real ones (the object is gone when its run
starts, or the warehouse refuses every batch).
"""

from __future__ import annotations

import time
from typing import Any

import dagster as dg
import pytest

from pipeline.batch import BatchLoad
from pipeline.orchestration import runs
from pipeline_tests.defs.conftest import orders_csv, put_objects
from pipeline_tests.defs.test_sensors import tick

pytestmark = pytest.mark.stack


def launch(book_order: Any, request: dg.RunRequest, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """The run the daemon launches for ``request``."""
    instance.add_dynamic_partitions(book_order.pipeline.partitions_name, [request.partition_key])
    job = book_order.defs.resolve_job_def(f"{book_order.name}_load")
    tags = {**request.tags, "dagster/run_key": request.run_key, "dagster/sensor_name": f"{book_order.name}_sensor"}
    return job.execute_in_process(partition_key=request.partition_key, instance=instance, tags=tags,
                                  raise_on_error=False)


def only(result: dg.SensorResult) -> dg.RunRequest:
    (request,) = result.run_requests or []
    return request


def test_a_failed_object_is_run_again_until_it_loads_and_lands_exactly_once(book_order, s3, hologres):
    pipeline = book_order(exec={"retries": 3, "retry_wait": 0})
    key = pipeline.key("orders-1.csv")
    body = orders_csv(0, 25)
    put_objects(s3, pipeline.bucket, {key: body})
    with dg.instance_for_test() as instance:
        first = tick(pipeline, instance=instance)
        request = only(first)
        etag = request.tags[runs.ETAG_TAG]
        assert request.run_key == f"{key}:{etag}" and request.tags[runs.ATTEMPT_TAG] == "1"
        s3.delete_object(Bucket=pipeline.bucket, Key=key)  # gone when the run starts: the run fails
        assert not launch(pipeline, request, instance).success

        retry = only(tick(pipeline, first.cursor, instance=instance))
        assert retry.run_key == f"{key}:{etag}:retry-1" and retry.tags[runs.ATTEMPT_TAG] == "2"
        assert retry.partition_key == key
        # Asked again before it ran, the sensor requests the same attempt (Dagster launches a key once).
        assert only(tick(pipeline, first.cursor, instance=instance)).run_key == retry.run_key
        put_objects(s3, pipeline.bucket, {key: body})  # back, the same version
        assert launch(pipeline, retry, instance).success

        after = tick(pipeline, first.cursor, instance=instance)

    assert after.run_requests == [] and "nothing new" in after.skip_reason.skip_message
    assert hologres.execute(f"SELECT count(*) FROM public.{pipeline.table}").fetchone()[0] == 25


def test_retries_are_bounded_and_the_tick_says_which_object_gave_up_and_why(book_order, s3):
    pipeline = book_order(exec={"retries": 1, "retry_wait": 0})
    key = pipeline.key("orders-1.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 5)})
    with dg.instance_for_test() as instance:
        first = tick(pipeline, instance=instance)
        s3.delete_object(Bucket=pipeline.bucket, Key=key)
        assert not launch(pipeline, only(first), instance).success
        assert not launch(pipeline, only(tick(pipeline, first.cursor, instance=instance)), instance).success

        last = tick(pipeline, first.cursor, instance=instance)

    assert last.run_requests == []
    message = last.skip_reason.skip_message
    assert "1 object(s) failed 2 times and are not retried again (exec.retries 1)" in message
    assert f"s3://{pipeline.bucket}/{key}: run " in message and "no longer exists" in message


def test_the_wait_doubles_after_each_failure(book_order, s3):
    pipeline = book_order(exec={"retries": 3, "retry_wait": "10m"})
    key = pipeline.key("orders-1.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 5)})
    execution = pipeline.pipeline.config.exec
    with dg.instance_for_test() as instance:
        first = tick(pipeline, instance=instance)
        s3.delete_object(Bucket=pipeline.bucket, Key=key)
        assert not launch(pipeline, only(first), instance).success

        def due(at: float) -> runs.Retries:
            return runs.object_retries(instance, sensor_name=f"{pipeline.name}_sensor",
                                       job_name=f"{pipeline.name}_load", execution=execution, tags={}, now=at)

        soon = tick(pipeline, first.cursor, instance=instance)
        assert soon.run_requests == [] and "1 failed object(s) wait for a retry" in soon.skip_reason.skip_message
        now = time.time()
        assert due(now + 590).requests == [] and len(due(now + 610).requests) == 1
        assert not launch(pipeline, due(now + 610).requests[0], instance).success
        now = time.time()
        assert due(now + 1190).requests == [] and due(now + 1210).requests[0].tags[runs.ATTEMPT_TAG] == "3"


def test_an_object_loaded_meanwhile_by_pipeline_run_is_not_run_again(book_order, s3):
    pipeline = book_order(exec={"retries": 3, "retry_wait": 0})
    key = pipeline.key("orders-1.csv")
    body = orders_csv(0, 5)
    put_objects(s3, pipeline.bucket, {key: body})
    with dg.instance_for_test() as instance:
        first = tick(pipeline, instance=instance)
        s3.delete_object(Bucket=pipeline.bucket, Key=key)
        assert not launch(pipeline, only(first), instance).success
        put_objects(s3, pipeline.bucket, {key: body})
        assert only(tick(pipeline, first.cursor, instance=instance)).tags[runs.ATTEMPT_TAG] == "2"  # due, until...
        BatchLoad(pipeline.pipeline.resolve()).run()  # ...the CLI loads it

        after = tick(pipeline, first.cursor, instance=instance)

    assert after.run_requests == []
