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

Every run request has ``run_key = "<key>:<ETag>"``, so Dagster launches each object version at
most once however often it is seen, and a re-uploaded object (new ETag) runs again. A run that
failed is run again under a key of its own (``...:retry-<n>``), at most ``exec.retries`` times
with a doubling wait (``pipeline.orchestration.runs``); an object that loaded meanwhile is not.
"""


import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg
import psycopg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from pipeline.config import S3InputConfig
from pipeline.errors import PipelineError, SourceError
from pipeline.inspect import CheckResult
from pipeline.orchestration import check_jobs, runs
from pipeline.orchestration.pipelines import Pipeline
from pipeline.warehouse import state

MAX_KEYS_PER_TICK = 1000  # one ListObjectsV2 page: a backlog is worked off a page per tick
SWEEP_KEYS_PER_TICK = 1000
MINIMUM_INTERVAL_SECONDS = 30
CURSOR_VERSION = 1
# Dagster refuses these in partition keys; such objects are reported and passed over.
_INVALID_IN_PARTITION_KEYS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")

log = logging.getLogger(__name__)


def default_status() -> dg.DefaultSensorStatus:
    """Running on the local stack (``pipeline local`` sets PIPELINE_LOCAL_DIR), stopped elsewhere."""
    return dg.DefaultSensorStatus.RUNNING if os.environ.get("PIPELINE_LOCAL_DIR") else dg.DefaultSensorStatus.STOPPED


@dataclass
class Cursor:
    """What a sensor remembers between ticks."""

    last_key: str | None = None  # every key up to here has been seen
    sweep_after: str | None = None  # the sweep's position; None: the next sweep starts at the top
    sweeps: int = 0  # sweeps completed

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(last_key=data.get("last_key"), sweep_after=data.get("sweep_after"), sweeps=data.get("sweeps", 0))

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
        candidates = [obj for obj in in_range if wanted(obj)]
        try:
            loaded = loaded_etags([obj.key for obj in candidates]) if candidates else {}
        except (PipelineError, psycopg.Error) as error:
            warn(f"sweep skipped this tick, the ledger could not be read: {error}")
        else:
            result.changed = [obj for obj in candidates if obj.etag not in loaded.get(obj.key, ())]
            result.swept = len(in_range)
            # A short page means the listing ran out; either way the sweep starts again at the top.
            finished = len(page) < sweep_keys or len(in_range) < len(page)
            result.cursor.sweep_after = None if finished else page[-1].key
            result.cursor.sweeps += int(finished)

    result.unusable = [obj.key for obj in result.to_run if not usable_partition_key(obj.key)]
    result.new = [obj for obj in result.new if usable_partition_key(obj.key)]
    result.changed = [obj for obj in result.changed if usable_partition_key(obj.key)]
    return result


def usable_partition_key(key: str) -> bool:
    return not any(part in key for part in _INVALID_IN_PARTITION_KEYS)


def object_sensor(pipeline: Pipeline, job: Any, *, max_keys: int = MAX_KEYS_PER_TICK,
                  sweep_keys: int = SWEEP_KEYS_PER_TICK, sweep: bool | None = None) -> dg.SensorDefinition:
    """``<pipeline>_sensor``: add a partition and request a run for each new object version."""
    sweep = pipeline.sweep if sweep is None else sweep
    source = pipeline.config.input
    assert isinstance(source, S3InputConfig)
    how = ("lists keys after the last one seen and sweeps the whole prefix a page per tick against the "
           "ledger, catching re-uploaded objects" if sweep else
           "lists keys after the last one seen (Embulk's last_path); set in.incremental: false to also "
           "catch objects re-uploaded under a key already seen")

    name = f"{pipeline.name}_sensor"

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=default_status(),
        description=f"Watches {source.uri} for new objects: {how}. At most {max_keys:,} keys per tick.",
        # The warehouse too: before requesting runs, the sensor makes sure it answers (check_jobs.gate).
        required_resource_keys={"s3", pipeline.warehouse_resource_key},
    )
    def watch_objects(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SensorResult | dg.SkipReason:
        # Called directly (not by the daemon), Dagster passes the resources as keywords too; the context has them.
        warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
        # Listing S3 needs no warehouse secret; the ledger is read (and the secret resolved) only when needed.
        config = pipeline.resolve(warehouse.conninfo) if sweep else pipeline.resolve_source()

        def ledger(keys: Sequence[str]) -> Mapping[str, set[str]]:
            output = pipeline.resolve(warehouse.conninfo).output
            with warehouse.connect(output) as conn:
                return state.loaded_objects(conn, output.state, config.name, keys)

        source = config.input
        assert isinstance(source, S3InputConfig)
        try:
            found = scan(context.resources.s3.client(source.aws), source, Cursor.parse(context.cursor),
                         max_keys=max_keys, sweep_keys=sweep_keys, loaded_etags=ledger if sweep else None,
                         warn=context.log.warning)
        except SourceError as error:
            return check_jobs.skip(CheckResult(f"S3 ListBucket {source.uri}", False, str(error)))
        for key in found.unusable:
            context.log.warning(f"s3://{source.bucket}/{key}: Dagster cannot use this key as a partition key; "
                                "load it with `pipeline run`")
        try:
            retried = runs.object_retries(context.instance, sensor_name=name, job_name=job.name,
                                          execution=config.exec, tags=pipeline.run_tags, loaded=ledger)
        except (PipelineError, psycopg.Error) as error:
            context.log.warning(f"failed loads not retried this tick, the ledger could not be read: {error}")
            retried = runs.Retries()
        keys = list(dict.fromkeys(obj.key for obj in found.to_run))
        cursor = found.cursor.to_json()
        about_retries = retried.describe(source.bucket, config.exec.retries)
        if not keys and not retried.requests:
            return dg.SensorResult(cursor=cursor, skip_reason=(
                f"nothing new under {source.uri} ({found.listed} keys listed after the cursor"
                + (f", {found.swept} swept)" if sweep else ")") + (f"; {about_retries}" if about_retries else "")))
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
            asset_events=observations(pipeline, found.new, source.bucket) if automated else [],
            cursor=cursor,
        )

    return watch_objects


def observations(pipeline: Pipeline, objects: Sequence[Any], bucket: str) -> list[dg.AssetObservation]:
    """What the sensor saw of each new object version, as an observation of its partition of the objects asset."""
    return [dg.AssetObservation(
        asset_key=pipeline.objects_key, partition=obj.key,
        tags={runs.ETAG_TAG: obj.etag, DATA_VERSION_TAG: obj.etag},
        metadata={"etag": obj.etag, "size_bytes": obj.size, "uri": dg.MetadataValue.url(f"s3://{bucket}/{obj.key}")})
        for obj in objects]

