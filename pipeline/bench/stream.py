"""Kinesis into the Redshift stand-in: backlog throughput, and latency in continuous and sensor mode.

Throughput: one backlog of sensor records is read to the tip by ``StreamLoad.run()`` (micro-batches
with checkpoints, deterministic UUIDs, rejects) and by a bare GetRecords, json.loads, COPY loop
(no checkpoints, random UUIDs, one transaction), each into its own table.

Latency: records are put at a steady rate, each carrying a sequence number; a separate connection
polls the table and notes when each record becomes visible. Latency runs from the PutRecords call
to that poll. In continuous mode ``StreamLoad.follow`` runs with the shipped 0.5 s window, and a 1 s
one. In sensor mode the Dagster daemon runs as a user runs it (``dagster-daemon run`` on the repository's workspace and
``dagster.yaml``, a database of its own), and the pipeline's sensor launches micro-batch runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from pipeline.bench.harness import SEED, Bench, BenchError
from pipeline.bench.results import Figure, Section, best, percentile, timings
from pipeline.orchestration.streams import RUN_LINGER_SECONDS

SHARDS = 2  # as the local stack's test-streaming-data
# The backlog is committed in this many batches (exec.max_records = records / BATCHES): a 1,000,000-record
# backlog in the shipped max_records of 100,000.
BATCHES = 10
# moto numbers each put by scanning its shard (about 1,350 records/s, slower as the shard grows): without
# kinesalite the backlog is capped at this, and the report says so.
MOTO_BACKLOG_RECORDS = 100_000
THROUGHPUT_TARGET = 1.0
POLL_SECONDS = 0.05
WINDOW_SECONDS = 0.5  # the shipped sensor_data.yml's
# Continuous mode is measured with the shipped window and a 1 s one: a record waits for the rest of its
# window and the commit, so the p95 is about 0.95 of the window plus a commit.
WINDOWS = ((WINDOW_SECONDS, "stream.latency"), (1.0, "stream.latency_1s_window"))
DRAIN_TIMEOUT_SECONDS = 20.0
SENSOR_POLL_SECONDS = 0.25
SENSOR_DRAIN_SECONDS = 120.0  # after the last put: a tick, a queued run's start and its batch, on a busy machine
SENSOR_READY_SECONDS = 300.0  # for the daemon to start, tick and land the first record
SENSOR_TARGET_P95_SECONDS = 10.0  # issue 18: under 10 s
CONTINUOUS_TARGET_P95_SECONDS = 1.0
SCHEMA = "sensor_schema"


REDSHIFT_ROLE = "arn:aws:iam::000000000000:role/redshift-copy"  # the stand-in checks its form only


def measure(bench: Bench, section: Section) -> None:
    bench.forget_state_on_cleanup(bench.redshift_url, SCHEMA)
    _backlog(bench, section)
    for window, key in WINDOWS:
        _latency(bench, section, window, key)
    _sensor_latency(bench, section)


def create_stream(bench: Bench, name: str) -> None:
    bench.kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    bench.on_cleanup(f"Kinesis stream {name}",
                     lambda: bench.kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True))
    bench.kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


# --------------------------------------------------------------------------- throughput


def _backlog(bench: Bench, section: Section) -> None:
    with _backlog_kinesis(bench) as (kinesis, implementation):
        _backlog_on(bench, section, kinesis, implementation)


@contextlib.contextmanager
def _backlog_kinesis(bench: Bench) -> Iterator[tuple[Any, str]]:
    """kinesalite when it is installed (`make kinesalite`), for every reader in the section (the engine's
    clients take AWS_ENDPOINT_URL_KINESIS); else the stack's moto."""
    from pipeline.local import kinesalite

    if kinesalite.executable() is None:
        yield bench.kinesis, "moto"
        return
    with kinesalite.running(bench.workdir / "kinesalite.log") as server:
        saved = os.environ.get("AWS_ENDPOINT_URL_KINESIS")
        os.environ["AWS_ENDPOINT_URL_KINESIS"] = server.endpoint
        try:
            yield server.client(), f"kinesalite {kinesalite.VERSION}"
        finally:
            if saved is None:
                os.environ.pop("AWS_ENDPOINT_URL_KINESIS", None)
            else:
                os.environ["AWS_ENDPOINT_URL_KINESIS"] = saved


