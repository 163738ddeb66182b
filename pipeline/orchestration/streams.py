"""A Kinesis pipeline in Dagster: the stream, the table, the sensor and the continuous job.

- ``<name>_stream``: the Kinesis stream, an external asset. Each load observes it: shards, and how
  far each shard's checkpoint is behind the tip.
- ``<name>``: the warehouse table. Materializing it is one bounded micro-batch run: the engine reads
  from the checkpoints towards the tip in batches of ``exec.max_records`` / ``exec.max_bytes``, at
  most ``MAX_BATCHES_PER_RUN`` of them, each committed with its checkpoints (exactly once). Caught
  up, it stays while records keep arriving (a batch a window, ``RUN_LINGER_SECONDS`` at most).
- ``<name>_sensor``: every few seconds, one cheap look past the checkpoints. When records wait it
  requests one run of ``<name>_load`` keyed by the checkpoints, so one state launches one run.
  In continuous mode it keeps one run of ``<name>_continuous`` alive instead.
- ``<name>_continuous``: ``StreamLoad.follow``, a commit every ``exec.window_seconds`` until the run
  is terminated or ``exec.max_runtime`` passes.
"""

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import psycopg

from pipeline import registry
from pipeline.config import ExecConfig, KinesisInputConfig, PipelineConfig
from pipeline.errors import PipelineError
from pipeline.orchestration import check_jobs
from pipeline.orchestration.pipelines import Pipeline, stream_mode_variable
from pipeline.orchestration.runs import NO_RUN_RETRIES, RUN_KEY_TAG, SENSOR_NAME_TAG, failure_text

# A run reads at most this many batches behind the tip (10 x exec.max_records); the sensor requests the next run.
MAX_BATCHES_PER_RUN = 10
# Caught up, a run goes on committing a batch every exec.window_seconds while records keep arriving, for up
# to this long since it started: a run's start (a process that loads the code location) costs seconds, and
# records that arrive meanwhile would otherwise wait for it to end, the next tick and the next run's start.
RUN_LINGER_SECONDS = 60.0
# Short, so a record waits at most a tick plus a run's start-up: sensor-mode latency well under 30 s. The
# daemon evaluates sensors in a loop of 5 s at the shortest, and an interval of 5 s would skip every other
# loop (a tick lands a hair under 5 s after the last): 1 s, a tick every loop.
MINIMUM_INTERVAL_SECONDS = 1
# The continuous job reports what it committed as a materialization at most this often.
REPORT_EVERY_SECONDS = 60

ACTIVE_STATUSES = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
_UNSUCCESSFUL = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def load_job_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}_load"


def continuous_job_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}_continuous"


def stream_pipeline_definitions(pipeline: Pipeline) -> dg.Definitions:
    """A Kinesis pipeline: stream and table assets, the micro-batch and continuous jobs, the sensor."""
    load_job = dg.define_asset_job(
        load_job_name(pipeline),
        selection=dg.AssetSelection.assets(pipeline.table_key),
        tags=pipeline.run_tags,
        description=f"One bounded micro-batch run: {_stream(pipeline.config).stream} from the checkpoints "
                    f"into {pipeline.config.output.qualified_table}.",
    )
    from pipeline.orchestration import checks
    from pipeline.orchestration.assets import rejected_spec
    from pipeline.orchestration.freshness import freshness_checks, freshness_sensors

    follow = continuous_job(pipeline)
    return dg.Definitions(
        assets=[stream_spec(pipeline), table_asset(pipeline), rejected_spec(pipeline)],
        # The uuid key being unique is the table-side proof that every record landed once.
        asset_checks=checks.table_checks(pipeline) + freshness_checks(pipeline),
        jobs=[load_job, follow],
        sensors=[stream_sensor(pipeline, load_job, follow), *freshness_sensors(pipeline)],
    )


# --------------------------------------------------------------------------- assets


