"""`dagster dev` serves the code location on the local stack's PostgreSQL storage.

The server is started as a user would, with the stack's environment (see pipeline_tests/dagster_dev.py).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_tests.dagster_dev import running_dagster_dev

pytestmark = pytest.mark.stack


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.fixture(scope="module")
def dagster_dev(stack) -> Iterator[int]:
    with running_dagster_dev(os.environ, Path(stack.state_dir) / "dagster-dev.log") as port:
        yield port


def test_dagster_dev_serves_both_pipelines_on_postgresql_storage(dagster_dev):
    data = graphql(dagster_dev, "{ assetNodes { assetKey { path } } instance { info } }")
    keys = {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}
    assert {"book_order", "book_order_objects"} <= keys
    assert "PostgresRunStorage" in data["instance"]["info"]


def test_the_lineage_runs_from_the_s3_objects_to_the_table(dagster_dev):
    data = graphql(dagster_dev, '{ assetNodeOrError(assetKey: {path: ["book_order"]}) '
                                "{ ... on AssetNode { dependencyKeys { path } } } }")
    assert {"path": ["book_order_objects"]} in data["assetNodeOrError"]["dependencyKeys"]


def test_a_csv_uploaded_to_the_prefix_is_loaded_once_by_the_sensor(dagster_dev, stack, s3, hologres):
    # The stack's environment has PIPELINE_LOCAL_DIR, so the sensors run by default, as for a user.
    key = f"original-data/sensor-e2e-{uuid.uuid4().hex[:8]}.csv"
    order_ids = [f"e2e-{uuid.uuid4()}" for _ in range(5)]
    body = "order_id,user_id,book_id,book_name,order_cnt,order_amt\n" + "".join(
        f"{order_id},1,6,人間失格,2,200\n" for order_id in order_ids)
    s3.put_object(Bucket=stack.bucket, Key=key, Body=body.encode())

    def landed() -> int:
        if hologres.execute("SELECT to_regclass('public.book_order')").fetchone()[0] is None:
            return 0
        return hologres.execute("SELECT count(*) FROM public.book_order WHERE order_id = ANY(%s)",
                                (order_ids,)).fetchone()[0]

    deadline = time.monotonic() + 150  # one 30 s sensor interval, a queued run's launch, and slack for CI
    while time.monotonic() < deadline and landed() < 5:
        time.sleep(2)
    assert landed() == 5
    query = ('{ runsOrError(filter: {tags: [{key: "dagster/partition", value: "PARTITION"}]}) '
             "{ ... on Runs { results { status tags { key value } } } } }").replace("PARTITION", key)
    # The rows commit before the run ends (its checks and events follow): wait for the run to finish.
    while True:
        results = graphql(dagster_dev, query)["runsOrError"]["results"]
        finished = all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in results)
        if finished or time.monotonic() > deadline + 60:
            break
        time.sleep(1)
    assert [r["status"] for r in results] == ["SUCCESS"]  # one run for the object, and it succeeded
    assert {"key": "dagster/sensor_name", "value": "book_order_sensor"} in results[0]["tags"]


def test_a_poison_record_in_the_stream_is_rejected_and_the_sensors_later_runs_go_on(dagster_dev, kinesis, redshift):
    # The shipped sensor_data pipeline, its sensor running under `dagster dev`'s daemon as for a user.
    tag = uuid.uuid4().hex[:6]

    def put(statuses: list[str]) -> None:
        records = [{"Data": json.dumps({"sensorId": 7, "currentTemperature": 20 + i, "status": status}).encode(),
                    "PartitionKey": f"{tag}-{i}"} for i, status in enumerate(statuses)]
        assert kinesis.put_records(StreamName="test-streaming-data", Records=records)["FailedRecordCount"] == 0

    def landed(status: str) -> int:
        if redshift.execute("SELECT to_regclass('sensor_schema.sensor_data')").fetchone()[0] is None:
            return 0
        return redshift.execute("SELECT count(*) FROM sensor_schema.sensor_data WHERE status = %s",
                                (status,)).fetchone()[0]

    def rejected() -> list[tuple]:
        if redshift.execute("SELECT to_regclass('sensor_schema.sensor_data_rejected')").fetchone()[0] is None:
            return []
        return redshift.execute("SELECT column_name, error FROM sensor_schema.sensor_data_rejected "
                                "WHERE raw_record LIKE %s", (f"%poison-{tag}%",)).fetchall()

    def wait_for(condition: Any, seconds: float = 240) -> bool:
        # A 5 s sensor interval, a queued run's launch and a run's start-up, with slack for a loaded CI machine.
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            time.sleep(1)
        return condition()

    # status is varchar(16): the warehouse would refuse the second record.
    put([f"ok-{tag}", f"poison-{tag}-far-too-long-for-varchar-16", f"ok-{tag}"])
    assert wait_for(lambda: landed(f"ok-{tag}") == 2 and len(rejected()) == 1)
    ((column, error),) = rejected()
    assert column == "status" and "String length exceeds DDL length" in error

    put([f"later-{tag}"] * 3)
    assert wait_for(lambda: landed(f"later-{tag}") == 3)
    query = ('{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "sensor_data_sensor"}]}) '
             "{ ... on Runs { results { status } } } }")
    assert wait_for(lambda: all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED")
                                for r in graphql(dagster_dev, query)["runsOrError"]["results"]), 120)
    statuses = [r["status"] for r in graphql(dagster_dev, query)["runsOrError"]["results"]]
    assert statuses and set(statuses) == {"SUCCESS"}, statuses
