"""``check_<pipeline>`` jobs, and sensors that report a failed check in their tick instead of launching runs."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import pytest

from pipeline.orchestration.factory import DEFAULT_CONFIG_DIR, build_definitions
from pipeline_tests.defs.conftest import orders_csv, put_objects

pytestmark = pytest.mark.stack


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def warehouse_down(monkeypatch: pytest.MonkeyPatch) -> str:
    """HOLOGRES_URL pointing at a port nobody listens on; returns the good URL."""
    good = os.environ["HOLOGRES_URL"]
    parts = urlsplit(good)
    netloc = f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{unused_port()}"
    monkeypatch.setenv("HOLOGRES_URL", urlunsplit(parts._replace(netloc=netloc)))
    return good


def run_check(book_order: Any) -> dg.ExecuteInProcessResult:
    job = book_order.defs.resolve_job_def(f"check_{book_order.name}")
    with dg.instance_for_test() as instance:
        return job.execute_in_process(instance=instance, raise_on_error=False)


def tick(book_order: Any, cursor: str | None = None) -> dg.SensorResult | dg.SkipReason:
    sensor = book_order.defs.resolve_sensor_def(f"{book_order.name}_sensor")
    with dg.build_sensor_context(cursor=cursor, resources=book_order.defs.resources,
                                 instance=dg.DagsterInstance.ephemeral()) as context:
        return sensor(context)


def test_every_shipped_pipeline_has_a_check_job(stack):
    defs = build_definitions(DEFAULT_CONFIG_DIR)

    assert defs.resolve_job_def("check_book_order").description.startswith("`pipeline check` for book_order")
    assert defs.resolve_job_def("check_sensor_data")


def test_the_check_job_succeeds_on_the_local_stack_with_one_entry_per_check(book_order, s3):
    pipeline = book_order()
    put_objects(s3, pipeline.bucket, {pipeline.key("a.csv"): orders_csv(0, 2)})

    result = run_check(pipeline)

    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {name: value.value for name, value in output.step_output_data.metadata.items()}
    assert metadata["AWS credentials"].startswith("ok: ")
    assert metadata[f"S3 ListBucket s3://{pipeline.bucket}/{pipeline.prefix}"] == (
        f"ok: allowed (first object {pipeline.key('a.csv')})")
    assert any(name.startswith("warehouse connection") and value.startswith("ok: ")
               for name, value in metadata.items())


def test_the_check_job_fails_naming_the_unreachable_warehouse(book_order, warehouse_down):
    pipeline = book_order()
    password = urlsplit(warehouse_down).password

    result = run_check(pipeline)

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.user_failure_data.description
    assert message.startswith("FAIL  warehouse connection ")
    assert "connection refused: is the server running" in message
    metadata = {name: value.value for name, value in failure.step_failure_data.user_failure_data.metadata.items()}
    assert metadata["AWS credentials"].startswith("ok: ")
    assert [value for value in metadata.values() if value.startswith("FAIL: ")] == [
        "FAIL: " + message.split(": ", 1)[1]]
    assert f":{password}@" not in message + repr(metadata)


def test_the_sensor_skips_naming_the_warehouse_then_resumes_when_it_answers(book_order, s3, warehouse_down,
                                                                           monkeypatch):
    pipeline = book_order()
    key = pipeline.key("a.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 2)})

    closed = tick(pipeline)
    monkeypatch.setenv("HOLOGRES_URL", warehouse_down)
    reopened = tick(pipeline)

    assert isinstance(closed, dg.SkipReason)
    assert closed.skip_message.startswith("FAIL  warehouse connection ")
    assert closed.skip_message.endswith("connection refused: is the server running and listening on that host "
                                        "and port?; fix it and the sensor resumes")
    assert isinstance(reopened, dg.SensorResult)
    assert [request.partition_key for request in reopened.run_requests] == [key]