def _backlog_on(bench: Bench, section: Section, kinesis: Any, implementation: str) -> None:
    from pipeline.generate import put_sensor_records

    records = bench.sizes.stream_records
    on_moto = implementation == "moto"
    if on_moto and records > MOTO_BACKLOG_RECORDS:
        section.notes.append(f"kinesalite is not installed (`make kinesalite`): the backlog is "
                             f"{MOTO_BACKLOG_RECORDS:,} records in moto, not {records:,}, since moto takes about "
                             "1,350 puts a second.")
        records = MOTO_BACKLOG_RECORDS
    stream = bench.name("backlog")
    kinesis.create_stream(StreamName=stream, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    if on_moto:
        bench.on_cleanup(f"Kinesis stream {stream}",
                         lambda: kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True))
    step = max(1, records // 10)

    def progress(landed: int, total: int) -> None:
        if landed % step < 500 or landed == total:
            bench.emit(f"stream: {landed:,} of {total:,} records put into {implementation}")

    started = time.perf_counter()
    # One producer: moto's shards number records without a lock, so concurrent puts lose some.
    landed = put_sensor_records(kinesis, stream, records, seed=SEED, on_progress=progress)
    put_seconds = time.perf_counter() - started
    if landed != records:
        raise BenchError(f"only {landed:,} of {records:,} records landed in {stream}")
    bench.emit(f"stream: put {records:,} records in {put_seconds:.1f} s ({records / put_seconds:,.0f}/s)")

    ours_table = bench.name("stream_ours")
    bare_table = bench.name("stream_bare")
    bench.drop_on_cleanup(bench.redshift_url, SCHEMA, bare_table, ours_table, f"{ours_table}_rejected")
    runs = 0
    batches: list[int] = []

    def ours() -> float:
        from pipeline import config as config_module
        from pipeline.stream import StreamLoad

        nonlocal runs
        runs += 1
        # A fresh pipeline name: its own checkpoints, so each run reads the whole backlog.
        config = config_module.load(bench.sensor_data_config(bench.name(f"stream_{runs}"), stream, ours_table,
                                                             max_records=max(1, records // BATCHES)))
        _truncate_if_exists(bench.redshift_url, ours_table)
        bench.checkpoint(bench.redshift_url)
        started = time.perf_counter()
        summary = StreamLoad(config, emit=lambda _: None).run()
        seconds = time.perf_counter() - started
        batches.append(len([b for b in summary.batches if b.records]))
        if summary.records != records or summary.rows != records:
            raise BenchError(f"StreamLoad read {summary.records:,} records, loaded {summary.rows:,}; "
                             f"expected {records:,}")
        bench.expect_rows(bench.redshift_url, SCHEMA, ours_table, records, "StreamLoad")
        return seconds

    def bare() -> float:
        with psycopg.connect(bench.redshift_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCHEMA, bare_table)))
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(
                sql.Identifier(SCHEMA, bare_table), sql.Identifier(SCHEMA, ours_table)))
        bench.checkpoint(bench.redshift_url)
        started = time.perf_counter()
        read = _bare_loop(bench, kinesis, stream, bare_table)
        seconds = time.perf_counter() - started
        if read != records:
            raise BenchError(f"the bare loop read {read:,} records, expected {records:,}")
        bench.expect_rows(bench.redshift_url, SCHEMA, bare_table, records, "bare loop")
        return seconds

    samples: dict[str, list[float]] = {"ours": [], "bare": []}
    paths: dict[str, Callable[[], float]] = {"ours": ours, "bare": bare}
    for _ in range(min(2, bench.sizes.repeats)):
        for name, path in paths.items():
            samples[name].append(path())
        bench.emit(f"stream: {records:,} records: StreamLoad {samples['ours'][-1]:.2f} s, "
                   f"bare loop {samples['bare'][-1]:.2f} s")
    ours_rate = records / best(samples["ours"])
    bare_rate = records / best(samples["bare"])
    label = (f"StreamLoad.run(), a {records:,}-record backlog over {SHARDS} shards of {implementation}, "
             f"{max(batches)} batches of at most {max(1, records // BATCHES):,}")
    section.add(Figure("stream.backlog.ours", label, ours_rate, "records/s", ratio=ours_rate / bare_rate,
                       compared_with=f"bare GetRecords-to-COPY-FROM-S3 loop, {bare_rate:,.0f} records/s",
                       ratio_meaning="the records/s of the", target=f">= {THROUGHPUT_TARGET}",
                       meets=ours_rate / bare_rate >= THROUGHPUT_TARGET,
                       detail={**timings(samples["ours"]), "records": records, "batches": batches}))
    section.add(Figure("stream.backlog.bare", f"bare GetRecords, json.loads, one staged COPY FROM S3, the same "
                                              f"{records:,} records",
                       bare_rate, "records/s", detail={**timings(samples["bare"]), "records": records}))
    why = ("moto numbers each put by scanning the shard's keys, so a put costs more as the shard grows"
           if on_moto else "kinesalite is one Node.js process on the same two cores")
    section.notes.append(
        f"Putting the backlog into {implementation} took {put_seconds:.0f} s ({records / put_seconds:,.0f} records/s "
        f"from one producer; {why}). {implementation}'s GetRecords bounds both readers; kinesalite reports "
        "MillisBehindLatest 0 on every page, so a full page counts as more to read. StreamLoad commits the "
        f"backlog in batches of at most {max(1, records // BATCHES):,} (the shipped exec.max_records is 100,000), "
        "each with its checkpoints; the bare loop commits once. Both write through the Redshift stand-in, which "
        "has no COPY FROM STDIN: each stages gzip CSV to S3 and COPYs it from there (StreamLoad once per batch, "
        "the bare loop once).")


def _regclass(conn: psycopg.Connection, name: str) -> str | None:
    """to_regclass(name): the relation, or None where there is none (the query always answers one row)."""
    row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    return row[0] if row else None


def _truncate_if_exists(conninfo: str, table: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if _regclass(conn, f"{SCHEMA}.{table}"):
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(SCHEMA, table)))


