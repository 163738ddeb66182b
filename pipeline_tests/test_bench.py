"""`pipeline bench`: a quick run on the session stack produces every figure, its ratio and the page.

The figures are not checked against their targets (a shared machine is noisy); only that each
was measured, is a finite positive number, and carries the comparison it is meant to.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline.bench import report
from pipeline.bench.results import Figure, Results, Section, percentile
from pipeline.commands import bench as bench_command

# Figure key -> what its ratio is against (None: no ratio), for a quick run's sizes.
QUICK_FIGURES: dict[str, str | None] = {
    "load.small.psql": None,
    "load.small.pipeline_run": None,
    "load.small.ours": None,
    "load.small.s3_client": None,
    "load.small.after_startup": "Embulk",
    "load.bulk.psql": None,
    "load.bulk.ours_plain": "psql",
    "load.bulk.ours_kms": "psql",
    "load.bulk.pipeline_run": "psql",
    "load.bulk.bare": "psql",
    "load.bulk.psql_quoted": None,
    "load.bulk.ours_quoted": "the quoted file",
    "load.guard.plain": None,
    "load.guard.quoted": None,
    "memory.10mb": None,
    "memory.50mb": None,
    "memory.baseline": None,
    "parallel.threads_1": None,
    "parallel.threads_2": "max_threads 1",
    "parallel.threads_4": "max_threads 1",
    "sensor.100.ours": "dagster_aws",
    "sensor.100.stock": None,
    "sensor.2000.ours": "dagster_aws",
    "sensor.2000.stock": None,
    "events.follow.p50": None,
    "events.follow.p95": None,
    "events.sensor.p50": None,
    "events.sensor.p95": None,
    "events.continuous.p50": None,
    "events.continuous.p95": None,
    "events.polling.p50": None,
    "events.polling.p95": None,
    "stream.backlog.ours": "bare",
    "stream.backlog.bare": None,
    "stream.latency.p50": None,
    "stream.latency.p95": None,
    "stream.latency_1s_window.p50": None,
    "stream.latency_1s_window.p95": None,
    "stream.sensor_latency.p50": None,
    "stream.sensor_latency.p95": None,
    "refusals.object.clean": None,
    "refusals.object.too_long": "clean object",
    "refusals.object.check": "clean object",
    "refusals.stream.clean": None,
    "refusals.stream.too_long": "clean batch",
}


@pytest.fixture(scope="module")
def quick_run(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One `pipeline bench --quick` on the session stack, writing its JSON and page to a temporary folder."""
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.bench", "--quick", "--use-running", "--json", str(out / "results.json"),
         "--docs", str(out / "benchmarks.md")],
        capture_output=True, text=True, timeout=600, env=os.environ.copy(), cwd=out)
    return result, out


def figures_of(out: Path) -> dict[str, Figure]:
    return {f.key: f for f in Results.read(out / "results.json").figures()}


def test_a_quick_run_exits_zero_and_prints_every_section(quick_run):
    result, _ = quick_run

    assert result.returncode == 0, result.stderr[-3000:]
    for title in ("Bulk load", "Peak memory", "Parallel objects", "S3 sensor tick", "Kinesis", "One refused record"):
        assert title in result.stdout
    assert "FAILED" not in result.stdout


def test_every_figure_is_measured_as_a_finite_positive_number(quick_run):
    _, out = quick_run

    figures = figures_of(out)

    missing = sorted(set(QUICK_FIGURES) - set(figures))
    assert not missing, f"not measured: {missing}"
    assert all(math.isfinite(f.value) and f.value > 0 for f in figures.values())


def test_every_comparison_carries_its_ratio_and_reference(quick_run):
    _, out = quick_run

    figures = figures_of(out)

    for key, reference in QUICK_FIGURES.items():
        if reference is None:
            continue
        figure = figures[key]
        assert figure.ratio is not None and math.isfinite(figure.ratio) and figure.ratio > 0, key
        assert reference in (figure.compared_with or ""), (key, figure.compared_with)


def test_the_targets_of_the_brief_are_stated_with_a_verdict(quick_run):
    _, out = quick_run

    figures = figures_of(out)

    for key in ("load.small.after_startup", "memory.50mb", "stream.backlog.ours", "stream.latency.p95",
                "stream.latency_1s_window.p95", "stream.sensor_latency.p95"):
        assert figures[key].target and figures[key].meets in (True, False), key


def test_the_dagster_sensor_is_timed_or_the_page_says_why_not(quick_run):
    _, out = quick_run

    results = Results.read(out / "results.json")

    sensor = results.sections["sensor"]
    timed = [f for f in sensor.figures if f.key.endswith(".dagster")]
    assert timed or any("Dagster sensor not timed" in note for note in sensor.notes)


def test_the_page_names_the_machine_and_shows_every_figure(quick_run):
    _, out = quick_run

    page = (out / "benchmarks.md").read_text(encoding="utf-8")
    machine = json.loads((out / "results.json").read_text())["machine"]

    assert page.startswith("# Benchmarks")
    for fact in (machine["cpu"], str(machine["cores"]), machine["python"], machine["postgresql"]):
        assert fact and fact in page
    for figure in figures_of(out).values():
        assert figure.label in page


