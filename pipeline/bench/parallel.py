"""Several objects at once: the same 8 objects loaded with exec.max_threads 1, 2 and 4."""

from __future__ import annotations

import os
import time

from pipeline.bench.harness import SEED, Bench, BenchError
from pipeline.bench.results import Figure, Section, best, timings


def measure(bench: Bench, section: Section) -> None:
    from pipeline import config as config_module
    from pipeline.batch import BatchLoad
    from pipeline.generate import write_books

    sizes = bench.sizes
    rows = sizes.parallel_rows
    prefix = bench.prefix("parallel")
    table = bench.name("parallel")
    bench.drop_on_cleanup(bench.hologres_url, "public", table, f"{table}_rejected")
    bench.forget_state_on_cleanup(bench.hologres_url, "public")
    bench.on_cleanup(f"s3://{bench.bucket}/{prefix}", lambda: bench.delete_prefix(prefix))
    summary = write_books(rows, f"s3://{bench.bucket}/{prefix}", objects=sizes.parallel_objects, seed=SEED,
                          client=bench.s3)
    megabytes = summary.bytes / 1e6
    bench.emit(f"parallel: wrote {sizes.parallel_objects} objects, {rows:,} rows ({megabytes:.0f} MB) to S3")

    runs = 0

    def load(threads: int) -> float:
        nonlocal runs
        runs += 1
        config = config_module.load(bench.book_order_config(bench.name(f"parallel_{runs}"), prefix, table,
                                                            threads=threads))
        bench.recreate_book_order(table)
        started = time.perf_counter()
        result = BatchLoad(config, emit=lambda _: None).run()
        seconds = time.perf_counter() - started
        if len(result.loaded) != sizes.parallel_objects or result.rows != rows:
            raise BenchError(f"max_threads {threads}: loaded {len(result.loaded)} objects and {result.rows:,} rows")
        bench.expect_rows(bench.hologres_url, "public", table, rows, f"max_threads {threads}")
        return seconds

    load(1)  # warm-up
    samples: dict[int, list[float]] = {threads: [] for threads in sizes.parallel_threads}
    for _ in range(max(1, sizes.repeats - 1)):
        for threads in sizes.parallel_threads:
            samples[threads].append(load(threads))
        bench.emit("parallel: " + ", ".join(f"{t} thread(s) {s[-1]:.2f} s" for t, s in samples.items()))
    single = best(samples[sizes.parallel_threads[0]])
    for threads, runs_seconds in samples.items():
        seconds = best(runs_seconds)
        figure = Figure(f"parallel.threads_{threads}",
                        f"{sizes.parallel_objects} objects, {rows:,} rows ({megabytes:.0f} MB), max_threads {threads}",
                        rows / seconds, "rows/s", detail={**timings(runs_seconds), "rows": rows})
        if threads != sizes.parallel_threads[0]:
            figure.ratio = single / seconds
            figure.compared_with = f"max_threads {sizes.parallel_threads[0]}, {rows / single:,.0f} rows/s"
            figure.ratio_meaning = "the speed of"
        section.add(figure)
    section.notes.append(f"{os.cpu_count()} cores run PostgreSQL, moto and the loader together: the scaling "
                         "shows how much of a load's time is the loader's own, not what a real warehouse would do.")
