"""Exactly once, for each target and each mode, on the stand-ins' rules (docs/targets.md).

For Hologres and Redshift and every out.mode: two objects load once and a rerun loads nothing new;
a `pipeline run` killed with SIGKILL at seeded points, then run again, leaves exactly the source; two
runs started together leave exactly the source. The loads go through boto3 and psycopg to the
stand-ins, so each dialect's own strategy (multi-DML transactions, fixed copy, a DDL swap, COPY FROM
S3, LOCK-guarded claims) is what is tested.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline_tests.faults.loads import (
    assert_exactly_the_source,
    exists,
    pipeline_cli,
    pipeline_popen,
    upload_books,
    write_config,
)

pytestmark = pytest.mark.stack

MODES = ("insert_direct", "append", "merge", "insert", "truncate_insert", "replace")
TARGETS = ("hologres", "redshift")
# What a run that lost a race may say; it commits nothing, and the other run's rows stand.
LOST_RACE = ("loaded by another run meanwhile", "1023", "could not serialize")


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, stack: Any) -> Iterator[tuple[str, psycopg.Connection]]:
    url = stack.hologres_url if request.param == "hologres" else stack.redshift_url
    with psycopg.connect(url, autocommit=True) as conn:
        yield request.param, conn


@pytest.fixture
def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def reset(conn: psycopg.Connection, table: str, pipeline: str) -> None:
    """Start over: no table, no ledger rows (each statement on its own, as every target allows)."""
    conn.execute(f"DROP TABLE IF EXISTS public.{table}")
    conn.execute(f"DROP TABLE IF EXISTS public.{table}_rejected")
    for state_table in ("pipeline_object_ledger", "pipeline_pending_run"):
        if exists(conn, f"public.{state_table}"):
            conn.execute(f"DELETE FROM public.{state_table} WHERE pipeline = %s", (pipeline,))


@pytest.mark.parametrize("mode", MODES)
def test_two_objects_load_once_and_a_rerun_loads_nothing_new(stack, s3, target, tmp_path, unique, mode):
    kind, conn = target
    truths = upload_books(s3, stack.bucket, f"{unique}/", objects=2, rows=3_000)
    path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, target=kind, mode=mode,
                        primary_key=["order_id"])

    first = BatchLoad(config_module.load(path)).run()
    second = BatchLoad(config_module.load(path)).run()

    assert len(first.loaded) == 2 and first.rows == 6_000
    assert not second.loaded and second.up_to_date == 2
    assert_exactly_the_source(conn, unique, unique, truths)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_kill_9_at_seeded_points_then_a_rerun_leaves_exactly_the_source(stack, s3, target, tmp_path, unique,
                                                                          mode):
    kind, conn = target
    truths = upload_books(s3, stack.bucket, f"{unique}/", objects=4, rows=10_000)
    path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, target=kind, mode=mode,
                        primary_key=["order_id"])
    started = time.monotonic()
    assert pipeline_cli("run", str(path)).returncode == 0
    full_run = time.monotonic() - started
    rng = random.Random(f"{kind}-{mode}")
    for _ in range(3):
        reset(conn, unique, unique)
        process = pipeline_popen("run", str(path))
        time.sleep(rng.uniform(0.0, full_run))  # a seeded point anywhere in the run, start-up included
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)

        rerun = pipeline_cli("run", str(path))

        assert rerun.returncode == 0, rerun.stderr
        assert_exactly_the_source(conn, unique, unique, truths)
    assert "nothing new to load" in pipeline_cli("run", str(path)).stdout


@pytest.mark.parametrize("mode", MODES)
def test_two_runs_started_together_leave_exactly_the_source(stack, s3, target, tmp_path, unique, mode):
    kind, conn = target
    truths = upload_books(s3, stack.bucket, f"{unique}/", objects=3, rows=5_000)
    path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, target=kind, mode=mode,
                        primary_key=["order_id"])

    runs = [pipeline_popen("run", str(path)) for _ in range(2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    outcomes = [(run.returncode, stderr) for run, stderr in zip(runs, errors, strict=True)]

    assert any(code == 0 for code, _ in outcomes), outcomes
    for code, stderr in outcomes:
        assert code == 0 or any(reason in stderr for reason in LOST_RACE), stderr
        assert "Traceback" not in stderr
    assert_exactly_the_source(conn, unique, unique, truths)
    assert "nothing new to load" in pipeline_cli("run", str(path)).stdout
