"""PNG charts of a run's figures, drawn with matplotlib when it is installed (the `bench` extra)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.bench.results import Figure, Results, Section

CHART_FILES = {
    "load": "bench-load.png",
    "memory": "bench-memory.png",
    "parallel": "bench-parallel.png",
    "sensor": "bench-sensor.png",
    "stream": "bench-stream.png",
}


def matplotlib_missing() -> str | None:
    """Why charts cannot be drawn, or None when they can."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (install the `bench` extra for charts)"
    return None


def render(results: Results, directory: Path) -> dict[str, Path]:
    """Draw one chart per section that has figures; return section name -> PNG path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, Path] = {}
    for name, draw in _DRAWERS.items():
        section = results.sections.get(name)
        if section is None or not section.figures:
            continue
        figure, axes = plt.subplots(figsize=(8, 4.2), dpi=110)
        try:
            if not draw(section, axes):
                continue
            figure.tight_layout()
            path = directory / CHART_FILES[name]
            figure.savefig(path)
            drawn[name] = path
        finally:
            plt.close(figure)
    return drawn


def _figures(section: Section, prefix: str) -> list[Figure]:
    return [f for f in section.figures if f.key.startswith(prefix)]


def _thousands(axes: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


def _bar_labels(axes: Any, bars: Any, texts: list[str]) -> None:
    for bar, text in zip(bars, texts, strict=True):
        axes.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                      fontsize=8, xytext=(0, 2), textcoords="offset points")


def _load(section: Section, axes: Any) -> bool:
    figures = _figures(section, "load.bulk.")
    if not figures:
        return False
    names = {"psql": "psql \\copy\n(floor)", "ours_plain": "pipeline\nplaintext", "ours_kms": "pipeline\nSSE-KMS",
             "pipeline_run": "pipeline run\nend to end", "ours_merge": "pipeline\nmerge",
             "ours_redshift": "pipeline\nRedshift", "bare": "bare boto3\n+ COPY",
             "psql_quoted": "psql \\copy\nquoted", "ours_quoted": "pipeline\nquoted", "dlt": "dlt", "sling": "sling",
             "psql_postgresql": "psql \\copy\nPostgreSQL", "scatter_1": "PostgreSQL\n1 writer",
             "scatter_2": "PostgreSQL\n2 writers", "scatter_4": "PostgreSQL\n4 writers"}
    labels = [names.get(f.key.rsplit(".", 1)[1], f.key.rsplit(".", 1)[1]) for f in figures]
    ours = ("ours", "scatter", "pipeline_run")
    colors = ["#888888" if ".psql" in f.key else "#2b6cb0" if any(o in f.key for o in ours) else "#a0aec0"
              for f in figures]
    bars = axes.bar(labels, [f.value for f in figures], color=colors)
    axes.tick_params(axis="x", labelsize=7)
    _bar_labels(axes, bars, [f"{f.value:,.0f}" + (f"\n{f.ratio:.2f}×" if f.ratio else "") for f in figures])
    rows = figures[0].detail.get("rows")
    axes.set_ylabel("rows/s (best round)")
    _thousands(axes)
    axes.set_title(f"Bulk load of {rows:,} book_order rows from S3" if rows else "Bulk load")
    axes.margins(y=0.2)
    return True


def _memory(section: Section, axes: Any) -> bool:
    figures = [f for f in section.figures if f.key != "memory.baseline"]
    if not figures:
        return False
    labels = [f"{f.detail.get('object_mb', 0):,.0f} MB" for f in figures]
    bars = axes.bar(labels, [f.value for f in figures], color="#2b6cb0")
    _bar_labels(axes, bars, [f"{f.value:.0f} MB" for f in figures])
    baseline = section.figure("memory.baseline")
    if baseline is not None:
        axes.axhline(baseline.value, color="#888888", linestyle=":", label=f"nothing to load: {baseline.value:.0f} MB")
    axes.axhline(200, color="#c53030", linestyle="--", label="target: 200 MB")
    axes.set_xlabel("object size")
    axes.set_ylabel("peak RSS of pipeline run (MB)")
    axes.set_title("Memory does not grow with the object")
    axes.set_ylim(0, max(220, max(f.value for f in figures) * 1.2))
    axes.legend(loc="upper left", fontsize=8)
    return True


def _parallel(section: Section, axes: Any) -> bool:
    figures = section.figures
    labels = [f.key.rsplit("_", 1)[1] for f in figures]
    bars = axes.bar(labels, [f.value for f in figures], color="#2b6cb0")
    _bar_labels(axes, bars, [f"{f.value:,.0f}" + (f"\n{f.ratio:.2f}×" if f.ratio else "") for f in figures])
    axes.set_xlabel("exec.max_threads")
    axes.set_ylabel("rows/s (best round)")
    _thousands(axes)
    axes.set_title("8 objects into one table")
    axes.margins(y=0.2)
    return True


def _sensor(section: Section, axes: Any) -> bool:
    series = {"ours": ("our lister (StartAfter)", "#2b6cb0", "o"), "stock": ("dagster_aws get_objects", "#c53030", "s"),
              "dagster": ("our Dagster sensor, one tick", "#38a169", "^")}
    plotted = False
    for kind, (label, color, marker) in series.items():
        points = sorted((int(f.key.split(".")[1]), f.value) for f in section.figures if f.key.endswith(f".{kind}"))
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], marker=marker, color=color, label=label)
            plotted = True
    if not plotted:
        return False
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("objects already under the prefix (10 new)")
    axes.set_ylabel("seconds per tick (best)")
    axes.set_title("S3 sensor tick on moto")
    axes.legend(fontsize=8)
    return True


def _stream(section: Section, axes: Any) -> bool:
    ours, bare = section.figure("stream.backlog.ours"), section.figure("stream.backlog.bare")
    p50, p95 = section.figure("stream.latency.p50"), section.figure("stream.latency.p95")
    if ours is None and p50 is None:
        return False
    if ours is not None and bare is not None:
        bars = axes.bar(["StreamLoad.run()", "bare GetRecords loop"], [ours.value, bare.value],
                        color=["#2b6cb0", "#a0aec0"], width=0.5)
        _bar_labels(axes, bars, [f"{ours.value:,.0f}\n{ours.ratio:.2f}×" if ours.ratio else f"{ours.value:,.0f}",
                                 f"{bare.value:,.0f}"])
        axes.set_ylabel("records/s (backlog, best round)")
        _thousands(axes)
        axes.margins(y=0.25)
    title = "Kinesis backlog throughput"
    if p50 is not None and p95 is not None:
        title += f"\nlatency p50 / p95: continuous mode {p50.value:.2f} / {p95.value:.2f} s"
        h95 = section.figure("stream.latency_1s_window.p95")
        if h95 is not None:
            title += f" (1 s window: p95 {h95.value:.2f} s)"
        s50, s95 = section.figure("stream.sensor_latency.p50"), section.figure("stream.sensor_latency.p95")
        if s50 is not None and s95 is not None:
            title += f", sensor mode {s50.value:.1f} / {s95.value:.1f} s"
    axes.set_title(title, fontsize=10)
    return True


_DRAWERS: dict[str, Callable[[Section, Any], bool]] = {
    "load": _load,
    "memory": _memory,
    "parallel": _parallel,
    "sensor": _sensor,
    "stream": _stream,
}
