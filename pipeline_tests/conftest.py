"""Shared fixtures.

``stack`` starts one embedded local stack (PostgreSQL and moto) per test session, in a fresh
state directory on free ports, so it never collides with a stack a developer left running. It
is started only when a test asks for it, and while it runs ``os.environ`` holds its ``env()``
(``AWS_ENDPOINT_URL``, ``HOLOGRES_URL``, ...), so code under test and ``pipeline ...``
subprocesses find it the way a user's shell would.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from pipeline.local.stack import LocalStack, StackEndpoints, free_port, process_is_running

# The suite shares 2 cores with PostgreSQL, moto and whatever else the machine runs: hypothesis's timing
# checks (a 200 ms deadline per example, "input generation is slow") fail on a stall, not on a bug. What
# the properties assert is unchanged.
settings.register_profile("pipeline", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pipeline")

# Stacks started by this session and not yet stopped; stopped at session end whatever happened.
_running_stacks: list[LocalStack] = []


def new_state_dir(prefix: str = "pipeline-test-stack-") -> Path:
    """A fresh state directory the postgres user can reach (pytest's tmp dirs are mode 700)."""
    state_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    state_dir.chmod(0o755)
    return state_dir


def stop_stack(local: LocalStack, *, purge: bool = True) -> None:
    """Stop ``local`` by process id and fail if any process it ran is still alive."""
    if local in _running_stacks:
        _running_stacks.remove(local)
    pids = local.pids()
    try:
        local.down()
    finally:
        left = {name: pid for name, pid in pids.items() if process_is_running(pid)}
        if purge and not left and not os.environ.get("PIPELINE_KEEP_TEST_STACK"):
            shutil.rmtree(local.state_dir, ignore_errors=True)
    if left:
        raise AssertionError(f"local stack in {local.state_dir} left processes running: {left}")


def _stop_all_stacks() -> None:
    for local in list(_running_stacks):
        try:
            stop_stack(local)
        except Exception as error:  # keep stopping the others; report this one
            print(f"could not stop local stack in {local.state_dir}: {error}")


# Last resort if the interpreter exits without a normal session finish.
atexit.register(_stop_all_stacks)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that need PostgreSQL and moto carry the `stack` marker, so `-m "not stack"` skips them.
    for item in items:
        if {"stack", "own_stack"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Runs after fixture teardown, also on Ctrl-C and failures: nothing started may outlive pytest.
    _stop_all_stacks()


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    """The session's local stack; ``os.environ`` points at it while the session runs."""
    # No demo-bucket notifications: the tests put thousands of objects there that no consumer reads, and moto's
    # SQS appends each in time that grows with the queue. The event tests make buckets and queues of their own.
    local = LocalStack(new_state_dir(), free_port(), free_port(), standin_port=free_port(), dotenv_path=None,
                       notifications=False)
    _running_stacks.append(local)
    saved_env = {name: os.environ.get(name) for name in local.env()}
    try:
        local.up()
        os.environ.update(local.env())
        yield local.endpoints()
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        stop_stack(local)


@pytest.fixture(scope="session")
def kinesalite(stack: StackEndpoints) -> Iterator[Any]:
    """A kinesalite server: the second Kinesis implementation (`make kinesalite`; CI always has it)."""
    from pipeline.local import kinesalite as kinesalite_module

    if kinesalite_module.executable() is None:
        message = "kinesalite is not installed: run `make kinesalite`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with kinesalite_module.running(stack.state_dir / "kinesalite.log") as server:
        yield server


def _aws_client(stack: StackEndpoints, service: str) -> Any:
    import boto3

    return boto3.session.Session().client(
        service,
        endpoint_url=stack.aws_endpoint,
        region_name=stack.region,
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    )


def notifying_bucket(stack: StackEndpoints, s3: Any, sqs: Any, bucket: str, queue: str) -> str:
    """Create ``bucket``, notifying a new queue ``queue`` of every object created; the queue's URL."""
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": stack.region})
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return url


@pytest.fixture(scope="session")
def s3(stack: StackEndpoints) -> Any:
    """boto3 S3 client on the stack's moto."""
    return _aws_client(stack, "s3")


@pytest.fixture(scope="session")
def kinesis(stack: StackEndpoints) -> Any:
    """boto3 Kinesis client on the stack's moto."""
    return _aws_client(stack, "kinesis")


@pytest.fixture(scope="session")
def kms(stack: StackEndpoints) -> Any:
    """boto3 KMS client on the stack's moto."""
    return _aws_client(stack, "kms")


@pytest.fixture
def hologres(stack: StackEndpoints) -> Iterator[Any]:
    """An autocommit psycopg connection to the Hologres stand-in database."""
    import psycopg

    with psycopg.connect(stack.hologres_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def redshift(stack: StackEndpoints) -> Iterator[Any]:
    """An autocommit psycopg connection to the Redshift stand-in database."""
    import psycopg

    with psycopg.connect(stack.redshift_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def own_stack() -> Iterator[LocalStack]:
    """A stack of the test's own (fresh state dir, free ports), not started; stopped afterwards.

    For tests that start, stop or break a stack without touching the session's ``stack``.
    """
    local = LocalStack(new_state_dir("pipeline-test-own-stack-"), free_port(), free_port(), standin_port=free_port(),
                       dotenv_path=None)
    _running_stacks.append(local)
    try:
        yield local
    finally:
        stop_stack(local)