def stream_spec(pipeline: Pipeline) -> dg.AssetSpec:
    """The Kinesis stream, an external asset: Dagster observes it and never writes it."""
    from pipeline.orchestration.assets import code_references, source_schema

    source = _stream(pipeline.config)
    return dg.AssetSpec(
        key=pipeline.stream_key,
        description=(f"JSON records in the Kinesis stream {source.stream} (starting position "
                     f"{source.starting_position}). Each load observes its shards and how far each shard's "
                     "checkpoint is behind the tip."),
        group_name=pipeline.name,
        kinds={"kinesis"},
        metadata={"stream": source.stream, "starting_position": source.starting_position,
                  "dagster/column_schema": source_schema(stream_columns(pipeline.config)[0]),
                  **code_references(pipeline)},
    )


def table_asset(pipeline: Pipeline) -> dg.AssetsDefinition:
    """The warehouse table; materializing it is one bounded micro-batch run."""
    from pipeline.orchestration.assets import WAREHOUSE_NAMES, column_lineage, column_schema, table_metadata

    config = pipeline.config
    out = config.output
    source = _stream(config)
    execution = config.exec
    fields, columns = stream_columns(config)
    description = (
        f"Records of the Kinesis stream {source.stream}, loaded into {WAREHOUSE_NAMES[out.type]} "
        f"table {out.qualified_table} (mode {out.mode}). A materialization reads from the shard checkpoints "
        f"towards the tip in batches of at most {execution.max_records:,} records / {execution.max_bytes:,} bytes "
        f"({MAX_BATCHES_PER_RUN} batches at most; at the tip, a batch every {execution.window_seconds:g} s while "
        f"records keep arriving, for up to {RUN_LINGER_SECONDS:g} s), each committed with its checkpoints, so "
        f"every record loads exactly once; records that fail to parse go to {out.schema}.{out.rejected}. "
        f"Config: {pipeline.path.name}."
    )

    @dg.asset(
        key=pipeline.table_key,
        description=description,
        group_name=pipeline.name,
        kinds={out.type},
        deps=[pipeline.stream_key],
        metadata={**table_metadata(pipeline, column_schema(config, columns)),
                  "stream": source.stream,
                  "dagster/column_lineage": column_lineage(pipeline, pipeline.stream_key, fields)},
        required_resource_keys={"kinesis", "s3", pipeline.warehouse_resource_key},
        # One pool per warehouse, as the S3 loads: Dagster caps concurrent loads into it.
        pool=pipeline.pool,
        check_specs=stream_check_specs(pipeline),
        freshness_policy=pipeline.freshness_policy
        if execution.expect_within is not None or pipeline.translation.fail_within is not None else None,
        retry_policy=pipeline.translation.retry_policy,
    )
    def load_stream(context: dg.AssetExecutionContext) -> Iterator[Any]:
        yield from materialize_stream(context, pipeline)

    return load_stream


FLOWING_CHECK = "records_flowing"
NO_LOSS_CHECK = "no_records_lost"


def stream_check_specs(pipeline: Pipeline) -> list[dg.AssetCheckSpec]:
    """Checks every load reports: whether it went through, and whether records expired before they were read."""
    return [
        dg.AssetCheckSpec(FLOWING_CHECK, asset=pipeline.table_key,
                          description="The last load committed its batches. A load that fails (a batch the "
                                      "warehouse keeps refusing, the stream or warehouse unreachable) fails "
                                      "this check with the reason, while the lag keeps growing."),
        dg.AssetCheckSpec(NO_LOSS_CHECK, asset=pipeline.table_key,
                          description="No records expired from Kinesis (retention) before this pipeline read "
                                      "them; a failure names the shard, the sequence range and when they arrived "
                                      "(in.on_data_loss decides whether the load stops)."),
    ]


