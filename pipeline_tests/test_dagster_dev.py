"""`dagster dev` serves the code location on the local stack's PostgreSQL storage.

The server is started as a user would (`dagster dev` on the repository's workspace.yaml with the
stack's environment) and stopped by process id; SIGINT is restored in the child because a background
`dagster dev` otherwise ignores it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.local.stack import free_port, process_is_running

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def dagster_dev(stack, tmp_path_factory) -> Iterator[int]:
    port = free_port()
    # An empty working directory: dagster dev lets a .env there override the test stack's environment.
    workdir = tmp_path_factory.mktemp("dagster-dev")
    log = open(Path(stack.state_dir) / f"dagster-dev-{port}.log", "wb")  # noqa: SIM115 -- closed below
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-h", "127.0.0.1", "-p", str(port),
         "-w", str(ROOT / "workspace.yaml")],
        cwd=workdir, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, preexec_fn=_restore_sigint)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise AssertionError("dagster dev did not start:\n" + Path(log.name).read_text()[-3000:]) from None
                time.sleep(1)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()
        assert not process_is_running(process.pid)


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
    runs = graphql(dagster_dev, query)
    results = runs["runsOrError"]["results"]
    assert [r["status"] for r in results] == ["SUCCESS"]  # one run for the object, and it succeeded
    assert {"key": "dagster/sensor_name", "value": "book_order_sensor"} in results[0]["tags"]
