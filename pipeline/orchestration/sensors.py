"""The sensor of an S3 pipeline: one run per new object version, at a cost in proportion to what is new.

Its JSON cursor holds two keys at most, never a list of what exists:

- ``last_key`` (Embulk's ``last_path``): every key up to it has been seen. Each tick lists from
  there with ListObjectsV2 ``StartAfter``, at most ``max_keys`` keys (one page), and the next tick
  continues where this one stopped. This finds new keys that sort after the ones already seen, the
  usual case for time-stamped names.
- ``sweep_after`` (only with ``in.incremental: false``): a sweep through the keys up to
  ``last_key``, one page per tick, starting again at the top once it is through. Each swept page
  is compared with the ledger (one indexed query), so an object re-uploaded with a new ETag, or one
  whose name sorts before ``last_key``, gets a run too. The ledger is the compact record: the
  cursor stays a few hundred bytes whether the prefix holds a hundred objects or a million.

With ``in.notifications`` (the SQS queue the bucket notifies), each tick first drains the queue
(``drain``): an announced object version the ledger lacks gets its run request, and a message is
deleted only once the ledger holds what it announced, so a message whose run is still to commit
comes back after its visibility timeout and is looked at again. The sensor then ticks every
``NOTIFIED_INTERVAL_SECONDS``, and lists (as above) only every ``in.notifications.sweep_interval``,
for notifications that were lost: ``listed_at`` in the cursor says when it last did. A tick that
finds nothing to request listens to the queue (SQS long polling) for the rest of ``LISTEN_SECONDS``
and returns the moment a message comes, so an object announced between the daemon's loops gets its
run request at once rather than at the next loop (``listens``: with ``sensors.use_threads`` only).

Every run request has ``run_key = "<key>:<ETag>"``, so Dagster launches each object version at
most once however often it is seen, and a re-uploaded object (new ETag) runs again. A run that
failed is run again under a key of its own (``...:retry-<n>``), at most ``exec.retries`` times
with a doubling wait (``pipeline.orchestration.runs``); an object that loaded meanwhile is not.
"""


import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from pipeline import registry
from pipeline.config import S3InputConfig
from pipeline.errors import PipelineError, SourceError
from pipeline.inspect import CheckResult
from pipeline.orchestration import check_jobs, runs
from pipeline.orchestration.pipelines import Pipeline
from pipeline.warehouse import state

MAX_KEYS_PER_TICK = 1000  # one ListObjectsV2 page: a backlog is worked off a page per tick
SWEEP_KEYS_PER_TICK = 1000
MINIMUM_INTERVAL_SECONDS = 30
# With in.notifications: a tick drains the queue, a listing is a sweep now and then. The daemon evaluates
# sensors in a loop of 5 s at the shortest; an interval of 5 s would skip every other loop (a tick lands a
# hair under 5 s after the last), so 1 s: a tick every loop.
NOTIFIED_INTERVAL_SECONDS = 1
DAEMON_LOOP_SECONDS = 5.0  # the sensor daemon's shortest loop (Dagster's MIN_INTERVAL_LOOP_TIME)
# A notified tick that finds nothing to request waits on the queue (SQS long polling) until LISTEN_SECONDS after
# it began, and requests the run the moment a message comes, so an object need not wait out the 5-s loop. Only
# when the daemon gives each sensor a thread of its own (dagster.yaml sensors.use_threads: a tick evaluated in
# turn would hold up every other sensor), and for at most LISTENERS ticks of a code server at once, so that
# listening never takes all of its request threads. A second under the loop, so the next tick is not skipped.
LISTEN_SECONDS = 4.0
LISTENERS = 2
_listeners = threading.BoundedSemaphore(LISTENERS)
MAX_MESSAGES_PER_TICK = 1000
CURSOR_VERSION = 1
# Dagster refuses these in partition keys; such objects are reported and passed over.
_INVALID_IN_PARTITION_KEYS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")

log = logging.getLogger(__name__)


def tick_every(minimum_interval: float) -> float:
    """How often the daemon ticks a sensor of this ``minimum_interval_seconds``, at the most."""
    return max(float(minimum_interval), DAEMON_LOOP_SECONDS)


def default_status() -> dg.DefaultSensorStatus:
    """Running on the local stack (``pipeline local`` sets PIPELINE_LOCAL_DIR), stopped elsewhere."""
    return dg.DefaultSensorStatus.RUNNING if os.environ.get("PIPELINE_LOCAL_DIR") else dg.DefaultSensorStatus.STOPPED