def materialize_stream(context: dg.AssetExecutionContext, pipeline: Pipeline) -> Iterator[Any]:
    """Read from the checkpoints towards the tip, at most MAX_BATCHES_PER_RUN committed batches."""
    from pipeline.orchestration.assets import column_schema
    from pipeline.stream import DataLossError

    try:
        load = _stream_load(context, pipeline)
        summary = load.run(max_batches=MAX_BATCHES_PER_RUN, linger=RUN_LINGER_SECONDS)
        checkpoints = load.checkpoints()
    except PipelineError as error:
        # The engine's message names the shard, sequence number and column: show it, not a traceback.
        lost = isinstance(error, DataLossError)
        yield dg.AssetCheckResult(check_name=FLOWING_CHECK, passed=False, description=str(error)[:1000],
                                  metadata={"error": str(error)})
        yield dg.AssetCheckResult(check_name=NO_LOSS_CHECK, passed=not lost,
                                  description=str(error)[:1000] if lost else "no records known lost",
                                  metadata={"error": str(error)} if lost else {})
        raise dg.Failure(description=str(error)) from None
    lags = _observe_stream(context, pipeline, load, checkpoints)
    committed = [b for b in summary.batches if b.records]
    at_tip = summary.batches[-1].at_tip if summary.batches else True
    metadata: dict[str, Any] = {
        "dagster/row_count": summary.rows,
        "dagster/column_schema": column_schema(load.config, load.columns),
        "records_read": summary.records,
        "rejected_records": summary.rejected,
        "bytes_read": summary.bytes,
        "batches": len(committed),
        "duration_seconds": round(summary.seconds, 3),
        "at_tip": at_tip,
        "checkpoints": dg.MetadataValue.json(checkpoints),
        "status": summary.describe() + ("" if at_tip else
                                        f"; stopped after {MAX_BATCHES_PER_RUN} batches, more records wait"),
    }
    # Numbers, so the UI's Plots tab charts throughput and lag across runs.
    metadata["records_per_second"] = round(summary.records / summary.seconds) if summary.seconds > 0 else 0
    if lags is not None:
        metadata["shard_lag"] = dg.MetadataValue.json(lags)
        behind = [lag["millis_behind"] for lag in lags.values() if lag["millis_behind"] is not None]
        if behind:
            metadata["max_millis_behind_tip"] = max(behind)
    arrivals = [b.oldest_arrival for b in committed if b.oldest_arrival is not None]
    if arrivals:
        metadata["oldest_record_arrival"] = dg.MetadataValue.timestamp(min(arrivals))
    if summary.data_loss:
        metadata["records_lost"] = dg.MetadataValue.json([loss.as_metadata() for loss in summary.data_loss])
    context.log.info(metadata["status"])
    losses = "; ".join(loss.describe(load.input.stream) for loss in summary.data_loss)
    checks = [
        dg.AssetCheckResult(check_name=FLOWING_CHECK, passed=True, description=metadata["status"],
                            metadata={"at_tip": at_tip, **({"max_millis_behind_tip": metadata["max_millis_behind_tip"]}
                                                         if "max_millis_behind_tip" in metadata else {})}),
        dg.AssetCheckResult(check_name=NO_LOSS_CHECK, passed=not summary.data_loss,
                            severity=dg.AssetCheckSeverity.WARN,
                            description=(f"accepted (in.on_data_loss: warn): {losses}" if losses
                                         else "no records known lost"),
                            metadata={"records_lost": dg.MetadataValue.json(
                                [loss.as_metadata() for loss in summary.data_loss])}),
    ]
    yield dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(checkpoint_digest(checkpoints)),
                               check_results=checks)


def _observe_stream(context: Any, pipeline: Pipeline, load: Any, checkpoints: Mapping[str, str]
                    ) -> dict[str, Any] | None:
    """Log an observation of the stream (summary and per-shard lag); a failure here is a warning only."""
    from pipeline.sources.kinesis import describe_stream

    try:
        described = describe_stream(load.kinesis, load.input.stream).as_metadata()
        lags = shard_lag(load.pending(checkpoints), checkpoints)
    except PipelineError as error:
        context.log.warning(f"the stream could not be observed after the load: {error}")
        return None
    context.log_event(dg.AssetObservation(
        asset_key=pipeline.stream_key,
        metadata={**described, "shards": len(lags), "shards_with_records_waiting":
                  sum(1 for lag in lags.values() if lag["records_waiting"]),
                  "shard_lag": dg.MetadataValue.json(lags)}))
    return lags


