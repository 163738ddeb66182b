"""The embedded local stack: ``pipeline local up | down | status | env``.

Tests that only read use the session's ``stack``; tests that start, stop or break a stack use
``own_stack`` (its own state dir and ports), driven through the real command line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pipeline.errors import PipelineError
from pipeline.local.stack import LocalStack, StackEndpoints, find_postgres_bindir

# Variables that would make a `pipeline local` subprocess pick another stack than the one named.
_STACK_SELECTORS = ("PIPELINE_LOCAL_DIR", "PIPELINE_PG_PORT", "PIPELINE_AWS_PORT")


def pipeline_local(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in (env or os.environ).items() if k not in _STACK_SELECTORS}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "local", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def is_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; a zombie left for init to reap is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def recorded_pids(state_dir: Path) -> dict[str, int]:
    postmaster = (state_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0]
    return {"postgresql": int(postmaster), "moto": int((state_dir / "moto.pid").read_text()),
            "standin": int((state_dir / "standin.pid").read_text())}


def own_stack_args(own_stack: LocalStack) -> list[str]:
    return [
        "--state-dir",
        str(own_stack.state_dir),
        "--pg-port",
        str(own_stack.pg_port),
        "--aws-port",
        str(own_stack.aws_port),
        "--standin-port",
        str(own_stack.standin_port),
    ]


# -- the session stack -------------------------------------------------------------------------


def test_every_service_of_the_session_stack_answers(stack: StackEndpoints):
    statuses = LocalStack(stack.state_dir, dotenv_path=None).status()

    assert [(s.name, s.answers) for s in statuses] == [("postgresql", True), ("moto", True), ("standin", True)]
    assert all(s.pid for s in statuses)


def test_up_again_keeps_the_running_processes(stack: StackEndpoints):
    again = LocalStack(stack.state_dir, stack.pg_port, stack.aws_port, standin_port=stack.standin_port,
                       dotenv_path=None)
    pids_before = again.pids()

    statuses = again.up()

    assert {s.name: s.action for s in statuses} == {"postgresql": "reused", "moto": "reused", "standin": "reused"}
    assert {s.name: s.pid for s in statuses} == pids_before


def test_env_output_is_evaluated_by_bash_and_its_urls_connect(stack: StackEndpoints, tmp_path: Path):
    clean_env = {k: v for k, v in os.environ.items() if k not in stack.env}
    command = (
        f'eval "$({sys.executable} -m pipeline.cli local env --state-dir {stack.state_dir})" && '
        'echo "$HOLOGRES_URL" && echo "$REDSHIFT_URL" && '
        # boto3 must find moto through the standard AWS_* variables alone.
        f'{sys.executable} -c \'import boto3; print(len(boto3.client("s3").list_buckets()["Buckets"]))\''
    )

    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=clean_env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    hologres_url, redshift_url, bucket_count = result.stdout.split()
    assert hologres_url == f"postgresql://pipeline:pipeline@127.0.0.1:{stack.standin_port}/hologres"
    for url, database in ((hologres_url, "hologres"), (redshift_url, "redshift")):
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == (database,)
    assert int(bucket_count) >= 1


def test_demo_bucket_key_alias_and_two_shard_stream_exist(stack: StackEndpoints, s3, kms, kinesis):
    location = s3.get_bucket_location(Bucket="bob-embulk-demo")["LocationConstraint"]
    alias_names = {alias["AliasName"] for alias in kms.list_aliases()["Aliases"]}
    key = kms.describe_key(KeyId="alias/pipeline-demo")["KeyMetadata"]
    stream = kinesis.describe_stream_summary(StreamName="test-streaming-data")["StreamDescriptionSummary"]

    assert location == "ap-northeast-1"
    assert "alias/pipeline-demo" in alias_names
    assert (key["KeySpec"], key["KeyState"]) == ("SYMMETRIC_DEFAULT", "Enabled")
    assert (stream["StreamStatus"], stream["OpenShardCount"]) == ("ACTIVE", 2)
    assert (stack.bucket, stack.kms_key, stack.stream) == (
        "bob-embulk-demo",
        "alias/pipeline-demo",
        "test-streaming-data",
    )


def test_dagster_keeps_its_runs_in_the_stack_postgres_behind_a_queue(stack: StackEndpoints):
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    with DagsterInstance.get() as instance:
        storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        coordinator = instance.run_coordinator
        concurrency = instance.get_concurrency_config()

    assert [type(storage) for storage in storages] == [
        PostgresRunStorage,
        PostgresEventLogStorage,
        PostgresScheduleStorage,
    ]
    assert isinstance(coordinator, QueuedRunCoordinator)
    limits = concurrency.run_queue_config.tag_concurrency_limits
    assert [(limit["key"], limit["limit"]) for limit in limits] == [("pipeline/warehouse", 2)]
    assert concurrency.pool_config.default_pool_limit == 2
    with psycopg.connect(stack.env["REDSHIFT_URL"].replace("/redshift", "/dagster")) as connection:
        assert connection.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone() == (True,)


# -- stacks of their own, through the command line ---------------------------------------------


@pytest.mark.parametrize(
    ("taken", "flag", "variable"),
    [("pg_port", "--pg-port", "PIPELINE_PG_PORT"), ("aws_port", "--aws-port", "PIPELINE_AWS_PORT"),
     ("standin_port", "--standin-port", "PIPELINE_STANDIN_PORT")],
)
def test_a_taken_port_is_named_with_the_flag_and_variable_to_change_it(
    own_stack: LocalStack, tmp_path: Path, taken: str, flag: str, variable: str
):
    port = getattr(own_stack, taken)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()

        result = pipeline_local("up", *own_stack_args(own_stack), cwd=tmp_path)

    assert result.returncode == 1
    assert f"port {port}" in result.stderr
    assert flag in result.stderr and variable in result.stderr
    assert "Traceback" not in result.stderr
    assert own_stack.pids() == {}  # nothing was started


def test_a_stale_moto_pid_file_is_reported_removed_and_replaced(own_stack: LocalStack, tmp_path: Path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    (own_stack.state_dir / "moto.pid").write_text(f"{finished.pid}\n")

    result = pipeline_local("up", *own_stack_args(own_stack), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    stale_lines = [line for line in result.stderr.splitlines() if "moto.pid" in line]
    assert len(stale_lines) == 1 and "not running" in stale_lines[0]
    new_pid = recorded_pids(own_stack.state_dir)["moto"]
    assert new_pid != finished.pid and is_alive(new_pid)
    assert f"HOLOGRES_URL={own_stack.target_url('hologres')}" in (tmp_path / ".env").read_text()


def test_down_leaves_no_process_behind_and_a_later_up_finds_the_data(own_stack: LocalStack, tmp_path: Path):
    args = own_stack_args(own_stack)
    assert pipeline_local("up", *args, cwd=tmp_path).returncode == 0
    with psycopg.connect(own_stack.database_url("hologres"), autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (id int)")
    pids = recorded_pids(own_stack.state_dir)

    down = pipeline_local("down", *args, cwd=tmp_path)

    assert down.returncode == 0, down.stderr
    assert {name: is_alive(pid) for name, pid in pids.items()} == {"postgresql": False, "moto": False,
                                                                   "standin": False}
    assert pipeline_local("status", *args, cwd=tmp_path).returncode == 1
    assert pipeline_local("up", *args, cwd=tmp_path).returncode == 0
    with psycopg.connect(own_stack.database_url("hologres")) as connection:
        assert connection.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)


def test_down_with_purge_deletes_the_state_dir(own_stack: LocalStack, tmp_path: Path):
    args = own_stack_args(own_stack)
    assert pipeline_local("up", *args, cwd=tmp_path).returncode == 0
    pids = recorded_pids(own_stack.state_dir)

    result = pipeline_local("down", "--purge", *args, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert not own_stack.state_dir.exists()
    assert not any(is_alive(pid) for pid in pids.values())


def test_down_with_purge_refuses_a_directory_that_is_not_a_stack(tmp_path: Path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")

    result = pipeline_local("down", "--purge", "--state-dir", str(precious), cwd=tmp_path)

    assert result.returncode == 1
    assert "refusing to delete" in result.stderr
    assert (precious / "notes.txt").exists()


def test_a_postgres_that_fails_to_start_points_at_its_log(own_stack: LocalStack, tmp_path: Path):
    own_stack.up()
    own_stack.down()
    with (own_stack.data_dir / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = 'plenty'\n")

    result = pipeline_local("up", *own_stack_args(own_stack), cwd=tmp_path)

    assert result.returncode == 1
    assert "PostgreSQL did not start" in result.stderr
    assert str(own_stack.pg_log) in result.stderr
    assert "shared_buffers" in result.stderr  # the tail of the log says why


def test_missing_postgres_binaries_say_what_to_install(tmp_path: Path):
    with pytest.raises(PipelineError) as raised:
        find_postgres_bindir(path=str(tmp_path), versioned_root=tmp_path)

    assert "install the `postgresql` package" in str(raised.value)
    assert "pg_ctl on PATH" in str(raised.value)