@dataclass
class Cursor:
    """What a sensor remembers between ticks."""

    last_key: str | None = None  # every key up to here has been seen
    sweep_after: str | None = None  # the sweep's position; None: the next sweep starts at the top
    sweeps: int = 0  # sweeps completed
    listed_at: float | None = None  # with in.notifications: when the prefix was last listed (seconds, epoch)

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(last_key=data.get("last_key"), sweep_after=data.get("sweep_after"), sweeps=data.get("sweeps", 0),
                   listed_at=data.get("listed_at"))

    def to_json(self) -> str:
        return json.dumps({"v": CURSOR_VERSION, **asdict(self)}, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Scan:
    """What one tick found."""

    cursor: Cursor
    new: list[Any] = field(default_factory=list)  # S3Objects after the cursor's last_key
    changed: list[Any] = field(default_factory=list)  # swept S3Objects whose ETag the ledger lacks
    unusable: list[str] = field(default_factory=list)  # keys Dagster cannot take as partition keys
    listed: int = 0  # keys listed, matching or not
    swept: int = 0

    @property
    def to_run(self) -> list[Any]:
        return self.new + self.changed


LoadedEtags = Callable[[Sequence[str]], Mapping[str, set[str]]]


def scan(client: Any, source: S3InputConfig, cursor: Cursor, *, max_keys: int = MAX_KEYS_PER_TICK,
         sweep_keys: int = SWEEP_KEYS_PER_TICK, loaded_etags: LoadedEtags | None = None,
         warn: Callable[[str], None] = log.warning) -> Scan:
    """List what is new after ``cursor`` and, when ``loaded_etags`` is given, sweep one page."""
    from pipeline.sources.s3 import acceptor, list_objects, start_after

    matcher = re.compile(source.path_match_pattern) if source.path_match_pattern else None
    accept = acceptor(source, warn)

    def wanted(obj: Any) -> bool:
        return (matcher is None or matcher.search(obj.key) is not None) and accept(obj)

    # No pattern in the listing: the cursor must move past keys that do not match, too.
    listed = list(list_objects(client, source.bucket, source.path_prefix,
                               start_after=start_after(source, cursor.last_key), limit=max_keys))
    result = Scan(cursor=Cursor(last_key=listed[-1].key if listed else cursor.last_key,
                                sweep_after=cursor.sweep_after, sweeps=cursor.sweeps),
                  listed=len(listed))
    result.new = [obj for obj in listed if wanted(obj)]

    if loaded_etags is not None and cursor.last_key is not None:
        page = list(list_objects(client, source.bucket, source.path_prefix,
                                 start_after=start_after(source, cursor.sweep_after), limit=sweep_keys))
        # Keys after the old last_key are this tick's new ones: the sweep stops at the boundary.
        in_range = [obj for obj in page if obj.key <= cursor.last_key]
        # A short page means the listing ran out; either way the sweep starts again at the top.
        _sweep(result, [obj for obj in in_range if wanted(obj)], loaded_etags, warn, swept=len(in_range),
               finished=len(page) < sweep_keys or len(in_range) < len(page),
               resume_after=page[-1].key if page else None)
    return _partition_keys_only(result)


def _sweep(result: Scan, candidates: list[Any], loaded_etags: LoadedEtags, warn: Callable[[str], None], *,
           swept: int, finished: bool, resume_after: str | None) -> None:
    """``result.changed``: the ``candidates`` whose ETag the ledger lacks; the sweep's cursor moves on (to the
    top once ``finished``). A ledger that cannot be read skips the sweep this tick."""
    try:
        loaded = loaded_etags([obj.key for obj in candidates]) if candidates else {}
    except (PipelineError, psycopg.Error) as error:
        warn(f"sweep skipped this tick, the ledger could not be read: {error}")
        return
    result.changed = [obj for obj in candidates if obj.etag not in loaded.get(obj.key, ())]
    result.swept = swept
    result.cursor.sweep_after = None if finished else resume_after
    result.cursor.sweeps += int(finished)


def _partition_keys_only(result: Scan) -> Scan:
    """``result`` without the objects whose keys Dagster refuses as partition keys (listed in ``unusable``)."""
    result.unusable = [obj.key for obj in result.to_run if not usable_partition_key(obj.key)]
    result.new = [obj for obj in result.new if usable_partition_key(obj.key)]
    result.changed = [obj for obj in result.changed if usable_partition_key(obj.key)]
    return result


def scan_store(store: Any, cursor: Cursor, *, max_keys: int = MAX_KEYS_PER_TICK,
               sweep_keys: int = SWEEP_KEYS_PER_TICK, loaded_etags: LoadedEtags | None = None,
               warn: Callable[[str], None] = log.warning) -> Scan:
    """:func:`scan` for a store other than S3 (:class:`pipeline.records.ObjectStore`): its listing, in key
    order after its rules, from the key after the cursor's; with ``loaded_etags``, a page of the keys up
    to the cursor's is swept against the ledger, as :func:`scan` sweeps S3 (a version it lacks is changed)."""
    everything = store.listed(warn)
    page = [obj for obj in everything if cursor.last_key is None or obj.key > cursor.last_key][:max_keys]
    result = Scan(cursor=Cursor(last_key=page[-1].key if page else cursor.last_key,
                                sweep_after=cursor.sweep_after, sweeps=cursor.sweeps), listed=len(page))
    result.new = list(page)
    if loaded_etags is not None and cursor.last_key is not None:
        last, after = cursor.last_key, cursor.sweep_after
        candidates = [obj for obj in everything if obj.key <= last and (after is None or obj.key > after)]
        swept = candidates[:sweep_keys]
        _sweep(result, swept, loaded_etags, warn, swept=len(swept), finished=len(candidates) <= sweep_keys,
               resume_after=swept[-1].key if swept else None)
    return _partition_keys_only(result)


@dataclass
class Drained:
    """What one tick took from the queue."""

    received: int = 0
    to_run: list[Any] = field(default_factory=list)  # S3Objects announced that the ledger lacks
    deleted: int = 0
    left: int = 0  # messages whose objects are still to load: back after their visibility timeout
    unusable: list[str] = field(default_factory=list)

    def add(self, other: "Drained") -> None:
        """Take in what a later drain of the same tick found."""
        self.received += other.received
        self.deleted += other.deleted
        self.left += other.left
        known = {(obj.key, obj.etag) for obj in self.to_run}
        self.to_run += [obj for obj in other.to_run if (obj.key, obj.etag) not in known]
        self.unusable += [key for key in other.unusable if key not in self.unusable]


def drain(queue: Any, source: S3InputConfig, loaded_etags: LoadedEtags, head: Callable[[str], Any | None], *,
          limit: int = MAX_MESSAGES_PER_TICK, visibility_timeout: int | None = None, until: float | None = None,
          warn: Callable[[str], None] = log.warning) -> Drained:
    """Take what ``queue`` (a pipeline.sources.sqs.Queue) holds; delete what needs nothing more.

    ``head(key)`` is the object's current version (an S3Object), or None when it is gone. It is asked
    only for a message without an ETag, or one that came back: its version may have been replaced.
    With ``until`` (monotonic), an empty queue is listened to until a message comes or ``until`` does.
    """
    from pipeline.sources.s3 import S3Object

    options: dict[str, Any] = {"until": until}
    if visibility_timeout is not None:
        options["visibility_timeout"] = visibility_timeout
    messages = list(queue.drain(limit, **options))
    result = Drained(received=len(messages))
    done: list[tuple[Any, list[Any]]] = []
    pending: list[tuple[Any, list[Any]]] = []
    for message in messages:
        if message.unrecognised:
            warn(f"SQS message {message.message_id} in {queue.name} is {message.ignored}; left in the queue for "
                 "its redrive policy")
            continue
        wanted = [a for a in message.announced if source.covers(a.key) and a.size != 0]
        (pending if wanted else done).append((message, wanted))
    keys = list(dict.fromkeys(a.key for _, wanted in pending for a in wanted))
    try:
        loaded = loaded_etags(keys) if keys else {}
    except (PipelineError, psycopg.Error) as error:
        warn(f"notifications left in the queue this tick, the ledger could not be read: {error}")
        pending, result.left = [], len(pending)
    now = datetime.now(UTC)
    seen: set[tuple[str, str]] = set()
    for message, wanted in pending:
        outstanding = []
        for announced in wanted:
            etag = announced.etag
            if etag is not None and etag in loaded.get(announced.key, ()):
                continue
            obj = S3Object(source.bucket, announced.key, announced.size or 0, etag or "", now)
            if etag is None or message.receive_count > 1:
                current = head(announced.key)
                if current is None or current.etag in loaded.get(announced.key, ()):
                    continue  # gone, or replaced by a version that loaded
                obj = current
            outstanding.append(obj)
            if not usable_partition_key(obj.key):
                result.unusable.append(obj.key)
            elif (obj.key, obj.etag) not in seen:
                seen.add((obj.key, obj.etag))
                result.to_run.append(obj)
        if outstanding and all(usable_partition_key(o.key) for o in outstanding):
            result.left += 1
        else:
            done.append((message, wanted))
    if done:
        result.deleted = len(done) - len(queue.delete([message for message, _ in done]))
    return result


def usable_partition_key(key: str) -> bool:
    return not any(part in key for part in _INVALID_IN_PARTITION_KEYS)


def object_sensor(pipeline: Pipeline, job: Any, *, max_keys: int = MAX_KEYS_PER_TICK,
                  sweep_keys: int = SWEEP_KEYS_PER_TICK, sweep: bool | None = None,
                  visibility_timeout: int | None = None) -> dg.SensorDefinition:
    """``<pipeline>_sensor``: add a partition and request a run for each new object version."""
    sweep = pipeline.sweep if sweep is None else sweep
    source = pipeline.config.input
    assert not registry.is_stream(source)  # an objects input: S3, or another store
    in_s3 = registry.in_s3(source)
    how = ("lists keys after the last one seen and sweeps the whole prefix a page per tick against the "
           "ledger, catching " + ("re-uploaded objects" if in_s3 else "files rewritten in place") if sweep else
           "lists keys after the last one seen (Embulk's last_path); set in.incremental: false to also "
           "catch objects re-uploaded under a key already seen")

    name = f"{pipeline.name}_sensor"
    notifications = registry.notifications(source)
    notified = notifications is not None
    if notifications is not None:
        how = (f"drains SQS queue {notifications.queue} (the bucket's notifications) every tick, listening to it "
               f"for up to {LISTEN_SECONDS:g} s when the tick finds nothing, and "
               f"{how} every {notifications.sweep_interval:g} s, for notifications that were lost")

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=NOTIFIED_INTERVAL_SECONDS if notified else MINIMUM_INTERVAL_SECONDS,
        default_status=default_status(),
        description=f"Watches {source.uri} for new objects: {how}. At most {max_keys:,} keys per tick.",
        # The warehouse too: before requesting runs, the sensor makes sure it answers (check_jobs.gate).
        required_resource_keys={"s3", pipeline.warehouse_resource_key},
    )
    def watch_objects(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SensorResult | dg.SkipReason:
        started = time.monotonic()
        # Called directly (not by the daemon), Dagster passes the resources as keywords too; the context has them.
        warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
        # Listing S3 needs no warehouse secret; the ledger is read (and the secret resolved) only when needed.
        config = pipeline.resolve(warehouse.conninfo) if sweep or notified else pipeline.resolve_source()

        def ledger(keys: Sequence[str]) -> Mapping[str, set[str]]:
            output = pipeline.resolve(warehouse.conninfo).output
            with warehouse.connect(output) as conn:
                return state.loaded_objects(conn, output.state, config.name, keys)

        source = config.input
        assert not registry.is_stream(source)
        notifications = registry.notifications(source)
        cursor_in = Cursor.parse(context.cursor)
        listing_due = notifications is None or cursor_in.listed_at is None or (
            time.time() - cursor_in.listed_at >= notifications.sweep_interval)
        drained = Drained()
        try:
            if not registry.in_s3(source):  # another store (local files): its listing, after the last key seen
                found = scan_store(registry.store(source, lambda: None), cursor_in, max_keys=max_keys,
                                   sweep_keys=sweep_keys, loaded_etags=ledger if sweep else None,
                                   warn=context.log.warning)
            else:
                client = context.resources.s3.client(source.aws)
                if source.notifications is not None:
                    drained = _drain(context, source, client, ledger, visibility_timeout)
                if listing_due:
                    listed_at = time.time()
                    found = scan(client, source, cursor_in, max_keys=max_keys, sweep_keys=sweep_keys,
                                 loaded_etags=ledger if sweep else None, warn=context.log.warning)
                    if source.notifications is not None:
                        found.cursor.listed_at = listed_at
                else:
                    found = Scan(cursor=cursor_in)
        except SourceError as error:
            what = f"SQS {notifications.queue}" if notifications and not listing_due else \
                f"listing {source.uri}"
            return check_jobs.skip(CheckResult(what, False, str(error)))
        try:
            retried = runs.object_retries(context.instance, sensor_name=name, job_name=job.name,
                                          execution=config.exec, tags=pipeline.run_tags, loaded=ledger)
        except (PipelineError, psycopg.Error) as error:
            context.log.warning(f"failed loads not retried this tick, the ledger could not be read: {error}")
            retried = runs.Retries()
        if (registry.in_s3(source) and source.notifications is not None and not found.to_run and not drained.to_run
                and not retried.requests and listens(context.instance)):
            drained.add(_listen(context, source, context.resources.s3.client(source.aws), ledger,
                                visibility_timeout, until=started + LISTEN_SECONDS))
        known = {(obj.key, obj.etag) for obj in found.to_run}
        found.new += [obj for obj in drained.to_run if (obj.key, obj.etag) not in known]
        found.unusable += drained.unusable
        for key in found.unusable:
            context.log.warning(f"{source.object_uri(key)}: Dagster cannot use this key as a partition key; "
                                "load it with `pipeline run`")
        keys = list(dict.fromkeys(obj.key for obj in found.to_run))
        cursor = found.cursor.to_json()
        about_retries = retried.describe(source.object_uri, config.exec.retries)
        if not keys and not retried.requests:
            heard = (f"{drained.received} notification(s), {drained.deleted} deleted, {drained.left} left for "
                     "loads still to commit" + ("; " if listing_due else "; no listing due")
                     ) if notifications is not None else ""
            listed = (f"{found.listed} keys listed after the cursor" + (f", {found.swept} swept" if sweep else "")
                      ) if listing_due else ""
            return dg.SensorResult(cursor=cursor, skip_reason=(
                f"nothing new under {source.uri} ({heard}{listed})" + (f"; {about_retries}" if about_retries else "")))
        # A run that cannot reach the warehouse must fail: say so in the tick and keep the cursor before this work.
        closed = check_jobs.gate(pipeline, context.resources)
        if closed is not None:
            return closed
        if about_retries:
            context.log.info(about_retries)
        # trigger: automation: the table's condition loads each new object (a missing partition); an object
        # swept with a new ETag already has its partition, so the sensor requests its run as in sensor mode.
        automated = pipeline.trigger == "automation"
        requested = found.changed if automated else found.to_run
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=runs.object_run_key(obj.key, obj.etag), partition_key=obj.key,
                                        tags={**pipeline.run_tags, **runs.object_tags(obj.etag)})
                          for obj in requested] + retried.requests,
            dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(pipeline.partitions_name, keys)] if keys
            else [],
            asset_events=observations(pipeline, found.new, source.object_uri) if automated else [],
            cursor=cursor,
        )

    return watch_objects


