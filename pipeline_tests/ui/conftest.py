"""A `dagster dev` on the session's local stack and a headless Chromium looking at it.

`dagster dev` starts from an empty working directory: it reads a `.env` in its working directory
over the environment, and a developer's `.env` (from `pipeline local up`) would point it at their
own stack instead of the test's. PIPELINE_LOCAL_DIR is left out so the sensors start stopped and the
test, not the sensor, launches the load.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.local.stack import free_port, process_is_running
from pipeline_tests.ui.browser import missing_browser, start_chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def dagster_ui(stack) -> Iterator[int]:
    """The port of a `dagster dev` serving this repository's code location on the stack."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-ui-dagster-dev-"))
    env = {name: value for name, value in os.environ.items() if name != "PIPELINE_LOCAL_DIR"}
    log_path = Path(stack.state_dir) / f"dagster-dev-ui-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 -- closed below
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-h", "127.0.0.1", "-p", str(port),
         "-w", str(ROOT / "workspace.yaml")],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
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
                    raise AssertionError("dagster dev did not start:\n" + log_path.read_text()[-3000:]) from None
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
        if ARTIFACTS.is_dir():
            shutil.copy(log_path, ARTIFACTS / "dagster-dev.log")
        shutil.rmtree(workdir, ignore_errors=True)
        assert not process_is_running(process.pid)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium; fails (never skips) with how to install it when it is missing."""
    problem = missing_browser()
    if problem:
        pytest.fail(problem, pytrace=False)
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    """test-artifacts/ui/ (git-ignored): what the browser saw, kept for CI and for the docs."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
