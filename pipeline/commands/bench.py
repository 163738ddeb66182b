"""``pipeline bench``: measure load speed, memory, parallelism, sensor ticks and streaming against references.

Runs on a local stack of its own (fresh state directory, free ports; stopped at the end) or on the
running one with ``--use-running``. Prints a table, writes the results as JSON, draws charts when
matplotlib is installed, and rewrites docs/benchmarks.md after a full run at default sizes.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.bench.results import SECTIONS
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.bench.harness import Sizes

DEFAULT_JSON = Path("bench-results/results.json")
DEFAULT_DOCS = Path("docs/benchmarks.md")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("section", nargs="*", metavar="SECTION",
                        help=f"sections to run, e.g. `pipeline bench load` (one of {', '.join(SECTIONS)}; "
                             "default: all, or --only)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, in about two minutes (does not rewrite docs/benchmarks.md unless --docs)")
    parser.add_argument("--only", metavar="SECTIONS", type=_sections, default=list(SECTIONS),
                        help=f"comma-separated sections to run: {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--json", metavar="PATH", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the results (default {DEFAULT_JSON})")
    parser.add_argument("--docs", metavar="PATH", type=Path,
                        help=f"write the benchmarks page here, charts in img/ beside it (default {DEFAULT_DOCS}, "
                             "written only by a full run at default sizes)")
    parser.add_argument("--no-charts", action="store_true", help="do not draw PNG charts")
    parser.add_argument("--use-running", action="store_true",
                        help="use the running local stack (its environment, or `pipeline local up`'s state dir) "
                             "instead of starting one; everything the bench creates there is removed afterwards")
    parser.add_argument("--from-json", metavar="PATH", type=Path,
                        help="measure nothing: print and re-render the page and charts from saved results")
    sizes = parser.add_argument_group("sizes (override the default or --quick ones)")
    sizes.add_argument("--rows", type=int, help="rows of the bulk load (default 1,000,000; quick 100,000)")
    sizes.add_argument("--repeats", type=int, help="rounds of each timed bulk load (default 3)")
    sizes.add_argument("--memory-mb", type=_numbers, metavar="N,N",
                       help="object sizes in MB for peak RSS (default 10,100,1000; quick 10,50)")
    sizes.add_argument("--sensor-objects", type=_numbers, metavar="N,N",
                       help="existing objects for the sensor tick (default 100,1000,10000; quick 100,2000)")
    sizes.add_argument("--stream-records", type=int,
                       help="Kinesis backlog records (default 1,000,000 in kinesalite, 100,000 in moto; quick 20,000)")
    sizes.add_argument("--refusal-records", type=int,
                       help="the batch with one refused record, S3 and Kinesis (default 100,000; quick 10,000)")


def run(args: argparse.Namespace) -> int:
    if args.section:
        try:
            args.only = _sections(",".join(args.section))
        except argparse.ArgumentTypeError as error:
            raise PipelineError(str(error)) from None
    from pipeline.bench import report
    from pipeline.bench.harness import DEFAULT_SIZES, QUICK_SIZES
    from pipeline.bench.results import Results
    from pipeline.bench.runner import run_benchmark, write_charts

    if args.from_json is not None:
        if not args.from_json.is_file():
            raise PipelineError(f"--from-json: no results file at {args.from_json}")
        results = Results.read(args.from_json)
        full = True
    else:
        from pipeline.bench.harness import checkout

        checkout()  # before any stack starts: the bench needs a checkout's reference configs
        _compile_package()
        sizes = _sizes(args, QUICK_SIZES if args.quick else DEFAULT_SIZES)
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.getLogger("pipeline").setLevel(logging.WARNING)  # the engine's INFO lines would drown the table
        results = run_benchmark(sizes, args.only, use_running=args.use_running, quick=args.quick, emit=_emit)
        full = not args.quick and list(args.only) == list(SECTIONS)
        results.write(args.json)
        _emit(f"wrote {args.json}")
    docs = args.docs if args.docs is not None else (DEFAULT_DOCS if full else None)
    charts: dict[str, Path] = {}
    if not args.no_charts:
        chart_dir = (docs.parent if docs is not None else args.json.parent) / "img"
        charts, missing = write_charts(results, chart_dir)
        if missing:
            results.notes.append(f"No charts: {missing}.")
        elif charts:
            _emit(f"drew {len(charts)} charts in {chart_dir}")
    if docs is not None:
        docs.parent.mkdir(parents=True, exist_ok=True)
        docs.write_text(report.markdown(results, charts, docs), encoding="utf-8")
        _emit(f"wrote {docs}")
    else:
        _emit(f"{DEFAULT_DOCS} left as it is (quick or partial run); pass --docs PATH to write the page")
    print(report.table(results), end="")
    failed = [s.name for s in results.sections.values() if s.error]
    if failed:
        print(f"error: section(s) {', '.join(failed)} failed; see above", file=sys.stderr)
        return 1
    return 0


def _sizes(args: argparse.Namespace, base: Sizes) -> Sizes:
    changes: dict[str, Any] = {name: value for name, value in (
        ("rows", args.rows), ("repeats", args.repeats), ("stream_records", args.stream_records),
        ("refusal_records", args.refusal_records),
        ("memory_mb", tuple(args.memory_mb) if args.memory_mb else None),
        ("sensor_objects", tuple(args.sensor_objects) if args.sensor_objects else None),
    ) if value is not None}
    for name, value in changes.items():
        if any(v < 1 for v in (value if isinstance(value, tuple) else (value,))):
            raise PipelineError(f"--{name.replace('_', '-')} must be positive")
    return dataclasses.replace(base, **changes)


def _sections(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section {', '.join(unknown) or '(none)'}; "
                                         f"choose from {','.join(SECTIONS)}")
    return [name for name in SECTIONS if name in names]


def _numbers(text: str) -> list[int]:
    try:
        return sorted(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None


def _emit(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _compile_package() -> None:
    """The package's bytecode, fresh: a checkout measured as a pip-installed wheel would run (pip writes it)."""
    import compileall
    from pathlib import Path

    import pipeline

    compileall.compile_dir(str(Path(pipeline.__file__).parent), quiet=1)