def listens(instance: dg.DagsterInstance) -> bool:
    """Whether a notified tick may wait on its queue: only when the daemon evaluates each sensor in a thread
    of its own (``sensors: use_threads: true`` in dagster.yaml), so that the wait holds up no other sensor."""
    return bool((instance.get_settings("sensors") or {}).get("use_threads"))


def _listen(context: dg.SensorEvaluationContext, source: S3InputConfig, client: Any, ledger: LoadedEtags,
            visibility_timeout: int | None, *, until: float) -> Drained:
    """:func:`_drain`, waiting until ``until`` (monotonic) for the first message, when fewer than
    ``LISTENERS`` ticks of this process are listening already; a queue that fails is left for the next tick."""
    assert source.notifications is not None
    if not _listeners.acquire(blocking=False):
        return Drained()
    try:
        return _drain(context, source, client, ledger, visibility_timeout, until=until)
    except SourceError as error:
        context.log.warning(f"stopped listening to SQS {source.notifications.queue} this tick: {error}")
        return Drained()
    finally:
        _listeners.release()


def _drain(context: dg.SensorEvaluationContext, source: S3InputConfig, client: Any, ledger: LoadedEtags,
           visibility_timeout: int | None, *, until: float | None = None) -> Drained:
    from pipeline.sources.s3 import S3Object, describe, missing
    from pipeline.sources.sqs import Queue

    assert source.notifications is not None
    queue = Queue(context.resources.s3.sqs(source.aws), source.notifications.queue, source.bucket)

    def head(key: str) -> Any | None:
        try:
            return describe(client, S3Object(source.bucket, key, 0, "", datetime.fromtimestamp(0, UTC)))
        except SourceError as error:
            if missing(error):
                return None
            raise

    return drain(queue, source, ledger, head, visibility_timeout=visibility_timeout, until=until,
                 warn=context.log.warning)


def observations(pipeline: Pipeline, objects: Sequence[Any], uri: Callable[[str], str]
                 ) -> list[dg.AssetObservation]:
    """What the sensor saw of each new object version, as an observation of its partition of the objects asset."""
    return [dg.AssetObservation(
        asset_key=pipeline.objects_key, partition=obj.key,
        tags={runs.ETAG_TAG: obj.etag, DATA_VERSION_TAG: obj.etag},
        metadata={"etag": obj.etag, "size_bytes": obj.size, "uri": dg.MetadataValue.url(uri(obj.key))})
        for obj in objects]

