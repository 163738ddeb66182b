"""Peak RSS of `pipeline run` against the size of the object it loads: flat is the goal.

Each load runs in a fresh child process that reports its own peak resident set size (VmHWM, see
``pipeline.bench.peak``), so nothing of the bench or of an earlier load is counted. The table has
no primary key: the server's index work is not what this measures, and without one a 1 GB load
takes a minute or two, not ten.
"""

from __future__ import annotations

import time
from functools import partial

from pipeline.bench.harness import SEED, Bench, BenchError, run_pipeline
from pipeline.bench.results import Figure, Section

TARGET_MB = 200


def measure(bench: Bench, section: Section) -> None:
    from pipeline.generate import generate_books, write_books

    sample_rows = 10_000
    bytes_per_row = sum(len(chunk) for chunk in generate_books(sample_rows, seed=SEED)) / sample_rows
    bench.forget_state_on_cleanup(bench.hologres_url, "public")
    baseline_done = False
    for size_mb in bench.sizes.memory_mb:
        rows = round(size_mb * 1e6 / bytes_per_row)
        prefix = bench.prefix(f"memory-{size_mb}mb")
        table = bench.name(f"memory_{size_mb}mb")
        bench.drop_on_cleanup(bench.hologres_url, "public", table, f"{table}_rejected")
        bench.on_cleanup(f"s3://{bench.bucket}/{prefix}", partial(bench.delete_prefix, prefix))
        started = time.perf_counter()
        summary = write_books(rows, f"s3://{bench.bucket}/{prefix}book_order.csv", seed=SEED, client=bench.s3)
        bench.emit(f"memory: wrote a {summary.bytes / 1e6:.0f} MB object ({rows:,} rows) to S3 "
                   f"in {time.perf_counter() - started:.1f} s")
        bench.recreate_book_order(table, primary_key=False)
        config = bench.book_order_config(table, prefix, table, primary_key=False)
        child = run_pipeline("run", str(config), env=bench.subprocess_env(), measure_peak=True)
        if child.exit_code != 0:
            raise BenchError(f"pipeline run of {size_mb} MB failed ({child.exit_code}): {child.output[-2000:]}")
        bench.expect_rows(bench.hologres_url, "public", table, rows, f"pipeline run of {size_mb} MB")
        peak = child.peak_rss_mb or 0.0
        section.add(Figure(
            f"memory.{size_mb}mb", f"peak RSS of `pipeline run` loading a {summary.bytes / 1e6:,.0f} MB object",
            peak, "MB", target=f"< {TARGET_MB} MB", meets=peak < TARGET_MB,
            detail={"object_mb": round(summary.bytes / 1e6, 1), "rows": rows, "seconds": round(child.seconds, 2),
                    "rows_per_s": round(rows / child.seconds)}))
        bench.emit(f"memory: {size_mb} MB object: peak RSS {peak:.0f} MB, "
                   f"{child.seconds:.1f} s ({rows / child.seconds:,.0f} rows/s)")
        if not baseline_done:
            # The same command again finds nothing new: what the interpreter and imports alone take.
            idle = run_pipeline("run", str(config), env=bench.subprocess_env(), measure_peak=True)
            if idle.exit_code != 0 or "nothing new" not in idle.output:
                raise BenchError(f"the second pipeline run should load nothing: {idle.output[-1000:]}")
            section.add(Figure("memory.baseline", "peak RSS of `pipeline run` with nothing new to load",
                               idle.peak_rss_mb or 0.0, "MB", detail={"seconds": round(idle.seconds, 2)}))
            baseline_done = True
        # Free the stack for the next size: moto keeps objects in memory, PostgreSQL on disk.
        bench.delete_prefix(prefix)
        bench.recreate_book_order(table, primary_key=False)
    largest = bench.sizes.memory_mb[-1]
    section.notes.append(f"Target: under {TARGET_MB} MB for a 1 GB object, i.e. memory that does not grow with "
                         f"the object (largest object this run: {largest:,} MB).")
