"""`dagster asset materialize` against the local stack: the route a user takes from a shell."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from pipeline_tests.defs.conftest import orders_csv, put_objects

pytestmark = pytest.mark.stack

DAGSTER = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "dagster"


def dagster_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Not the repository root: the dagster CLI lets a .env there (`pipeline local up` writes one) override env.
    return subprocess.run([str(DAGSTER), *args], capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


def test_dagster_asset_materialize_loads_one_partition_into_the_stack(book_order, s3, hologres, stack):
    pipeline = book_order()
    key = pipeline.key("orders.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 25)})
    env = {**os.environ, "PIPELINE_CONFIG_DIR": str(pipeline.directory)}
    # The partition exists once the sensor has seen the object; here the test adds it, in the stack's instance.
    with dg.DagsterInstance.from_config(str(stack.state_dir / "dagster")) as instance:
        instance.add_dynamic_partitions(pipeline.pipeline.partitions_name, [key])

        first = dagster_cli("asset", "materialize", "-m", "pipeline.definitions", "--select", pipeline.name,
                            "--partition", key, env=env, cwd=pipeline.directory)
        second = dagster_cli("asset", "materialize", "-m", "pipeline.definitions", "--select", pipeline.name,
                             "--partition", key, env=env, cwd=pipeline.directory)
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=pipeline.pipeline.table_key, asset_partitions=[key]), limit=2).records

    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert hologres.execute(f"SELECT count(*) FROM public.{pipeline.table}").fetchone()[0] == 25
    new_rows = [r.asset_materialization.metadata["new_rows"].value for r in records]
    assert sorted(new_rows) == [0, 25]
    assert "RUN_SUCCESS" in second.stderr
