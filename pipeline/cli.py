"""The ``pipeline`` command line.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so the
command line starts fast and never imports Dagster for engine work.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "local": ("pipeline.local.commands", "start, stop and inspect the embedded local stack"),
    "generate": ("pipeline.generate", "generate sample data (book orders, sensor records)"),
    "guess": ("pipeline.commands.guess", "fill in.parser of a seed config from a sample of the data"),
    "run": ("pipeline.commands.run", "load what is new according to a config"),
    "preview": ("pipeline.commands.preview", "show a sample of the source as it would be loaded; writes nothing"),
    "check": ("pipeline.commands.check", "validate a config and test every dependency it needs"),
    "policy": ("pipeline.commands.policy", "print least-privilege IAM and S3 bucket policies (JSON)"),
    "bench": ("pipeline.commands.bench", "measure load speed, memory, sensor ticks and streaming against references"),
    "demo": ("pipeline.commands.demo", "bring up the local stack, generate data and run both pipelines"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
        # add_arguments is imported lazily only for the command being parsed (see main).
        command.set_defaults(_name=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.errors import PipelineError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Only the command being run imports its module and adds its arguments (so -h shows them).
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    name = name if name in COMMANDS else None
    module = None
    if name is not None:
        module = importlib.import_module(COMMANDS[name][0])
        module.add_arguments(_subparser(parser, name))
    args = parser.parse_args(argv)
    assert module is not None  # parse_args exits when no command was given
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(module.run(args) or 0)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`pipeline preview ... | head`): stop quietly, as cat does, and keep the
        # interpreter's last flush from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


if __name__ == "__main__":
    raise SystemExit(main())
