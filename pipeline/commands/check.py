"""``pipeline check CONFIG.yml``: validate the config and test every dependency, one line each."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config (YAML)")


def run(args: argparse.Namespace) -> int:
    from pipeline import config as config_module
    from pipeline.errors import ConfigError
    from pipeline.inspect import CheckResult, check

    try:
        config = config_module.load(args.config)
    except ConfigError as error:
        print(CheckResult("config", False, str(error)).line())
        return 1
    print(CheckResult("config", True, f"{args.config} is valid (pipeline {config.name})").line())
    for warning in config.warnings:
        print(f"warning: {warning}")
    results = check(config)
    for result in results:
        print(result.line())
    return 0 if all(result.ok for result in results) else 1
