"""``pipeline local up | down | status | env``: drive the embedded local stack."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from pipeline.local.stack import DEFAULT_SHARDS, LocalStack, ServiceStatus, iter_env_exports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="local_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start PostgreSQL, moto and the stand-ins (idempotent) and write ./.env")
    up.add_argument(
        "--shards",
        type=int,
        default=None,
        help=f"shard count of the demo Kinesis stream when it is created (default {DEFAULT_SHARDS})",
    )
    down = actions.add_parser("down", help="stop what `up` started; the data stays unless --purge")
    down.add_argument("--purge", action="store_true", help="also delete the state directory")
    actions.add_parser("status", help="show what runs where; exit 1 unless every service answers")
    actions.add_parser("env", help='print `export NAME=value` lines: eval "$(pipeline local env)"')
    for action in actions.choices.values():
        action.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="state directory (default: $PIPELINE_LOCAL_DIR or ./.local)",
        )
        action.add_argument(
            "--pg-port", type=int, default=None, help="PostgreSQL port (default: $PIPELINE_PG_PORT or 55432)"
        )
        action.add_argument(
            "--aws-port", type=int, default=None, help="moto port (default: $PIPELINE_AWS_PORT or 55433)"
        )
        action.add_argument(
            "--standin-port", type=int, default=None,
            help="port of the Hologres/Redshift stand-ins (default: $PIPELINE_STANDIN_PORT or 55434)",
        )


def run(args: argparse.Namespace) -> int:
    stack = LocalStack(
        args.state_dir,
        args.pg_port,
        args.aws_port,
        standin_port=args.standin_port,
        shards=getattr(args, "shards", None),
        dotenv_path=Path(".env"),
    )
    if args.local_action == "env":
        for line in iter_env_exports(stack.env()):
            print(line)
        return 0
    if args.local_action == "up":
        _print_services(stack.up())
        print(f"state dir: {stack.state_dir}")
        print(f"wrote {stack.dotenv_path} (read by `dagster dev`)")
        print(f'to use the stack in this shell: eval "$({_env_command(stack)})"')
        return 0
    if args.local_action == "down":
        _print_services(stack.down(purge=args.purge))
        if args.purge:
            print(f"deleted {stack.state_dir}")
        return 0
    statuses = stack.status()
    _print_services(statuses)
    print(f"state dir: {stack.state_dir}")
    return 0 if all(status.answers for status in statuses) else 1


def _print_services(statuses: list[ServiceStatus]) -> None:
    for status in statuses:
        print(status.describe())


def _env_command(stack: LocalStack) -> str:
    command = "pipeline local env"
    # A non-default state dir must be named again, or `env` would describe the default one.
    if stack.state_dir != LocalStack(dotenv_path=None).state_dir:
        command += f" --state-dir {shlex.quote(str(stack.state_dir))}"
    return command
