"""What the sensors read from Dagster's run history: why a run failed, and which failed loads to run again.

A failed run is tried again by the sensor that launched it, at most ``exec.retries`` times, waiting
``exec.retry_wait`` after the first failure and twice as long after each next one (at most an hour).
Each attempt has a run key of its own, derived from the one before, so two ticks never launch the
same attempt twice, and the ledger makes a retry of an object that did load meanwhile a no-op.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from pipeline.config import ExecConfig

RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
PARTITION_TAG = "dagster/partition"
ETAG_TAG = "pipeline/etag"
ATTEMPT_TAG = "pipeline/attempt"
# The sensor retries the runs it launched (exec.retries, with a doubling wait); dagster.yaml's run_retries,
# for runs launched otherwise (automation conditions, the UI), must not retry those a second time.
NO_RUN_RETRIES = {"dagster/max_retries": "0"}
# Failed runs older than every wait plus this are no longer looked at.
HORIZON_AFTER_LAST_WAIT = timedelta(days=1)
MAX_FAILED_RUNS_PER_TICK = 500


def failure_text(instance: dg.DagsterInstance, run: Any) -> str:
    """Why ``run`` failed, in the engine's words (the step's Failure description), shortened."""
    events = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1).records
    for record in events:
        event = record.event_log_entry.dagster_event
        data = event.step_failure_data if event is not None else None
        if data is not None:
            user = data.user_failure_data
            text = (user.description if user is not None and user.description else
                    data.error.message if data.error is not None else "")
            return f"run {run.run_id[:8]}: {text.strip()[:500]}"
    return f"run {run.run_id[:8]} {run.status.value.lower()}"


def object_run_key(key: str, etag: str, attempt: int = 1) -> str:
    """``<key>:<ETag>`` for an object version's first run, ``...:retry-<n>`` for its n-th retry."""
    return f"{key}:{etag}" + (f":retry-{attempt - 1}" if attempt > 1 else "")


def object_tags(etag: str, attempt: int = 1) -> dict[str, str]:
    return {ETAG_TAG: etag, ATTEMPT_TAG: str(attempt), **NO_RUN_RETRIES}


@dataclass
class Retries:
    """What one tick decided about the failed object loads of one sensor."""

    requests: list[dg.RunRequest] = field(default_factory=list)
    waiting: list[tuple[str, float]] = field(default_factory=list)  # key, when its retry is due (epoch seconds)
    given_up: list[tuple[str, int, str]] = field(default_factory=list)  # key, attempts, why the last one failed

    def describe(self, uri: Callable[[str], str], retries: int) -> str:
        """A clause for the tick's message (``uri(key)`` names an object); empty when there is nothing to say."""
        parts = []
        if self.requests:
            parts.append(f"{len(self.requests)} failed object(s) run again: "
                         + ", ".join(f"{uri(r.partition_key or '')} (attempt {r.tags[ATTEMPT_TAG]})"
                                     for r in self.requests[:3]))
        if self.waiting:
            key, due = min(self.waiting, key=lambda item: item[1])
            parts.append(f"{len(self.waiting)} failed object(s) wait for a retry, the next {uri(key)} "
                         f"at {datetime.fromtimestamp(due, UTC).isoformat(timespec='seconds')}")
        if self.given_up:
            key, attempts, why = self.given_up[0]
            parts.append(f"{len(self.given_up)} object(s) failed {attempts} times and are not retried again "
                         f"(exec.retries {retries}), {uri(key)}: {why}; fix it, then materialize the "
                         "partition or run `pipeline run`")
        return "; ".join(parts)


def object_retries(instance: dg.DagsterInstance, *, sensor_name: str, job_name: str, execution: ExecConfig,
                   tags: Mapping[str, str], loaded: Callable[[list[str]], Mapping[str, set[str]]] | None = None,
                   now: float | None = None) -> Retries:
    """The retries due now of object loads that ``sensor_name`` launched and that failed."""
    now = time.time() if now is None else now
    waits = sum(execution.wait_before_retry(n) for n in range(1, execution.retries + 1))
    since = datetime.fromtimestamp(now, UTC) - timedelta(seconds=waits) - HORIZON_AFTER_LAST_WAIT
    failed = instance.get_run_records(filters=dg.RunsFilter(
        job_name=job_name, statuses=[dg.DagsterRunStatus.FAILURE], tags={SENSOR_NAME_TAG: sensor_name},
        updated_after=since), limit=MAX_FAILED_RUNS_PER_TICK)
    latest: dict[tuple[str, str], tuple[int, Any]] = {}
    for record in failed:
        version = _object_version(record.dagster_run.tags)
        if version is None:
            continue
        attempt = int(record.dagster_run.tags.get(ATTEMPT_TAG, "1"))
        if version not in latest or latest[version][0] < attempt:
            latest[version] = (attempt, record)
    result = Retries()
    due: list[tuple[str, str, int]] = []
    for (key, etag), (attempt, record) in sorted(latest.items()):
        if attempt > execution.retries:
            # The tick names the first object that gave up, with why: one event-log read, however many gave up.
            why = "" if result.given_up else failure_text(instance, record.dagster_run)
            result.given_up.append((key, attempt, why))
            continue
        if _launched(instance, sensor_name, object_run_key(key, etag, attempt + 1)):
            continue  # the next attempt exists: running, done, or (if it failed) the latest of its chain
        ready = (record.end_time or now) + execution.wait_before_retry(attempt)
        if now < ready:
            result.waiting.append((key, ready))
        else:
            due.append((key, etag, attempt + 1))
    done = loaded(sorted({key for key, _, _ in due})) if due and loaded is not None else {}
    result.requests = [
        dg.RunRequest(run_key=object_run_key(key, etag, attempt), partition_key=key,
                      tags={**tags, **object_tags(etag, attempt)})
        for key, etag, attempt in due if etag not in done.get(key, ())]
    return result


def _object_version(tags: Mapping[str, str]) -> tuple[str, str] | None:
    key = tags.get(PARTITION_TAG)
    if key is None:
        return None
    etag = tags.get(ETAG_TAG)
    if etag is None:  # launched before runs carried their ETag: the run key is "<key>:<ETag>"
        run_key = tags.get(RUN_KEY_TAG, "")
        if not run_key.startswith(f"{key}:"):
            return None
        etag = run_key[len(key) + 1:]
    return key, etag


def _launched(instance: dg.DagsterInstance, sensor_name: str, run_key: str) -> bool:
    return bool(instance.get_run_records(
        filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key, SENSOR_NAME_TAG: sensor_name}), limit=1))