def _bare_loop(bench: Bench, kinesis: Any, stream: str, table: str) -> int:
    """The least a Python consumer does on Redshift: read each shard to the end, parse, stage the rows to S3
    once as gzip CSV, COPY them from S3, commit once (Redshift has no COPY FROM STDIN)."""
    from pipeline.config import S3StagingConfig
    from pipeline.sources.aws import client
    from pipeline.warehouse import staging
    from pipeline.warehouse.dialects.redshift import Redshift

    s3 = client("s3")
    lines = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                break
            for record in page["Records"]:
                data = json.loads(record["Data"])
                lines.append(f"{data['sensorId']}\t{data['currentTemperature']}\t{data['status']}\t{uuid.uuid4()}\n")
            iterator = page.get("NextShardIterator")
    where = S3StagingConfig(bucket=bench.bucket, prefix=bench.prefix("bare-stream"))
    uri = staging.put(s3, where, f"{uuid.uuid4().hex}.csv.gz", staging.staged_csv(lines))
    try:
        with psycopg.connect(bench.redshift_url) as conn, conn.cursor() as cur:
            cur.execute(Redshift().copy_from_s3(sql.Identifier(SCHEMA, table),
                                                ["sensorid", "currenttemperature", "status", "uuid"], uri,
                                                REDSHIFT_ROLE, staging.STAGED_FORMAT))
            conn.commit()
    finally:
        staging.delete(s3, [uri])
    return len(lines)


