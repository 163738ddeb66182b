"""Event-driven S3: PutObject to rows visible in the table, with the bucket's notifications and without.

A bucket of the bench's own notifies a queue of its own of every object created (moto delivers the
event to its SQS as S3 would). Each object holds one row with an id of its own; a separate connection
polls the table and notes when each id becomes visible. Latency runs from the PutObject call to that
poll.

- ``--follow``: ``ObjectFollow`` (what ``pipeline run --follow`` runs), SQS long polling.
- Dagster: the daemon as a user runs it (``dagster-daemon run`` on the repository's workspace and
  ``dagster.yaml``), with three pipelines over the same bucket: one with ``in.notifications`` (its
  sensor drains the queue every few seconds and requests a run per object), the same in continuous
  mode (``exec.mode: continuous``: the sensor keeps one run following the queue), and one without
  notifications (its sensor lists after the last key it saw, every 30 s): the polling sensor, next
  to them. Each notified pipeline has a queue of its own.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from pipeline.bench.harness import Bench, BenchError
from pipeline.bench.results import Figure, Section, percentile

TARGET_P95_SECONDS = 3.0
FOLLOW_PUT_INTERVAL_SECONDS = 0.5
# In sensor mode each object is a run of its own (a process that loads the code location): one object per
# pipeline this often keeps two cores from queueing runs behind each other.
SENSOR_PUT_INTERVAL_SECONDS = 10.0
CONTINUOUS_PUT_INTERVAL_SECONDS = 1.0
POLL_SECONDS = 0.05
DRAIN_SECONDS = 120.0  # after the last put: a polling tick (30 s), a queued run's start and its load
READY_SECONDS = 300.0
HEADER = b"order_id,user_id,book_id,book_name,order_cnt,order_amt\n"


def measure(bench: Bench, section: Section) -> None:
    bench.forget_state_on_cleanup(bench.hologres_url, "public")
    # A queue for each pipeline (the bucket notifies each of the objects under its prefix): two consumers of
    # one queue would take each other's messages.
    bucket, queues = _notified_bucket(bench, ["follow", "notified", "continuous"])
    _follow(bench, section, bucket, queues["follow"])
    _sensors(bench, section, bucket, queues)


def _notified_bucket(bench: Bench, prefixes: list[str]) -> tuple[str, dict[str, str]]:
    from pipeline.sources.aws import client

    s3, sqs = bench.s3, client("sqs")
    bucket = f"pipeline-bench-{bench.run_id}-events".replace("_", "-")
    region = bench.env.get("AWS_DEFAULT_REGION") or "us-east-1"
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    s3.create_bucket(Bucket=bucket, **location)
    bench.on_cleanup(f"bucket {bucket}", lambda: (bench.delete_prefix("", bucket), s3.delete_bucket(Bucket=bucket)))
    queues, configurations = {}, []
    for prefix in prefixes:
        queue = f"{bucket}-{prefix}"
        url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        bench.on_cleanup(f"SQS queue {queue}", functools.partial(sqs.delete_queue, QueueUrl=url))
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        configurations.append({"QueueArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {
            "Key": {"FilterRules": [{"Name": "prefix", "Value": f"{prefix}/"}]}}})
        queues[prefix] = queue
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": configurations})
    return bucket, queues


def _config(bench: Bench, what: str, bucket: str, directory: Any, queue: str | None,
            mode: str | None = None) -> tuple[str, Any]:
    import yaml

    name = bench.name(what)
    bench.drop_on_cleanup(bench.hologres_url, "public", name, f"{name}_rejected")
    path = bench.book_order_config(name, f"{what}/", name, bucket=bucket, directory=directory,
                                   notifications={"queue": queue, "sweep_interval": "1h"} if queue else None)
    if mode is not None:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        document.setdefault("exec", {})["mode"] = mode
        path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return name, path


def _put(bench: Bench, bucket: str, prefix: str, order_id: str) -> float:
    """Put one one-row object; the time the call started."""
    started = time.monotonic()
    bench.s3.put_object(Bucket=bucket, Key=f"{prefix}{order_id}.csv",
                        Body=HEADER + f"{order_id},1,6,latency,1,100\n".encode())
    return started


class Watcher:
    """Polls tables on a connection of its own and notes when each id first appears."""

    def __init__(self, conninfo: str, tables: list[str]):
        self.conninfo = conninfo
        self.tables = tables
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._watch, name="bench-events-watch", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                while not self.stop.is_set():
                    for table in self.tables:
                        exists = conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()
                        if exists is None or exists[0] is None:
                            continue
                        rows = conn.execute(sql.SQL("SELECT order_id FROM {}").format(
                            sql.Identifier("public", table))).fetchall()
                        now = time.monotonic()
                        for (order_id,) in rows:
                            self.seen.setdefault(order_id, now)
                    self.stop.wait(POLL_SECONDS)
        except BaseException as error:  # reported by close()
            self.error = error

    def wait_for(self, ids: list[str], timeout: float, alive: Callable[[], str | None] = lambda: None) -> None:
        deadline = time.monotonic() + timeout
        while not all(i in self.seen for i in ids) and time.monotonic() < deadline:
            problem = alive()
            if problem:
                raise BenchError(problem)
            if self.error is not None:
                raise BenchError(f"watching the tables failed: {self.error}")
            time.sleep(POLL_SECONDS)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def _add(section: Section, key: str, label: str, put_at: dict[str, float], seen: dict[str, float],
         detail: dict[str, Any], *, target: bool) -> float:
    latencies = [seen[i] - put_at[i] for i in put_at if i in seen]
    if not latencies:
        raise BenchError(f"{label}: no object became visible")
    missing = len(put_at) - len(latencies)
    detail = {**detail, "objects": len(put_at), "missing": missing, "max_seconds": round(max(latencies), 3)}
    p95 = percentile(latencies, 0.95)
    section.add(Figure(f"{key}.p50", f"{label}: p50", percentile(latencies, 0.5), "s", detail=detail))
    section.add(Figure(f"{key}.p95", f"{label}: p95", p95, "s", detail=detail,
                       target=f"< {TARGET_P95_SECONDS:g} s" if target else None,
                       meets=p95 < TARGET_P95_SECONDS if target else None))
    if missing:
        section.notes.append(f"{label}: {missing} of {len(put_at)} objects were not visible {DRAIN_SECONDS:g} s "
                             "after the last put; the percentiles are of those that were.")
    return p95


# --------------------------------------------------------------------------- pipeline run --follow


def _follow(bench: Bench, section: Section, bucket: str, queue: str) -> None:
    from pipeline import config as config_module
    from pipeline.follow import ObjectFollow

    name, path = _config(bench, "follow", bucket, None, queue)
    lines: list[str] = []
    runs: list[Any] = []
    follower = ObjectFollow(config_module.load(path), emit=lines.append, on_run=runs.append)
    stop = threading.Event()
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            follower.follow(stop)
        except BaseException as error:  # reported below
            failed.append(error)

    thread = threading.Thread(target=follow, name="bench-follow-s3", daemon=True)
    thread.start()
    watcher = Watcher(bench.hologres_url, [name])
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not runs:  # the start-up sweep: the table exists, the queue answers
            if failed or time.monotonic() > deadline:
                raise BenchError(f"--follow did not start: {failed[0] if failed else 'no sweep'}; {lines[-3:]}")
            time.sleep(POLL_SECONDS)
        count = max(4, int(bench.sizes.latency_seconds / FOLLOW_PUT_INTERVAL_SECONDS))
        put_at: dict[str, float] = {}
        for i in range(count):
            order_id = f"follow-{i:05d}"
            put_at[order_id] = _put(bench, bucket, "follow/", order_id)
            time.sleep(FOLLOW_PUT_INTERVAL_SECONDS)
        watcher.wait_for(list(put_at), DRAIN_SECONDS,
                         lambda: f"--follow stopped: {failed[0]}" if failed else None)
    finally:
        watcher.close()
        stop.set()
        thread.join(60)
    label = (f"PutObject to visible in the table, `pipeline run --follow` (SQS long polling, one object every "
             f"{FOLLOW_PUT_INTERVAL_SECONDS:g} s)")
    p95 = _add(section, "events.follow", label, put_at, watcher.seen, {"runs": len(runs)}, target=True)
    bench.emit(f"events: --follow p95 {p95:.2f} s over {len(put_at)} objects")


# --------------------------------------------------------------------------- Dagster daemon


def _sensors(bench: Bench, section: Section, bucket: str, queues: dict[str, str]) -> None:
    from pipeline.bench.harness import checkout
    from pipeline.bench.stream import _daemon_environment, _runs, _runs_summary
    from pipeline.local.dagster_process import dagster_command, dagster_process
    from pipeline.orchestration.sensors import MINIMUM_INTERVAL_SECONDS, NOTIFIED_INTERVAL_SECONDS, tick_every

    directory = bench.workdir / "events-sensors"
    notified, _ = _config(bench, "notified", bucket, directory, queues["notified"])
    continuous, _ = _config(bench, "continuous", bucket, directory, queues["continuous"], mode="continuous")
    polled, _ = _config(bench, "polled", bucket, directory, None)
    env, dagster_db = _daemon_environment(bench, directory, "dagster_events")
    log_path = bench.workdir / "dagster-daemon-events.log"
    args = [dagster_command("dagster-daemon"), "run", "-w", str(checkout() / "workspace.yaml")]
    watcher = Watcher(bench.hologres_url, [notified, continuous, polled])
    started = time.monotonic()
    put_at: dict[str, dict[str, float]] = {"notified": {}, "continuous": {}, "polled": {}}
    with dagster_process(args, env, log_path) as daemon:
        def alive() -> str | None:
            if daemon.poll() is not None:
                return f"the Dagster daemon exited with {daemon.returncode}: see {log_path}"
            return None

        try:
            # One object each first: the daemon has started, each sensor ticks and a run lands it.
            # (Ids sort in put order: the polling sensor lists only keys after the last one it saw.)
            first = {what: f"{what}-{0:05d}" for what in put_at}
            for what, order_id in first.items():
                _put(bench, bucket, f"{what}/", order_id)
            watcher.wait_for(list(first.values()), READY_SECONDS, alive)
            if not all(i in watcher.seen for i in first.values()):
                raise BenchError(f"sensor mode: no object landed {READY_SECONDS:g} s after starting the Dagster "
                                 f"daemon; {_runs_summary(dagster_db)}; see {log_path}")
            ready = time.monotonic() - started
            count = max(2, int(bench.sizes.sensor_latency_seconds / SENSOR_PUT_INTERVAL_SECONDS))
            every = int(SENSOR_PUT_INTERVAL_SECONDS / CONTINUOUS_PUT_INTERVAL_SECONDS)
            for i in range(1, count + 1):
                for what in ("notified", "polled"):
                    put_at[what][f"{what}-{i:05d}"] = _put(bench, bucket, f"{what}/", f"{what}-{i:05d}")
                for j in range(every):  # the continuous run costs no process per object: one a second
                    order_id = f"continuous-{i:05d}-{j:02d}"
                    put_at["continuous"][order_id] = _put(bench, bucket, "continuous/", order_id)
                    time.sleep(CONTINUOUS_PUT_INTERVAL_SECONDS)
            watcher.wait_for([i for ids in put_at.values() for i in ids], DRAIN_SECONDS, alive)
            _terminate(env, f"{continuous}_continuous")
            deadline = time.monotonic() + DRAIN_SECONDS
            while _active_runs(dagster_db) and time.monotonic() < deadline:
                time.sleep(0.5)  # the runs end (checks, events) before the daemon stops
        finally:
            watcher.close()
    runs = _runs(dagster_db)
    if runs.get("FAILURE"):
        raise BenchError(f"sensor mode (S3): {runs['FAILURE']} run(s) failed; see {log_path}")
    detail = {"runs": sum(runs.values()), "first_object_seconds": round(ready, 1)}
    stages = _stages(dagster_db, f"{notified}_load", put_at["notified"], watcher.seen)
    notified_every, polled_every = tick_every(NOTIFIED_INTERVAL_SECONDS), tick_every(MINIMUM_INTERVAL_SECONDS)
    notified_p95 = _add(section, "events.sensor", f"PutObject to visible in the table, the sensor with "
                        f"in.notifications (Dagster daemon, a tick every {notified_every:g} s, a run per object)",
                        put_at["notified"], watcher.seen, {**detail, "stages": stages}, target=True)
    continuous_p95 = _add(section, "events.continuous", "the same, in continuous mode (exec.mode: continuous: the "
                          f"sensor keeps one run following the queue, one object every "
                          f"{CONTINUOUS_PUT_INTERVAL_SECONDS:g} s)", put_at["continuous"], watcher.seen, detail,
                          target=True)
    polled_p95 = _add(section, "events.polling", f"the same, the polling sensor (ListObjectsV2 after the last key, "
                      f"a tick every {polled_every:g} s)", put_at["polled"], watcher.seen, detail,
                      target=False)
    section.notes.append(
        f"Sensor mode: one object for each pipeline every {SENSOR_PUT_INTERVAL_SECONDS:g} s. Each object is a run of "
        "its own, started as a fresh process that loads the code location, after the sensor's tick and the run "
        f"queue's dequeue (every second). The daemon started and landed a first object in {ready:.0f} s, before "
        "timing began.")
    if stages:
        slowest = stages.get("slowest", {})
        section.notes.append(
            "Where a run per object spends its time (p50 / p95, s): " + "; ".join(
                f"{name} {span['p50']:g} / {span['p95']:g}" for name, span in stages.items() if name != "slowest")
            + (" (the slowest object: " + ", ".join(f"{name} {span:g}" for name, span in slowest.items()) + ")"
               if slowest else "")
            + " (sensor: put to the run enqueued; queue: to its launch, which waits for a free run slot of the "
              "warehouse; process: a fresh process starting Dagster and the instance; code: loading the code "
              "location and planning the run; load: to visible in the table).")
    bench.emit(f"events: sensor with notifications p95 {notified_p95:.1f} s, continuous mode p95 "
               f"{continuous_p95:.2f} s, polling sensor p95 {polled_p95:.1f} s")


# The events that mark each stage of a sensor-requested run, in order, as Dagster's event log names them
# (DagsterEventType.RUN_ENQUEUED, RUN_STARTING, the run worker's "Started process for run" engine event, and
# RUN_START).
_STAGE_EVENTS = ("PIPELINE_ENQUEUED", "PIPELINE_STARTING", "ENGINE_EVENT", "PIPELINE_START")
_PROCESS_STARTED = "Started process for run"
_STAGES = ("sensor", "queue", "process", "code", "load")


def _stages(dagster_db: str, job_name: str, put_at: dict[str, float], seen: dict[str, float]
            ) -> dict[str, dict[str, float]]:
    """Where the time of each object's run went: stage -> {p50, p95} in seconds, and ``slowest``: the stages
    of the object that took longest.

    ``put_at`` and ``seen`` are monotonic; Dagster's event log is in UTC wall time, so both are moved onto
    the wall clock with one offset. Stages: the sensor (put to the run enqueued), the queue (to the launch),
    the process (a fresh process: the interpreter, Dagster and the instance, to the worker's first event),
    the code (loading the code location and planning the run, to the run's start), the load (to visible).
    """
    from datetime import UTC

    offset = time.time() - time.monotonic()
    with psycopg.connect(dagster_db, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT r.partition, e.dagster_event_type, min(e.timestamp) FROM runs r "
            "JOIN event_logs e ON e.run_id = r.run_id WHERE r.pipeline_name = %s AND e.dagster_event_type = ANY(%s) "
            "AND (e.dagster_event_type <> 'ENGINE_EVENT' OR e.event LIKE %s) "
            "GROUP BY r.partition, e.dagster_event_type",
            (job_name, list(_STAGE_EVENTS), f"%{_PROCESS_STARTED}%")).fetchall()
    marks: dict[str, dict[str, float]] = {}
    for partition, kind, at in rows:
        order_id = str(partition).rsplit("/", 1)[-1].removesuffix(".csv")
        marks.setdefault(order_id, {})[kind] = at.replace(tzinfo=UTC).timestamp()
    spans: dict[str, list[float]] = {name: [] for name in _STAGES}
    slowest: tuple[float, dict[str, float]] = (0.0, {})
    for order_id, put in put_at.items():
        mark = marks.get(order_id, {})
        if order_id not in seen or any(kind not in mark for kind in _STAGE_EVENTS):
            continue
        points = [put + offset, *(mark[kind] for kind in _STAGE_EVENTS), seen[order_id] + offset]
        these = {name: end - start for name, start, end in zip(_STAGES, points[:-1], points[1:], strict=True)}
        for name, span in these.items():
            spans[name].append(span)
        slowest = max(slowest, (points[-1] - points[0], these), key=lambda pair: pair[0])
    result = {name: {"p50": round(percentile(values, 0.5), 2), "p95": round(percentile(values, 0.95), 2)}
              for name, values in spans.items() if values}
    if slowest[1]:
        result["slowest"] = {name: round(span, 2) for name, span in slowest[1].items()}
    return result


def _terminate(env: dict[str, str], job_name: str) -> None:
    """Ask the continuous run to stop, as the UI's Terminate does first (it stops within a poll)."""
    import dagster as dg

    from pipeline.bench.harness import environment

    # The instance's dagster.yaml reads its database from the environment.
    with environment(env), dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        for run in instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=[
                dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.QUEUED])):
            instance.report_run_canceling(run)


def _active_runs(dagster_db: str) -> int:
    """Runs not yet ended, but for continuous ones (the sensor starts another when one ends)."""
    with psycopg.connect(dagster_db, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM runs WHERE status = ANY(%s) AND pipeline_name NOT LIKE %s",
                           (["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"], "%\\_continuous")
                           ).fetchone()
    return int(row[0]) if row else 0
