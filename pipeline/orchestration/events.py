"""An S3 pipeline with ``in.notifications`` in continuous mode: one long run follows the bucket's queue.

``<name>_continuous`` runs ``ObjectFollow`` (what ``pipeline run --follow`` runs) until the run is
terminated or ``exec.max_runtime`` passes: each announced object loads within a second or so of
landing, with no run to start per object. Each object it loads is reported as a materialization of
that object's partition of the table (the partition is added first). ``<name>_sensor`` keeps one
such run alive, as a stream's sensor does in continuous mode.
"""


import threading
from typing import Any

import dagster as dg

from pipeline.errors import PipelineError
from pipeline.orchestration.pipelines import Pipeline

CANCEL_POLL_SECONDS = 5.0


def continuous_job_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}_continuous"


def continuous_job(pipeline: Pipeline) -> dg.JobDefinition:
    """``<name>_continuous``: load each object the queue announces, until terminated."""
    execution = pipeline.config.exec
    until = (f"until the run is terminated or exec.max_runtime ({execution.max_runtime:g} s) passes"
             if execution.max_runtime is not None else "until the run is terminated")
    notifications = getattr(pipeline.config.input, "notifications", None)
    queue = notifications.queue if notifications is not None else "in.notifications.queue"

    @dg.op(
        name=f"{pipeline.name}_follow",
        description=f"Load each object SQS queue {queue} announces, as it lands, {until}.",
        required_resource_keys={"s3", pipeline.warehouse_resource_key},
    )
    def follow_objects(context: dg.OpExecutionContext) -> None:
        follow(context, pipeline)

    @dg.job(
        name=continuous_job_name(pipeline),
        tags=pipeline.continuous_run_tags,
        description=f"Continuous mode: one long run that loads each object into "
                    f"{pipeline.config.output.qualified_table} as its notification arrives, {until}. "
                    f"{pipeline.name}_sensor keeps one such run alive.",
    )
    def continuous() -> None:
        follow_objects()

    return continuous


def follow(context: dg.OpExecutionContext, pipeline: Pipeline) -> None:
    """Run ``ObjectFollow``; report each object it loads as a materialization of its partition."""
    from pipeline.follow import ObjectFollow
    from pipeline.orchestration.sensors import usable_partition_key

    warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
    stop = threading.Event()

    def on_run(run: Any) -> None:
        loaded = [result for result in run.loaded if usable_partition_key(result.key)]
        if loaded:
            context.instance.add_dynamic_partitions(pipeline.partitions_name, [r.key for r in loaded])
        for result in loaded:
            context.log_event(dg.AssetMaterialization(
                asset_key=pipeline.table_key, partition=result.key,
                description=f"loaded by {context.run_id[:8]} as its notification arrived",
                metadata={"new_rows": result.rows, "rejected_rows": result.rejected, "etag": result.etag,
                          "bytes_loaded": result.bytes, "load_path": result.path,
                          "duration_seconds": round(result.seconds, 3)}))

    def watch_for_termination() -> None:
        while not stop.wait(CANCEL_POLL_SECONDS):
            run = context.instance.get_run_by_id(context.run_id)
            if run is None or run.status in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED):
                context.log.info("the run is being terminated: stopping after the load in hand")
                stop.set()

    try:
        config = pipeline.resolve(warehouse.conninfo)
        source = config.input
        follower = ObjectFollow(config, s3_client=context.resources.s3.client(source.aws),
                                sqs_client=context.resources.s3.sqs(source.aws), emit=context.log.info,
                                on_run=on_run, poll_seconds=CANCEL_POLL_SECONDS)
    except PipelineError as error:
        raise dg.Failure(description=str(error)) from None
    watcher = threading.Thread(target=watch_for_termination, name="follow-termination", daemon=True)
    watcher.start()
    try:
        summary = follower.follow(stop)
    finally:
        stop.set()
    context.log.info(summary.describe())


def follow_sensor(pipeline: Pipeline, follow_job: dg.JobDefinition) -> dg.SensorDefinition:
    """``<name>_sensor`` in continuous mode: keep one ``<name>_continuous`` run alive (retried as a stream's is)."""
    from pipeline.orchestration.runs import NO_RUN_RETRIES
    from pipeline.orchestration.sensors import NOTIFIED_INTERVAL_SECONDS, default_status
    from pipeline.orchestration.streams import ACTIVE_STATUSES, last_failure, latest_run, next_run_key

    name = f"{pipeline.name}_sensor"

    @dg.sensor(
        name=name,
        job=follow_job,
        minimum_interval_seconds=NOTIFIED_INTERVAL_SECONDS,
        default_status=default_status(),
        description=f"Keeps one {follow_job.name} run alive (continuous mode: it loads each object the bucket's "
                    "notifications announce, and sweeps the prefix for lost ones); stop this sensor to stop "
                    "restarting it.",
    )
    def keep_following(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        active = latest_run(context.instance, job_names=[follow_job.name], statuses=ACTIVE_STATUSES)
        if active is not None:
            return dg.SkipReason(f"run {active.run_id} ({active.job_name}) is {active.status.value}")
        run_key, why = next_run_key(context.instance, name, "follow", pipeline.config.exec, continuous=True,
                                    follow_job=follow_job.name)
        if run_key is None:
            return dg.SkipReason(f"the last run failed ({last_failure(context.instance, name, 'follow')}); {why}")
        context.log.info(f"continuous mode{'; ' + why if why else ''}: requesting {follow_job.name} "
                         f"with run_key {run_key}")
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key, job_name=follow_job.name,
                                                           tags={**pipeline.continuous_run_tags, **NO_RUN_RETRIES})])

    return keep_following