def shard_lag(pending: Mapping[str, Any], checkpoints: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Shard id -> checkpoint, whether records wait past it and milliseconds behind the tip."""
    return {shard: {"checkpoint": checkpoints.get(shard), "records_waiting": lag.has_records,
                    "millis_behind": lag.millis_behind} for shard, lag in sorted(pending.items())}


# --------------------------------------------------------------------------- continuous job


def continuous_job(pipeline: Pipeline) -> dg.JobDefinition:
    """``<name>_continuous``: follow the stream, a commit every exec.window_seconds, until terminated."""
    execution = pipeline.config.exec
    until = (f"until the run is terminated or exec.max_runtime ({execution.max_runtime:g} s) passes"
             if execution.max_runtime is not None else "until the run is terminated")

    @dg.op(
        name=f"{pipeline.name}_follow",
        description=f"Commit the records of {_stream(pipeline.config).stream} every exec.window_seconds "
                    f"({execution.window_seconds:g} s) {until}.",
        required_resource_keys={"kinesis", "s3", pipeline.warehouse_resource_key},
    )
    def follow_stream(context: dg.OpExecutionContext) -> None:
        follow(context, pipeline)

    @dg.job(
        name=continuous_job_name(pipeline),
        tags=pipeline.continuous_run_tags,
        description=f"Continuous mode: one long run that commits {pipeline.config.output.qualified_table} every "
                    f"{execution.window_seconds:g} s {until}. Set ${stream_mode_variable(pipeline.name)}="
                    f"continuous and {pipeline.name}_sensor keeps one such run alive.",
    )
    def continuous() -> None:
        follow_stream()

    return continuous


def follow(context: dg.OpExecutionContext, pipeline: Pipeline) -> None:
    """Run ``StreamLoad.follow``; report committed rows as materializations of the table."""
    try:
        load = _stream_load(context, pipeline)
    except PipelineError as error:
        raise dg.Failure(description=str(error)) from None
    stop = threading.Event()
    totals = {"records": 0, "rows": 0, "rejected": 0, "bytes": 0, "batches": 0}
    reported = time.monotonic()

    def report(checkpoints: Mapping[str, str]) -> None:
        nonlocal reported
        context.log_event(dg.AssetMaterialization(
            asset_key=pipeline.table_key,
            metadata={"dagster/row_count": totals["rows"], "records_read": totals["records"],
                      "rejected_records": totals["rejected"], "bytes_read": totals["bytes"],
                      "batches": totals["batches"], "checkpoints": dg.MetadataValue.json(dict(checkpoints))}))
        totals.update(dict.fromkeys(totals, 0))
        reported = time.monotonic()

    last: dict[str, str] = {}

    def on_batch(result: Any) -> None:
        if result.records:
            for name in ("records", "rows", "rejected", "bytes"):
                totals[name] += getattr(result, name)
            totals["batches"] += 1
            last.update(result.checkpoints)
            if time.monotonic() - reported >= REPORT_EVERY_SECONDS:
                report(last)
        if _canceling(context):
            context.log.info("the run is being terminated: stopping after this committed batch")
            stop.set()

    try:
        summary = load.follow(stop, on_batch=on_batch)
    except PipelineError as error:
        raise dg.Failure(description=str(error)) from None
    finally:
        if totals["batches"]:
            report(last)
    context.log.info(summary.describe())


def _canceling(context: dg.OpExecutionContext) -> bool:
    run = context.instance.get_run_by_id(context.run_id)
    return run is None or run.status in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)


# --------------------------------------------------------------------------- sensor


def stream_sensor(pipeline: Pipeline, load_job: Any, follow_job: dg.JobDefinition) -> dg.SensorDefinition:
    """``<name>_sensor``: one micro-batch run per checkpoint state with records waiting, or a continuous run."""
    source = _stream(pipeline.config)
    continuous = pipeline.stream_mode == "continuous"
    how = (f"keeps one {follow_job.name} run alive (continuous mode); stop this sensor to stop restarting it"
           if continuous else
           f"looks past the shard checkpoints (one GetRecords per shard) and, when records wait, requests one "
           f"{load_job_name(pipeline)} run keyed by the checkpoints, so one state launches one run")
    name = f"{pipeline.name}_sensor"
    # The engine's objects are cached across ticks: the target's tables are checked once, not every tick.
    loads: dict[tuple[str, int], Any] = {}

    @dg.sensor(
        name=name,
        jobs=[load_job, follow_job],
        minimum_interval_seconds=MINIMUM_INTERVAL_SECONDS,
        default_status=_default_status(),
        description=f"Watches the Kinesis stream {source.stream}: {how}.",
        required_resource_keys={"kinesis", pipeline.warehouse_resource_key},
    )
    def watch_stream(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SensorResult | dg.SkipReason:
        instance = context.instance
        active = latest_run(instance, job_names=[load_job_name(pipeline), follow_job.name], statuses=ACTIVE_STATUSES)
        if active is not None:
            return dg.SkipReason(f"run {active.run_id} ({active.job_name}) is {active.status.value}")
        from pipeline.stream import StreamLoad

        warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
        config = pipeline.resolve(warehouse.conninfo)
        client = context.resources.kinesis.client(_stream(config).aws)
        cache_key = (config.output.conninfo, id(client))
        if cache_key not in loads:
            loads.clear()
            loads[cache_key] = StreamLoad(config, kinesis_client=client, emit=context.log.info)
        load = loads[cache_key]
        # Reading the checkpoints proves the warehouse answers, and looking past them that the stream can be
        # read: a failure is reported in the tick instead of launching a run that must fail.
        from pipeline.inspect import CheckResult

        try:
            checkpoints = load.checkpoints()
        except (PipelineError, psycopg.Error) as error:
            return check_jobs.skip(CheckResult("warehouse (shard checkpoints)", False, str(error)))
        if continuous:
            job_name, reason = follow_job.name, "continuous mode"
        else:
            try:
                lags = load.pending(checkpoints)
            except PipelineError as error:
                return check_jobs.skip(CheckResult(f"Kinesis {source.stream}", False, str(error)))
            waiting = sorted(shard for shard, lag in lags.items() if lag.has_records)
            pin = not checkpoints and source.starting_position == "latest"
            if not waiting and not pin:
                return dg.SkipReason(f"no records past the checkpoints of {len(lags)} shard(s) of {source.stream}")
            job_name = load_job_name(pipeline)
            reason = (f"records wait in {', '.join(waiting)}" if waiting else
                      "starting_position latest and no checkpoint yet: one run pins the start")
        base = f"{'continuous' if continuous else 'checkpoints'}:{checkpoint_digest(checkpoints)}"
        run_key, why = next_run_key(instance, name, base, config.exec, continuous=continuous,
                                    follow_job=follow_job.name)
        if run_key is None:
            return dg.SkipReason(f"the last run for these checkpoints failed ({last_failure(instance, name, base)}); "
                                 f"{why}")
        if why:
            reason += f"; {why} ({last_failure(instance, name, base)})"
        context.log.info(f"{reason}: requesting {job_name} with run_key {run_key}")
        # The sensor retries (exec.retries) and keeps one continuous run alive: no daemon run retry beside it.
        tags = pipeline.continuous_run_tags if continuous else pipeline.run_tags
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key, job_name=job_name,
                                                           tags={**tags, **NO_RUN_RETRIES})])

    return watch_stream


def checkpoint_digest(checkpoints: Mapping[str, str]) -> str:
    """A short, stable name for a set of shard checkpoints ("start" when there are none)."""
    if not checkpoints:
        return "start"
    text = json.dumps(sorted(checkpoints.items()), separators=(",", ":"))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def next_run_key(instance: dg.DagsterInstance, sensor_name: str, base: str, execution: ExecConfig, *,
                 continuous: bool = False, follow_job: str | None = None) -> tuple[str | None, str]:
    """The run key for checkpoint state ``base`` and, for a retry, which one; or None and why no run is due.

    ``base`` itself for the state's first run. When the run launched under a key failed, the next
    try is ``<key>:after-<that run's id>``, once ``exec.retry_wait`` (doubling with each failure)
    has passed, and at most ``exec.retries`` times. In continuous mode every finished run is
    followed by another, keyed after it, so an idle stream restarted again and again never runs
    out of keys.
    """
    if continuous:
        assert follow_job is not None
        return _continuous_key(instance, sensor_name, base, execution, follow_job)
    key, failures, retry = base, 0, ""
    while True:
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={RUN_KEY_TAG: key, SENSOR_NAME_TAG: sensor_name}), limit=1)
        if not records:
            return key, retry
        record = records[0]
        if record.dagster_run.status not in _UNSUCCESSFUL:
            return key, retry  # running, or done: Dagster skips a key it launched already
        failures += 1
        why = _not_yet(record, failures, execution)
        if why:
            return None, why
        key = f"{base}:after-{record.dagster_run.run_id[:8]}"
        retry = _retry(failures, execution)


def _continuous_key(instance: dg.DagsterInstance, sensor_name: str, base: str, execution: ExecConfig,
                    follow_job: str) -> tuple[str | None, str]:
    recent = instance.get_run_records(filters=dg.RunsFilter(job_name=follow_job, tags={SENSOR_NAME_TAG: sensor_name}),
                                      limit=execution.retries + 1)
    if not recent:
        return base, ""
    failures = 0
    for record in recent:
        if record.dagster_run.status not in _UNSUCCESSFUL:
            break
        failures += 1
    why = _not_yet(recent[0], failures, execution) if failures else ""
    if why:
        return None, why
    return f"{base}:after-{recent[0].dagster_run.run_id[:8]}", _retry(failures, execution) if failures else ""


def _retry(failures: int, execution: ExecConfig) -> str:
    return f"retry {failures} of at most {execution.retries} after a failed run"


def _not_yet(record: Any, failures: int, execution: ExecConfig) -> str:
    """Why no retry follows the ``failures``-th failed run ``record`` yet; empty when one is due."""
    if failures > execution.retries:
        return (f"gave up after {failures} failed runs (exec.retries {execution.retries}); fix the cause, then "
                "materialize the table or run `pipeline run` and the sensor goes on from the new checkpoints")
    wait = execution.wait_before_retry(failures)
    due = (record.end_time or 0) + wait
    if time.time() < due:
        return f"retrying {wait:.0f} s after it ended (failure {failures} of at most {execution.retries + 1})"
    return ""


def last_failure(instance: dg.DagsterInstance, sensor_name: str, base: str) -> str:
    """Why the latest failed run launched for checkpoint state ``base`` failed, in the engine's words."""
    runs = [record for record in instance.get_run_records(
        filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: sensor_name}, statuses=list(_UNSUCCESSFUL)), limit=20)
        if record.dagster_run.tags.get(RUN_KEY_TAG, "").startswith(base)]
    if not runs:
        return "no failed run found"
    return failure_text(instance, runs[0].dagster_run)


