"""`pipeline demo` runs the whole mission on a fresh stack of its own and says what landed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.stack


def test_demo_brings_up_a_stack_generates_data_and_loads_both_pipelines(own_stack, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DAGSTER_", "PIPELINE_", "HOLOGRES",
                                                                        "REDSHIFT"))}
    env.update(PIPELINE_PG_PORT=str(own_stack.pg_port), PIPELINE_AWS_PORT=str(own_stack.aws_port),
               PIPELINE_STANDIN_PORT=str(own_stack.standin_port))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--state-dir", str(own_stack.state_dir),
         "--rows", "300", "--records", "120"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "book_order[original-data/book_order.csv]: success" in result.stdout
    assert "book_order[encryption-data/book_order.csv]: success" in result.stdout
    assert "public.book_order: 600 rows, 0 rejected" in result.stdout
    assert "sensor_schema.sensor_data: 120 rows, 0 rejected" in result.stdout
    assert (tmp_path / ".env").read_text().count("HOLOGRES_URL=") == 1