# --------------------------------------------------------------------------- latency


def _latency(bench: Bench, section: Section, window: float, key: str) -> None:
    from pipeline import config as config_module
    from pipeline.stream import BatchResult, StreamLoad

    sizes = bench.sizes
    stream = bench.name(key.rsplit(".", 1)[-1])
    table = stream
    create_stream(bench, stream)
    bench.drop_on_cleanup(bench.redshift_url, SCHEMA, table, f"{table}_rejected")
    config = config_module.load(bench.sensor_data_config(table, stream, table,
                                                         extra_columns=({"name": "seq", "type": "long"},),
                                                         window_seconds=window))
    load = StreamLoad(config, emit=lambda _: None)
    stop = threading.Event()
    first_batch = threading.Event()
    failure: list[BaseException] = []
    batch_seconds: list[float] = []  # of the batches that committed records

    def on_batch(result: BatchResult) -> None:
        if result.records:
            batch_seconds.append(result.seconds)
        first_batch.set()

    def follow() -> None:
        try:
            load.follow(stop, on_batch=on_batch)
        except BaseException as error:  # reported by the main thread
            failure.append(error)
            first_batch.set()

    follower = threading.Thread(target=follow, name="bench-follow", daemon=True)
    follower.start()
    try:
        if not first_batch.wait(60) or failure:
            raise BenchError(f"StreamLoad.follow did not start: {failure[0] if failure else 'no batch in 60 s'}")
        put_at, seen = _produce_and_watch(bench, stream, table, sizes.latency_rate, sizes.latency_seconds)
    finally:
        stop.set()
        follower.join(30)
    if failure:
        raise BenchError(f"StreamLoad.follow failed: {failure[0]}")
    latencies = [seen[seq] - put_at[seq] for seq in seen]
    missing = len(put_at) - len(seen)
    if not latencies:
        raise BenchError("no record put during the latency run became visible")
    detail: dict[str, Any] = {"records": len(put_at), "missing": missing, "rate_per_s": sizes.latency_rate,
              "window_seconds": window, "poll_seconds": POLL_SECONDS,
              "p99_seconds": round(percentile(latencies, 0.99), 3), "max_seconds": round(max(latencies), 3),
              "batches": len(batch_seconds),
              "batch_seconds_mean": round(sum(batch_seconds) / len(batch_seconds), 3) if batch_seconds else None}
    label = (f"PutRecords to visible in the table, continuous mode (StreamLoad.follow, window {window:g} s, "
             f"{sizes.latency_rate} records/s)")
    section.add(Figure(f"{key}.p50", f"{label}: p50", percentile(latencies, 0.50), "s", detail=detail))
    p95 = percentile(latencies, 0.95)
    section.add(Figure(f"{key}.p95", f"{label}: p95", p95, "s", detail=detail,
                       target=f"< {CONTINUOUS_TARGET_P95_SECONDS:g} s", meets=p95 < CONTINUOUS_TARGET_P95_SECONDS))
    if batch_seconds and detail["batch_seconds_mean"] > 2 * window:
        section.notes.append(
            f"Continuous mode committed {len(batch_seconds)} batch(es) of {detail['batch_seconds_mean']:.1f} s on "
            f"average against a {window:g} s window: a batch ends only on an empty GetRecords page at the "
            "tip, and records arriving steadily keep the pages non-empty, so latency grows with the length of the "
            "traffic rather than with the window.")
    if missing:
        section.notes.append(f"{missing} of {len(put_at)} latency records were not visible {DRAIN_TIMEOUT_SECONDS:g} s "
                             "after the last put; the percentiles are of those that were.")
    bench.emit(f"stream: latency (window {window:g} s) p50 {percentile(latencies, 0.5):.2f} s, "
               f"p95 {percentile(latencies, 0.95):.2f} s "
               f"over {len(latencies)} records; {len(batch_seconds)} batches of "
               f"{detail['batch_seconds_mean'] or 0:.2f} s on average")