def latest_run(instance: dg.DagsterInstance, *, job_names: list[str], statuses: list[Any]) -> Any:
    for job_name in job_names:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=statuses), limit=1)
        if runs:
            return runs[0]
    return None


def _default_status() -> dg.DefaultSensorStatus:
    from pipeline.orchestration.sensors import default_status

    return default_status()


# --------------------------------------------------------------------------- helpers


def _stream_load(context: Any, pipeline: Pipeline) -> Any:
    """The engine for one run, with the run's resources: config, clients and logging."""
    from pipeline.stream import StreamLoad

    warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
    config = pipeline.resolve(warehouse.conninfo)
    source = _stream(config)
    return StreamLoad(config, kinesis_client=context.resources.kinesis.client(source.aws),
                      s3_client=context.resources.s3.client(source.aws), emit=context.log.info)


def stream_columns(config: PipelineConfig) -> tuple[list[Any], list[Any]]:
    """A record's fields as the parser reads them (its columns, then the Kinesis metadata it uses), and the
    table's columns as the engine writes them (after the filters); no I/O."""
    from pipeline.stream import StreamLoad

    loader = StreamLoad(config)
    return list(loader.record_columns), list(loader.columns)


def _stream(config: PipelineConfig) -> KinesisInputConfig:
    if not registry.is_stream(config.input):
        raise PipelineError(f"{config.name}: in.type is {config.input.type}, not kinesis")
    return config.input

