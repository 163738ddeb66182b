"""One benchmark run: a stack, each section in turn, the clean-up, and the results."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.bench.harness import Bench, Sizes, environment, stack_environment
from pipeline.bench.machine import describe_machine, load_average
from pipeline.bench.results import SECTION_TITLES, SECTIONS, Results, Section

log = logging.getLogger(__name__)


def _measures() -> dict[str, Callable[[Bench, Section], None]]:
    from pipeline.bench import events, load, memory, parallel, refusals, sensor, stream

    return {"load": load.measure, "memory": memory.measure, "parallel": parallel.measure,
            "sensor": sensor.measure, "events": events.measure, "stream": stream.measure,
            "refusals": refusals.measure}


def run_benchmark(sizes: Sizes, sections: Sequence[str], *, use_running: bool, quick: bool,
                  emit: Callable[[str], None]) -> Results:
    """Measure ``sections`` (in the order of SECTIONS) and return every figure; always clean up."""
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    measures = _measures()
    started = time.monotonic()
    options: dict[str, Any] = {"quick": quick, "sections": [s for s in SECTIONS if s in sections],
                               "use_running": use_running, "sizes": sizes.as_dict()}
    with stack_environment(use_running, emit) as env, environment(env):
        results = Results(machine=describe_machine(env["HOLOGRES_URL"]), options=options,
                          started=datetime.now(UTC).isoformat(timespec="seconds"))
        with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as workdir:
            bench = Bench(env, sizes, Path(workdir), emit)
            try:
                for name in options["sections"]:
                    section = Section(name, SECTION_TITLES[name])
                    results.sections[name] = section
                    section_started = time.monotonic()
                    emit(f"{name}: {section.title}")
                    try:
                        measures[name](bench, section)
                    except Exception as error:  # one failed section must not lose the others' figures
                        log.debug("section %s failed", name, exc_info=True)
                        section.error = f"{type(error).__name__}: {error}"
                        emit(f"{name}: FAILED: {section.error}")
                    section.seconds = time.monotonic() - section_started
                    emit(f"{name}: done in {section.seconds:.0f} s")
            finally:
                bench.cleanup()
        results.machine["load_average_at_end"] = load_average()
    results.seconds = time.monotonic() - started
    return results


def write_charts(results: Results, directory: Path) -> tuple[dict[str, Path], str | None]:
    """Charts for ``results`` in ``directory``, or none and why."""
    from pipeline.bench import charts

    missing = charts.matplotlib_missing()
    if missing:
        return {}, missing
    return charts.render(results, directory), None
