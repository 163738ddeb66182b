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
