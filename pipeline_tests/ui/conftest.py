"""A `dagster dev` on the session's local stack and a headless Chromium looking at it.

`dagster dev` starts as pipeline_tests/dagster_dev.py describes. PIPELINE_LOCAL_DIR is left out so the
sensors start stopped and the test, not the sensor, launches the load.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_tests.dagster_dev import running_dagster_dev
from pipeline_tests.ui.browser import missing_browser, start_chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"


@pytest.fixture(scope="module")
def dagster_ui(stack) -> Iterator[int]:
    """The port of a `dagster dev` serving this repository's code location on the stack."""
    env = {name: value for name, value in os.environ.items() if name != "PIPELINE_LOCAL_DIR"}
    log_path = Path(stack.state_dir) / "dagster-dev-ui.log"
    try:
        with running_dagster_dev(env, log_path) as port:
            yield port
    finally:
        if ARTIFACTS.is_dir() and log_path.exists():
            shutil.copy(log_path, ARTIFACTS / "dagster-dev.log")


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