def test_nothing_the_bench_made_is_left_on_the_stack(quick_run, stack, s3, kinesis):
    quick_run  # noqa: B018 -- the run must have happened

    leftovers: list[str] = []
    for url in (stack.hologres_url, stack.redshift_url):
        with psycopg.connect(url, autocommit=True) as conn:
            leftovers += [f"table {r[0]}.{r[1]}" for r in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name LIKE 'bench\\_%'")]
            leftovers += [f"schema {r[0]}" for r in conn.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'bench\\_%'")]
            leftovers += [f"database {r[0]}" for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'")]
    leftovers += [f"object {o['Key']}" for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="bench-").get(
        "Contents", [])]
    leftovers += [f"bucket {b['Name']}" for b in s3.list_buckets()["Buckets"]
                  if b["Name"].startswith("pipeline-bench-")]
    leftovers += [f"stream {name}" for name in kinesis.list_streams()["StreamNames"] if name.startswith("bench_")]

    assert leftovers == []


# --------------------------------------------------------------------------- without a stack


def sample_results() -> Results:
    section = Section("load", "Bulk load")
    section.add(Figure("load.bulk.psql", "psql \\copy", 100_000.0, "rows/s"))
    section.add(Figure("load.bulk.ours_plain", "this project", 95_000.0, "rows/s", ratio=0.95,
                       ratio_meaning="the floor's rows/s:", compared_with="psql \\copy, 100,000 rows/s"))
    section.notes.append("dlt skipped: dlt is not installed")
    return Results(machine={"cpu": "Test CPU", "cores": 2, "python": "3.11.7", "postgresql": "15.18",
                            "date": "2024-06-01 00:00 UTC"},
                   options={"quick": True, "sizes": {"rows": 1000}}, started="2024-06-01T00:00:00+00:00",
                   sections={"load": section}, seconds=61.0)


def test_results_read_back_from_json_as_they_were_written(tmp_path):
    results = sample_results()

    results.write(tmp_path / "results.json")

    assert Results.read(tmp_path / "results.json") == results


def test_the_page_puts_each_ratio_next_to_its_reference(tmp_path):
    page = report.markdown(sample_results(), {}, tmp_path / "benchmarks.md")

    assert "| this project | 95,000 rows/s |  | 0.95× the floor's rows/s: psql \\copy, 100,000 rows/s |  |" in page
    assert "dlt skipped: dlt is not installed" in page
    assert "Test CPU" in page


def test_the_page_names_the_sizes_a_flag_changed(tmp_path):
    from pipeline.bench.harness import DEFAULT_SIZES

    results = sample_results()
    results.options = {"quick": False, "sizes": {**DEFAULT_SIZES.as_dict(), "stream_records": 200_000}}
    changed = report.markdown(results, {}, tmp_path / "benchmarks.md")
    results.options = {"quick": False, "sizes": DEFAULT_SIZES.as_dict()}
    default = report.markdown(results, {}, tmp_path / "benchmarks.md")

    assert "| Run | default sizes but stream_records 200,000, " in changed
    assert "| Run | default sizes, " in default


def test_from_json_rewrites_the_page_without_measuring(tmp_path, capsys):
    sample_results().write(tmp_path / "results.json")
    parser = argparse.ArgumentParser()
    bench_command.add_arguments(parser)

    code = bench_command.run(parser.parse_args(["--from-json", str(tmp_path / "results.json"), "--no-charts",
                                                "--docs", str(tmp_path / "page.md")]))

    assert code == 0
    assert "95,000 rows/s" in (tmp_path / "page.md").read_text(encoding="utf-8")
    assert "95,000 rows/s" in capsys.readouterr().out


def test_an_unknown_section_is_refused_naming_the_known_ones():
    parser = argparse.ArgumentParser()
    bench_command.add_arguments(parser)

    with pytest.raises(SystemExit):
        parser.parse_args(["--only", "load,speed"])


def test_percentiles_are_nearest_rank():
    samples = [float(i) for i in range(1, 101)]

    assert (percentile(samples, 0.5), percentile(samples, 0.95), percentile(samples, 1.0)) == (50.0, 95.0, 100.0)


def test_the_bench_extra_resolves_as_a_fresh_venv_would_with_a_boto3_its_botocore_matches(tmp_path: Path):
    """`pip install '.[bench]'` once took 14 minutes to resolve, or broke boto3: dlt's s3 extra pins botocore."""
    root = Path(__file__).resolve().parents[1]
    report_path = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                             "--report", str(report_path), f"{root}[bench]"],
                            capture_output=True, text=True, timeout=120)  # "under two minutes"
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
              for item in json.loads(report_path.read_text())["install"]}
    assert {"dlt", "sling-linux-amd64", "matplotlib", "boto3", "botocore"} <= set(chosen)
    # boto3 x.y.z needs botocore x.y.*: a resolver that downgrades one alone leaves boto3 broken.
    assert chosen["boto3"].split(".")[:2] == chosen["botocore"].split(".")[:2]
    assert "aiobotocore" not in chosen


def test_continuous_latency_is_measured_at_the_window_the_shipped_config_sets():
    import yaml

    from pipeline import config as config_module
    from pipeline.bench import stream

    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "pipelines" / "sensor_data.yml").read_text())
    assert shipped["exec"]["window_seconds"] == stream.WINDOW_SECONDS == config_module.ExecConfig().window_seconds
