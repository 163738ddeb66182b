"""The package installed as a user installs it (not editable), run outside the checkout.

Configs come from the project directory Dagster runs in (``pipelines/`` there), never from the
installed package's own path; the defs folder and its ``defs.yaml`` ship in the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipeline_tests.defs.conftest import orders_csv, put_objects

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --no-deps --target`` of the checkout: the package as a wheel lays it out."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=600)
    assert (target / "pipeline" / "defs" / "pipelines" / "defs.yaml").is_file()
    return target


def test_an_installed_package_loads_the_pipelines_of_the_directory_it_runs_in(installed, book_order, s3, hologres,
                                                                             stack):
    pipeline = book_order()  # its config is <tmp>/pipelines/<name>.yml: run from <tmp>
    project = pipeline.directory.parent
    key = pipeline.key("orders.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 12)})
    env = {name: value for name, value in os.environ.items() if name != "PIPELINE_CONFIG_DIR"}
    env["PYTHONPATH"] = str(installed)

    where = subprocess.run([str(BIN / "python"), "-c", "import pipeline; print(pipeline.__file__)"], cwd=project,
                           env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip() == str(installed / "pipeline" / "__init__.py")  # not the checkout's source
    listed = subprocess.run([str(BIN / "dagster"), "asset", "list", "-m", "pipeline.definitions"], cwd=project,
                            env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert pipeline.name in listed.stdout.split()
    assert "book_order" not in listed.stdout.split()  # the checkout's pipelines/ is not looked at

    with dg.DagsterInstance.from_config(str(stack.state_dir / "dagster")) as instance:
        instance.add_dynamic_partitions(pipeline.pipeline.partitions_name, [key])
    loaded = subprocess.run([str(BIN / "dagster"), "asset", "materialize", "-m", "pipeline.definitions", "--select",
                             pipeline.name, "--partition", key], cwd=project, env=env, capture_output=True, text=True,
                            timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert hologres.execute(f"SELECT count(*) FROM public.{pipeline.table}").fetchone()[0] == 12


def test_run_from_a_directory_without_pipelines_the_error_says_where_it_looked(installed, tmp_path, stack):
    env = {name: value for name, value in os.environ.items() if name != "PIPELINE_CONFIG_DIR"}
    env["PYTHONPATH"] = str(installed)
    result = subprocess.run([str(BIN / "dagster"), "asset", "list", "-m", "pipeline.definitions"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"no pipeline config directory at {tmp_path}/pipelines (set PIPELINE_CONFIG_DIR)" in result.stderr


def test_the_bench_from_an_installed_package_outside_a_checkout_says_it_runs_in_a_checkout(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "bench", "--quick", "--only", "load"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "pipeline bench runs in a checkout of the project" in result.stderr
    assert f"{installed}" in result.stderr and "make venv && .venv/bin/pipeline bench" in result.stderr
    assert "Traceback" not in result.stderr