def _produce_and_watch(bench: Bench, stream: str, table: str, rate: int, seconds: float, *,
                       drain_seconds: float = DRAIN_TIMEOUT_SECONDS, poll_seconds: float = POLL_SECONDS
                       ) -> tuple[dict[int, float], dict[int, float]]:
    """Put ``rate`` records a second for ``seconds``; return put and first-visible times by sequence number.

    Watching stops when every record is seen, or ``drain_seconds`` after the last put.
    """
    put_at: dict[int, float] = {}
    seen: dict[int, float] = {}
    done_putting = threading.Event()
    watch_failure: list[BaseException] = []
    total = int(rate * seconds)

    def watch() -> None:
        query = sql.SQL("SELECT seq FROM {} WHERE seq >= %s").format(sql.Identifier(SCHEMA, table))
        low = 0  # every seq below it has been seen
        try:
            with psycopg.connect(bench.redshift_url, autocommit=True) as conn:
                deadline = None
                while len(seen) < total:
                    rows = conn.execute(query, (low,)).fetchall()
                    now = time.monotonic()
                    for (seq,) in rows:
                        seen.setdefault(seq, now)
                    while low in seen:
                        low += 1
                    if done_putting.is_set():
                        deadline = deadline or now + drain_seconds
                        if now > deadline:
                            return
                    time.sleep(poll_seconds)
        except BaseException as error:
            watch_failure.append(error)

    watcher = threading.Thread(target=watch, name="bench-watch", daemon=True)
    watcher.start()
    batch = max(1, rate // 10)  # ten PutRecords a second
    started = time.monotonic()
    try:
        for first in range(0, total, batch):
            due = started + first / rate
            time.sleep(max(0.0, due - time.monotonic()))
            sequence = list(range(first, min(first + batch, total)))
            sent = time.monotonic()
            _put_latency_records(bench, stream, sequence)
            for seq in sequence:
                put_at[seq] = sent
    finally:
        done_putting.set()
        watcher.join(drain_seconds + 10)
    if watch_failure:
        raise BenchError(f"polling {table} failed: {watch_failure[0]}")
    return put_at, {seq: at for seq, at in seen.items() if seq in put_at}


# --------------------------------------------------------------------------- sensor mode


def _sensor_latency(bench: Bench, section: Section) -> None:
    from pipeline.bench.harness import checkout
    from pipeline.local.dagster_process import dagster_command, dagster_process

    sizes = bench.sizes
    name = bench.name("sensor_mode")
    create_stream(bench, name)
    bench.drop_on_cleanup(bench.redshift_url, SCHEMA, name, f"{name}_rejected")
    config_dir = bench.workdir / "sensor-mode"
    bench.sensor_data_config(name, name, name, extra_columns=({"name": "seq", "type": "long"},),
                             directory=config_dir)
    env, dagster_db = _daemon_environment(bench, config_dir)
    log_path = bench.workdir / "dagster-daemon.log"
    args = [dagster_command("dagster-daemon"), "run", "-w", str(checkout() / "workspace.yaml")]
    started = time.monotonic()
    with dagster_process(args, env, log_path) as daemon:
        # One record first: the daemon has started, the sensor ticks and a run lands it before timing starts.
        _put_latency_records(bench, name, [-1])
        while not _visible(bench, name, -1):
            if daemon.poll() is not None:
                raise BenchError(f"the Dagster daemon exited with {daemon.returncode}: "
                                 + log_path.read_text(errors="replace")[-2000:])
            if time.monotonic() - started > SENSOR_READY_SECONDS:
                raise BenchError(f"sensor mode: no record landed {SENSOR_READY_SECONDS:g} s after starting the "
                                 f"Dagster daemon; {_runs_summary(dagster_db)}; see {log_path}")
            time.sleep(1)
        ready_seconds = time.monotonic() - started
        put_at, seen = _produce_and_watch(bench, name, name, sizes.sensor_latency_rate, sizes.sensor_latency_seconds,
                                          drain_seconds=SENSOR_DRAIN_SECONDS, poll_seconds=SENSOR_POLL_SECONDS)
        # A run commits its rows before it ends (checks and events follow): stopping the daemon now would
        # interrupt it.
        deadline = time.monotonic() + SENSOR_DRAIN_SECONDS
        while _runs(dagster_db, active=True) and time.monotonic() < deadline:
            time.sleep(0.5)
    runs = _runs(dagster_db)
    failed = {status: count for status, count in runs.items() if status != "SUCCESS"}
    if failed:
        raise BenchError(f"sensor mode: runs that did not succeed: {failed}: "
                         f"{'; '.join(_failures(dagster_db)) or 'no error recorded'}")
    latencies = [seen[seq] - put_at[seq] for seq in seen]
    missing = len(put_at) - len(seen)
    if not latencies:
        raise BenchError("no record put during the sensor-mode run became visible")
    detail = {"records": len(put_at), "missing": missing, "rate_per_s": sizes.sensor_latency_rate,
              "poll_seconds": SENSOR_POLL_SECONDS, "runs": sum(runs.values()),
              "first_record_seconds": round(ready_seconds, 1),
              "p99_seconds": round(percentile(latencies, 0.99), 3), "max_seconds": round(max(latencies), 3)}
    label = (f"PutRecords to visible in the table, sensor mode (Dagster daemon, sensor every "
             f"{_sensor_interval():g} s, one micro-batch run at a time, {sizes.sensor_latency_rate} records/s)")
    p95 = percentile(latencies, 0.95)
    section.add(Figure("stream.sensor_latency.p50", f"{label}: p50", percentile(latencies, 0.50), "s",
                       detail=detail))
    section.add(Figure("stream.sensor_latency.p95", f"{label}: p95", p95, "s", detail=detail,
                       target=f"< {SENSOR_TARGET_P95_SECONDS:g} s", meets=p95 < SENSOR_TARGET_P95_SECONDS))
    section.notes.append(
        f"Sensor mode ran {detail['runs']} micro-batch runs for {len(put_at):,} records put over "
        f"{sizes.sensor_latency_seconds:g} s. A run stays while records keep arriving (a batch a window, for up to "
        f"{RUN_LINGER_SECONDS:g} s), so most records wait for a window and a commit. Those that arrive as a run "
        "ends wait for the next tick, the queued run's start (a fresh process that loads the code location) and "
        "its first batch: they make the p95. The daemon started and landed a first record in "
        f"{ready_seconds:.0f} s, before timing began.")
    if missing:
        section.notes.append(f"{missing} of {len(put_at)} sensor-mode records were not visible "
                             f"{SENSOR_DRAIN_SECONDS:g} s after the last put; the percentiles are of those that were.")
    bench.emit(f"stream: sensor-mode latency p50 {percentile(latencies, 0.5):.1f} s, p95 {p95:.1f} s over "
               f"{len(latencies)} records and {detail['runs']} runs")


def _sensor_interval() -> float:
    from pipeline.orchestration.sensors import tick_every
    from pipeline.orchestration.streams import MINIMUM_INTERVAL_SECONDS

    return tick_every(MINIMUM_INTERVAL_SECONDS)


def _daemon_environment(bench: Bench, config_dir, what: str = "dagster") -> tuple[dict[str, str], str]:
    """The stack's environment for a Dagster instance of the bench's own: the repository's dagster.yaml on a
    fresh database, and a code location that holds only the bench's pipeline, its sensor running; and the
    conninfo of that database."""
    import shutil

    from psycopg import conninfo

    from pipeline.bench.harness import checkout

    database = bench.name(what)  # one per daemon the run starts (the events and stream sections each start one)
    params = conninfo.conninfo_to_dict(bench.redshift_url)
    with psycopg.connect(bench.redshift_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))

    def drop() -> None:
        with psycopg.connect(bench.redshift_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))

    bench.on_cleanup(f"database {database}", drop)
    home = bench.workdir / f"{what}-home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkout() / "dagster.yaml", home / "dagster.yaml")
    # The Dagster database sits beside the Redshift stand-in's, on the same server.
    server = {f"DAGSTER_PG_{name.upper()}": str(params.get(name) or default)
              for name, default in (("host", "127.0.0.1"), ("port", 5432), ("user", ""), ("password", ""))}
    env = {**bench.subprocess_env(), **server,
           "DAGSTER_HOME": str(home), "DAGSTER_COMPUTE_LOGS_DIR": str(home / "compute_logs"),
           "DAGSTER_PG_DB": database, "PIPELINE_CONFIG_DIR": str(config_dir),
           # The sensors run by default on the local stack, as for a user of `pipeline local up`.
           "PIPELINE_LOCAL_DIR": bench.env.get("PIPELINE_LOCAL_DIR") or str(bench.workdir)}
    return env, conninfo.make_conninfo(bench.redshift_url, dbname=database)


