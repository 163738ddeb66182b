"""The embedded local stack: `pipeline local up | down | status | env`."""

from __future__ import annotations

from pipeline.local.stack import LocalStack


def test_session_stack_answers_on_postgres_and_moto(stack, hologres, s3):
    assert hologres.execute("SELECT current_database()").fetchone() == ("hologres",)
    assert stack.bucket in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}


def test_up_again_reuses_the_running_processes(stack):
    again = LocalStack(stack.state_dir, stack.pg_port, stack.aws_port, dotenv_path=None)
    before = again.pids()
    statuses = again.up()
    assert {s.name: s.action for s in statuses} == {"postgresql": "reused", "moto": "reused"}
    assert {s.name: s.pid for s in statuses} == before
