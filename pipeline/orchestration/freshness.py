"""``freshness``: with ``exec.expect_within``, the table's check that something new arrived in time.

"Something new" is read from the pipeline's own state in the warehouse, so loads by ``pipeline run``
count as much as loads launched by Dagster:

- an S3 pipeline: the newest commit in the object ledger (a new object version loaded);
- a Kinesis pipeline: the newest move of a shard checkpoint (new records committed).

The check passes while that is younger than ``expect_within``. ``<pipeline>_freshness_sensor``
evaluates it every few minutes with one indexed query and reports the result to Dagster when it
changes (no run is launched), so a source that goes quiet fails the check even though nothing runs.
It can also be executed from the UI like any other check.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import psycopg

from pipeline import registry
from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError
from pipeline.orchestration.pipelines import Pipeline

FRESHNESS_CHECK = "freshness"


@dataclass(frozen=True)
class Freshness:
    """One judgement: whether the newest arrival is recent enough, and what it was."""

    passed: bool
    description: str
    newest: str | None  # the object key or shard that arrived last
    newest_at: datetime | None
    age_seconds: float | None
    expect_within: float

    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"expect_within_seconds": self.expect_within}
        if self.newest_at is not None:
            metadata["newest_arrival"] = dg.MetadataValue.timestamp(self.newest_at)
            metadata["age_seconds"] = round(self.age_seconds or 0.0, 1)
            metadata["newest"] = self.newest or ""
        return metadata

    def evaluation(self, pipeline: Pipeline) -> dg.AssetCheckEvaluation:
        return dg.AssetCheckEvaluation(asset_key=pipeline.table_key, check_name=FRESHNESS_CHECK, passed=self.passed,
                                       description=self.description, metadata=self.metadata())


def judge(conn: psycopg.Connection, config: PipelineConfig, *, now: datetime | None = None) -> Freshness:
    """How long ago something new last reached ``config``'s table, against ``exec.expect_within``."""
    from pipeline.warehouse import state

    limit = config.exec.expect_within
    if limit is None:
        raise PipelineError(f"{config.name}: exec.expect_within is not set, so there is no freshness to judge")
    out = config.output
    now = now or datetime.now(UTC)
    if registry.is_stream(config.input):
        stream = config.input.stream
        newest = state.newest_checkpoint(conn, out.state, config.name, stream)
        what, source = "no new record", f"Kinesis stream {stream}"
    else:
        newest = state.newest_load(conn, out.state, config.name)
        what, source = "no new object", config.input.uri
    wanted = f"exec.expect_within is {span(limit)}"
    if newest is None:
        return Freshness(False, f"nothing from {source} has been loaded into {out.qualified_table} yet ({wanted})",
                         None, None, None, limit)
    name, at = newest
    age = max((now - at).total_seconds(), 0.0)
    where = (f"the last records were committed from shard {name}" if registry.is_stream(config.input)
             else f"the newest load was {config.input.object_uri(name)}")
    when = f"{where} at {at.astimezone(UTC).isoformat(timespec='seconds')}, {span(age)} ago"
    if age > limit:
        return Freshness(False, f"{what} from {source} for {span(age)} ({wanted}): {when}", name, at, age, limit)
    return Freshness(True, f"fresh: {when} ({wanted})", name, at, age, limit)


def span(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 5 min``, ``3 d 4 h``."""
    whole = round(seconds)
    if whole < 120:
        return f"{whole} s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if whole < 7200:
        return f"{minutes} min"
    if whole < 172800:
        return f"{hours} h" + (f" {minutes % 60} min" if minutes % 60 else "")
    return f"{days} d" + (f" {hours % 24} h" if hours % 24 else "")


def freshness_check(pipeline: Pipeline) -> dg.AssetChecksDefinition:
    """The check as Dagster runs it from the UI or a job: one query on the pipeline's state."""
    limit = pipeline.config.exec.expect_within
    assert limit is not None

    @dg.asset_check(
        asset=pipeline.table_key, name=FRESHNESS_CHECK,
        description=f"Something new reached the table within the last {span(limit)} (exec.expect_within): "
                    "a new object version in the ledger, or new records past a shard checkpoint. Evaluated by "
                    f"{pipeline.name}_freshness_sensor as time passes.",
        required_resource_keys={pipeline.warehouse_resource_key},
    )
    def freshness(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
        config = pipeline.resolve(warehouse.conninfo)
        with warehouse.connect(config.output) as conn:
            judged = judge(conn, config)
        return dg.AssetCheckResult(passed=judged.passed, description=judged.description, metadata=judged.metadata())

    return freshness


def sensor_interval(expect_within: float) -> int:
    """A tenth of the allowance, between 30 s and 5 min: a quiet source is reported within about 10%."""
    return int(min(max(expect_within / 10, 30), 300))


def freshness_sensor(pipeline: Pipeline) -> dg.SensorDefinition:
    """``<pipeline>_freshness_sensor``: judge freshness each tick; report a result when it changes."""
    from pipeline.orchestration.sensors import default_status

    limit = pipeline.config.exec.expect_within
    assert limit is not None

    @dg.sensor(
        name=f"{pipeline.name}_freshness_sensor",
        minimum_interval_seconds=sensor_interval(limit),
        default_status=default_status(),
        description=f"Judges the {FRESHNESS_CHECK} check of {pipeline.config.output.qualified_table} (nothing new "
                    f"for {span(limit)} fails it) and reports each change; launches no runs.",
        required_resource_keys={pipeline.warehouse_resource_key},
    )
    def watch_freshness(context: dg.SensorEvaluationContext, **_resources: object) -> dg.SensorResult:
        warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
        try:
            config = pipeline.resolve(warehouse.conninfo)
            with warehouse.connect(config.output) as conn:
                judged = judge(conn, config)
        except (PipelineError, psycopg.Error) as error:
            # Not knowing is not stale: the load sensors and checks report an unreachable warehouse.
            return dg.SensorResult(skip_reason=f"freshness not judged this tick: {error}", cursor=context.cursor)
        before = json.loads(context.cursor) if context.cursor else {}
        cursor = json.dumps({"passed": judged.passed})
        if before.get("passed") == judged.passed:
            return dg.SensorResult(skip_reason=f"unchanged: {judged.description}", cursor=cursor)
        (context.log.info if judged.passed else context.log.warning)(judged.description)
        return dg.SensorResult(asset_events=[judged.evaluation(pipeline)], cursor=cursor)

    return watch_freshness


def freshness_checks(pipeline: Pipeline) -> list[dg.AssetChecksDefinition]:
    """The ``freshness`` check, when the config sets ``exec.expect_within``."""
    return [freshness_check(pipeline)] if pipeline.config.exec.expect_within is not None else []


def freshness_sensors(pipeline: Pipeline) -> list[dg.SensorDefinition]:
    return [freshness_sensor(pipeline)] if pipeline.config.exec.expect_within is not None else []