_ACTIVE_RUN_STATUSES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]


def _runs(dagster_db: str, *, active: bool = False) -> dict[str, int]:
    """Run status -> count (of active runs only, if asked), from the bench's Dagster database."""
    with psycopg.connect(dagster_db, autocommit=True) as conn:
        if _regclass(conn, "runs") is None:
            return {}
        statuses = _ACTIVE_RUN_STATUSES if active else None
        return dict(conn.execute("SELECT status, count(*) FROM runs WHERE %(s)s::text[] IS NULL OR status = ANY(%(s)s) "
                                 "GROUP BY status", {"s": statuses}).fetchall())


def _failures(dagster_db: str, limit: int = 3) -> list[str]:
    """The errors of failed steps and runs, from the bench's Dagster event log."""
    with psycopg.connect(dagster_db, autocommit=True) as conn:
        rows = conn.execute("SELECT event FROM event_logs WHERE dagster_event_type IN ('STEP_FAILURE', 'RUN_FAILURE') "
                            "ORDER BY id LIMIT %s", (limit,)).fetchall()
    messages = []
    for (event,) in rows:
        entry = json.loads(event)
        data = (entry.get("dagster_event") or {}).get("event_specific_data") or {}
        error = data.get("error") or {}
        messages.append(str(error.get("message") or entry.get("user_message") or "").strip())
    return messages


def _runs_summary(dagster_db: str) -> str:
    runs = _runs(dagster_db)
    return "runs: " + (", ".join(f"{count} {status}" for status, count in sorted(runs.items())) or "none")


def _put_latency_records(bench: Bench, stream: str, sequence: list[int]) -> None:
    entries = [{"Data": json.dumps({"sensorId": seq % 101, "currentTemperature": 10 + seq % 141, "status": "OK",
                                    "seq": seq}).encode(), "PartitionKey": str(seq)} for seq in sequence]
    response = bench.kinesis.put_records(StreamName=stream, Records=entries)
    if response.get("FailedRecordCount"):
        raise BenchError(f"{response['FailedRecordCount']} latency records were refused by {stream}")


def _visible(bench: Bench, table: str, seq: int) -> bool:
    with psycopg.connect(bench.redshift_url, autocommit=True) as conn:
        if _regclass(conn, f"{SCHEMA}.{table}") is None:
            return False
        query = sql.SQL("SELECT 1 FROM {} WHERE seq = %s").format(sql.Identifier(SCHEMA, table))
        return conn.execute(query, (seq,)).fetchone() is not None
