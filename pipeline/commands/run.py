"""``pipeline run CONFIG.yml``: load what is new, print a summary."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the loads are imported when they run: `pipeline run` starts without the other engine
    from pipeline.batch import RunSummary
    from pipeline.stream import StreamSummary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config (YAML)")
    parser.add_argument("--key", action="append", dest="keys", metavar="KEY",
                        help="load only this object key (repeatable); default: every new or changed object")
    parser.add_argument("--follow", action="store_true",
                        help="keep loading until stopped: a stream commits every exec.window_seconds; an S3 "
                             "pipeline with in.notifications loads each object its queue announces")


def run(args: argparse.Namespace) -> int:
    from pipeline import config as config_module
    from pipeline.progress import for_stream

    config = config_module.load(args.config)
    summary: StreamSummary | RunSummary
    if config.is_stream:
        from pipeline.stream import StreamLoad

        load = StreamLoad(config, emit=_emit)
        summary = load.follow() if args.follow else load.run(display=for_stream(sys.stderr))
    else:
        if args.follow:
            if args.keys:
                raise config_module.ConfigError("", "--key names objects to load once; --follow loads each "
                                                    "object the queue announces: give one or the other")
            from pipeline.follow import ObjectFollow

            print(ObjectFollow(config, emit=_emit, display=for_stream(sys.stderr)).follow().describe())
            return 0
        from pipeline.batch import BatchLoad

        summary = BatchLoad(config, emit=_emit, display=for_stream(sys.stderr)).run(keys=args.keys)
    print(summary.describe())
    return 0


def _emit(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
