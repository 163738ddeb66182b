"""``check_<pipeline>``: ``pipeline check`` as a Dagster job, and the cheap gate sensors run before launching.

Both read the config with the real environment and the code location's resources, and report
``CheckResult`` lines, which name what was tested and never a secret's value.
"""

from typing import Any

import dagster as dg

from pipeline import registry
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError
from pipeline.inspect import CheckResult
from pipeline.orchestration.pipelines import Pipeline

# libpq's connect_timeout for the sensors' probe: a host that drops packets must not hold a tick for minutes.
PROBE_TIMEOUT_SECONDS = 3
RESUMES = "fix it and the sensor resumes"


def check_job_name(pipeline: Pipeline) -> str:
    return f"check_{pipeline.name}"


def check_job(pipeline: Pipeline) -> dg.JobDefinition:
    """``check_<pipeline>``: every check of ``pipeline check``; the run fails when one fails."""
    resource_keys = {"s3", "kms", "kinesis", pipeline.warehouse_resource_key}

    @dg.op(
        name=f"{pipeline.name}_check_dependencies",
        description="Credentials, source permissions, warehouse connection and TLS, table, columns and "
                    "privileges; read-only.",
        required_resource_keys=resource_keys,
        out=dg.Out(dg.Nothing),
    )
    def check_dependencies(context: dg.OpExecutionContext) -> dg.Output:
        results = run_checks(pipeline, context.resources)
        for result in results:
            (context.log.info if result.ok else context.log.error)(result.line())
        metadata = {result.name: f"{'ok' if result.ok else 'FAIL'}: {result.detail}" for result in results}
        failed = [result.line() for result in results if not result.ok]
        if failed:
            raise dg.Failure(description="\n".join(failed), metadata=metadata)
        return dg.Output(None, metadata=metadata)

    @dg.job(
        name=check_job_name(pipeline),
        tags=pipeline.run_tags,
        description=f"`pipeline check` for {pipeline.name}: test every dependency without changing anything.",
    )
    def check_pipeline() -> None:
        check_dependencies()

    return check_pipeline


def run_checks(pipeline: Pipeline, resources: Any) -> list[CheckResult]:
    """``inspect.check`` on the config resolved with the environment and ``resources``' clients."""
    from pipeline.inspect import check

    try:
        config = resolved(pipeline, resources)
    except ConfigError as error:
        return [CheckResult("config", False, str(error))]
    aws = config.input.aws
    if registry.is_stream(config.input):
        return check(config, kinesis_client=resources.kinesis.client(aws))
    return check(config, s3_client=resources.s3.client(aws), kms_client=resources.kms.client(aws))


def resolved(pipeline: Pipeline, resources: Any) -> PipelineConfig:
    return pipeline.resolve(getattr(resources, pipeline.warehouse_resource_key).conninfo)


def warehouse_answers(config: PipelineConfig) -> CheckResult:
    """The first of ``inspect.check``'s warehouse checks, alone: one connection, within PROBE_TIMEOUT_SECONDS."""
    from pipeline.inspect import connect_warehouse

    result, conn = connect_warehouse(config, connect_timeout=PROBE_TIMEOUT_SECONDS)
    if conn is not None:
        conn.close()
    return result


def gate(pipeline: Pipeline, resources: Any) -> dg.SkipReason | None:
    """None when the warehouse answers; else the skip reason a sensor returns instead of its run requests."""
    try:
        result = warehouse_answers(resolved(pipeline, resources))
    except ConfigError as error:
        result = CheckResult("config", False, str(error))
    return None if result.ok else skip(result)


def skip(result: CheckResult) -> dg.SkipReason:
    return dg.SkipReason(f"{result.line()}; {RESUMES}")
