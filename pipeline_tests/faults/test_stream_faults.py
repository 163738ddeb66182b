"""Kinesis to the Redshift stand-in under injected faults: throttling, expired iterators, a kill before commit.

moto never throttles or expires an iterator: those come from botocore hooks on a client of the
test's own, passed in as ``StreamLoad(kinesis_client=...)``. The kill lands at an exact point of
the batch: a TCP proxy in front of PostgreSQL holds the batch's COMMIT, then the run gets SIGKILL.
"""

from __future__ import annotations

import itertools
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.awsrequest import AWSResponse

from pipeline import config as config_module
from pipeline.stream import StreamLoad
from pipeline_tests.faults.loads import exists, pipeline_cli, pipeline_popen
from pipeline_tests.faults.proxy import TcpProxy

pytestmark = pytest.mark.stack

RECORDS = 2_400  # a batch of all of them is past stream.INSERT_MAX_ROWS: staged and copied from S3


@pytest.fixture
def stream(stack, kinesis) -> str:
    name = f"fs{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    entries = [{"Data": json.dumps({"sensorId": i, "currentTemperature": i % 141, "status": "OK"}).encode(),
                "PartitionKey": str(i)} for i in range(RECORDS)]
    for start in range(0, RECORDS, 500):
        assert kinesis.put_records(StreamName=name, Records=entries[start:start + 500])["FailedRecordCount"] == 0
    return name


def write_config(path: Path, stream: str, url: str = "{{ env.REDSHIFT_URL }}", **exec_: Any) -> Path:
    document = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines" / "sensor_data.yml").read_text())
    document["in"]["stream"] = stream
    document["out"].update({"table": f"sensor_schema.{stream}", "url": url})
    document["exec"].update(exec_)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def assert_every_record_exactly_once(conn, stream: str) -> None:
    rows = conn.execute(f"SELECT sensorid, uuid FROM sensor_schema.{stream}").fetchall()
    assert sorted(r[0] for r in rows) == list(range(RECORDS))  # no gap, no duplicate
    assert len({r[1] for r in rows}) == RECORDS
    committed = conn.execute("SELECT coalesce(sum(records), 0) FROM sensor_schema.pipeline_shard_checkpoint "
                             "WHERE stream = %s", (stream,)).fetchone()[0]
    assert committed == RECORDS


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_: Any):
        yield self.data


def kinesis_error(code: str, message: str) -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "Content-Length": str(len(body))}
    return AWSResponse("https://kinesis.fault/", 400, headers, _Body(body))


def test_throttling_on_a_third_of_calls_and_expired_iterators_still_load_every_record_once(
        stack, redshift, tmp_path, stream):
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "kinesis", endpoint_url=stack.aws_endpoint, region_name=stack.region,
        config=Config(retries={"total_max_attempts": 1}))  # the engine's own retries, not botocore's
    calls = itertools.count(1)
    injected: list[str] = []

    def fault(**_: Any) -> AWSResponse | None:
        number = next(calls)
        if number % 3 == 0:
            injected.append("throttled")
            return kinesis_error("ProvisionedThroughputExceededException", "Rate exceeded for shard")
        if number % 7 == 0:
            injected.append("expired")
            return kinesis_error("ExpiredIteratorException", "Iterator expired")
        return None

    client.meta.events.register("before-send.kinesis.GetRecords", fault)
    config = config_module.load(write_config(tmp_path / f"{stream}.yml", stream, max_records=250))
    summary = StreamLoad(config, kinesis_client=client, sleep=lambda _: None).run()
    assert summary.records == RECORDS
    assert injected.count("throttled") >= 3 and injected.count("expired") >= 1
    assert_every_record_exactly_once(redshift, stream)
    assert StreamLoad(config, kinesis_client=client, sleep=lambda _: None).run().records == 0


@pytest.mark.parametrize(("batch", "held_at"), [
    (400, ("INSERT",)), (400, ("INSERT", "COMMIT")),  # small batches: one multi-row INSERT each
    (RECORDS, ("COPY",)), (RECORDS, ("COPY", "COMMIT")),  # one large batch: staged, COPY FROM S3
], ids=["insert-before-insert", "insert-before-commit", "staged-before-copy", "staged-before-commit"])
def test_a_run_killed_between_reading_and_commit_leaves_no_duplicate_and_no_gap(
        stack, redshift, tmp_path, stream, batch, held_at):
    patterns = [f'INSERT INTO "sensor_schema"."{stream}"' if word == "INSERT" else word for word in held_at]
    with TcpProxy("127.0.0.1", stack.standin_port) as proxy:
        url = stack.redshift_url.replace(f":{stack.standin_port}/", f":{proxy.port}/")
        config = write_config(tmp_path / f"{stream}.yml", stream, url=url, max_records=batch)
        proxy.hold_at(*(pattern.encode() for pattern in patterns))
        process = pipeline_popen("run", str(config))
        if not proxy.held.wait(60):
            process.kill()
            raise AssertionError(f"the run never reached the point to kill it at: {process.communicate()}")
        process.send_signal(signal.SIGKILL)  # the batch was read from Kinesis, its commit never arrived
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
    if exists(redshift, f"sensor_schema.{stream}"):
        assert redshift.execute(f"SELECT count(*) FROM sensor_schema.{stream}").fetchone()[0] == 0
    assert redshift.execute("SELECT count(*) FROM sensor_schema.pipeline_shard_checkpoint WHERE stream = %s",
                            (stream,)).fetchone()[0] == 0
    rerun = pipeline_cli("run", str(write_config(config, stream, max_records=400)), timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert_every_record_exactly_once(redshift, stream)
