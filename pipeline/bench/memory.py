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
    _measure_parquet(bench, section)
    largest = bench.sizes.memory_mb[-1]
    section.notes.append(f"Target: under {TARGET_MB} MB for a 1 GB object, i.e. memory that does not grow with "
                         f"the object (largest object this run: {largest:,} MB).")


PARQUET_ROW_GROUP_ROWS = 1_000_000  # at most; an object has at least four row groups
PARQUET_BYTES_PER_ROW = 59  # of these rows, uncompressed, as measured
PARQUET_FLAT_RATIO = 1.2


def _measure_parquet(bench: Bench, section: Section) -> None:
    """The same, for Parquet objects (in.parser.type: parquet) of the same sizes: uncompressed, so their bytes are
    the rows' own, in row groups of at most a million rows."""
    import tempfile
    from pathlib import Path

    import yaml

    smallest: tuple[int, float] | None = None
    for size_mb in bench.sizes.memory_mb:
        prefix = bench.prefix(f"memory-parquet-{size_mb}mb")
        table = bench.name(f"memory_parquet_{size_mb}mb")
        bench.drop_on_cleanup(bench.hologres_url, "public", table, f"{table}_rejected")
        bench.on_cleanup(f"s3://{bench.bucket}/{prefix}", partial(bench.delete_prefix, prefix))
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "book_order.parquet"
            rows = write_parquet_books(path, size_mb * 1_000_000)
            nbytes = path.stat().st_size
            with path.open("rb") as body:
                bench.s3.put_object(Bucket=bench.bucket, Key=f"{prefix}book_order.parquet", Body=body)
        bench.emit(f"memory: wrote a {nbytes / 1e6:.0f} MB Parquet object ({rows:,} rows) to S3 "
                   f"in {time.perf_counter() - started:.1f} s")
        bench.recreate_book_order(table, primary_key=False)
        config = bench.book_order_config(table, prefix, table, primary_key=False)
        document = yaml.safe_load(config.read_text(encoding="utf-8"))
        columns = document["in"]["parser"]["columns"]
        document["in"]["parser"] = {"type": "parquet", "columns": columns}
        document["in"]["path_match_pattern"] = r"\.parquet$"
        config.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
        child = run_pipeline("run", str(config), env=bench.subprocess_env(), measure_peak=True)
        if child.exit_code != 0:
            raise BenchError(f"pipeline run of a {size_mb} MB Parquet object failed ({child.exit_code}): "
                             f"{child.output[-2000:]}")
        bench.expect_rows(bench.hologres_url, "public", table, rows, f"pipeline run of {size_mb} MB of Parquet")
        peak = child.peak_rss_mb or 0.0
        # pyarrow alone adds about 70 MB to the process: flat, against the smallest object's peak, is the target.
        smallest = smallest or (size_mb, peak)
        flat = smallest[1] * PARQUET_FLAT_RATIO
        section.add(Figure(
            f"memory.parquet_{size_mb}mb", f"peak RSS of `pipeline run` loading a {nbytes / 1e6:,.0f} MB Parquet "
                                           "object", peak, "MB",
            target=None if smallest[0] == size_mb else f"< {flat:.0f} MB ({PARQUET_FLAT_RATIO:g} x the "
                                                        f"{smallest[0]} MB object's)",
            meets=None if smallest[0] == size_mb else peak < flat,
            detail={"object_mb": round(nbytes / 1e6, 1), "rows": rows, "seconds": round(child.seconds, 2),
                    "rows_per_s": round(rows / child.seconds)}))
        bench.emit(f"memory: {size_mb} MB Parquet object: peak RSS {peak:.0f} MB, "
                   f"{child.seconds:.1f} s ({rows / child.seconds:,.0f} rows/s)")
        bench.delete_prefix(prefix)
        bench.recreate_book_order(table, primary_key=False)


def write_parquet_books(path, nbytes: int) -> int:
    """Book orders in an uncompressed Parquet file of about ``nbytes``, written a row group at a time; its rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pa.schema([("order_id", pa.string()), ("user_id", pa.int64()), ("book_id", pa.int64()),
                        ("book_name", pa.string()), ("order_cnt", pa.int64()), ("order_amt", pa.int64())])
    total = max(1, nbytes // PARQUET_BYTES_PER_ROW)
    group = max(1, min(PARQUET_ROW_GROUP_ROWS, total // 4))
    rows = 0
    with pq.ParquetWriter(path, schema, compression="none", use_dictionary=False) as writer:
        while rows < total:
            ids = pa.array(range(rows, min(rows + group, total)), pa.int64())
            count = pc.add(pc.remainder(ids, 5), 1)
            writer.write_table(pa.table({
                "order_id": pc.binary_join_element_wise("o", pc.cast(ids, pa.string()), ""),
                "user_id": pc.add(pc.remainder(ids, 50), 1), "book_id": pa.repeat(6, len(ids)).cast(pa.int64()),
                "book_name": pa.repeat("人間失格", len(ids)), "order_cnt": count,
                "order_amt": pc.multiply(count, 100)}, schema=schema))
            rows += len(ids)
    return rows
