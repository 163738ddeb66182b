"""The Dagster definitions built from the pipelines found on disk.

The pipelines themselves (:class:`Pipeline`, :func:`read_pipeline`, :func:`discover`) are
:mod:`pipeline.orchestration.pipelines`'s, which the builders here import too; they are importable
from this module as well, where callers have always found them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path

import dagster as dg

from pipeline import registry
from pipeline.errors import ConfigError
from pipeline.orchestration import assets, checks, sensors
from pipeline.orchestration.check_jobs import check_job
from pipeline.orchestration.freshness import freshness_checks, freshness_sensors
from pipeline.orchestration.partitions import sync_partitions_job
from pipeline.orchestration.pipelines import (
    CONFIG_DIR_VARIABLE,
    DEFAULT_CONFIG_DIR,
    REBUILDING_MODES,
    TRIGGERS,
    WAREHOUSE_TAG,
    Pipeline,
    config_dir,
    discover,
    read_pipeline,
    stream_mode_of,
    stream_mode_variable,
)
from pipeline.orchestration.resources import KinesisResource, KmsResource, S3Resource, WarehouseResource
from pipeline.orchestration.streams import stream_pipeline_definitions
from pipeline.orchestration.translation import PipelineTranslator, Translation, check_names

__all__ = [
    "CONFIG_DIR_VARIABLE", "DEFAULT_CONFIG_DIR", "REBUILDING_MODES", "TRIGGERS", "WAREHOUSE_TAG",
    "Pipeline", "build_definitions", "config_dir", "definitions_for", "discover", "objects_pipeline_definitions",
    "prepare", "read_pipeline", "roles_of", "shared_resources", "stream_mode_of", "stream_mode_variable",
]


def build_definitions(directory: Path | None = None, *, translator: PipelineTranslator | None = None,
                      translation: Translation | None = None, trigger: str = "sensor") -> dg.Definitions:
    """The code location: every pipeline's assets, checks, sensors and jobs, and shared resources.

    ``pipeline.EmbulkLoadCollection`` calls this for a folder of configs; Python users may too, with a
    translator of their own.
    """
    return definitions_for([prepare(p, translator, translation, trigger) for p in discover(directory)], translator)


def prepare(pipeline: Pipeline, translator: PipelineTranslator | None = None,
            translation: Translation | None = None, trigger: str = "sensor") -> Pipeline:
    """``pipeline`` with its translation, its trigger, and its keys as the translator names them."""
    if trigger not in TRIGGERS:
        raise ConfigError("trigger", f"{trigger!r} is not one of {', '.join(TRIGGERS)}")
    if trigger != "sensor" and registry.is_stream(pipeline.config.input):
        raise ConfigError("trigger", f"{pipeline.name} reads a Kinesis stream, whose loads its stream sensor or "
                                     "continuous job drives; trigger: automation is for S3 pipelines")
    prepared = replace(pipeline, translation=translation or Translation(), trigger=trigger)
    translator = translator or PipelineTranslator()
    return replace(prepared, keys={role: translator.get_asset_key(prepared, role) for role in roles_of(prepared)})


def roles_of(pipeline: Pipeline) -> tuple[str, ...]:
    source = "stream" if registry.is_stream(pipeline.config.input) else "objects"
    return ("table", source, "rejected")


def definitions_for(pipelines: list[Pipeline], translator: PipelineTranslator | None = None) -> dg.Definitions:
    """The definitions of ``pipelines`` (already prepared), with the resources they share."""
    translator = translator or PipelineTranslator()
    parts: list[dg.Definitions] = []
    names: dict[str, Path] = {}
    for pipeline in pipelines:
        if pipeline.name in names:
            raise ConfigError("name", f"{pipeline.path} and {names[pipeline.name]} both define pipeline "
                                      f"{pipeline.name!r}")
        names[pipeline.name] = pipeline.path
        if not registry.in_dagster(pipeline.config.input):
            raise ConfigError("in.type", f"{pipeline.path}: {pipeline.config.input.type} inputs run with `pipeline "
                                         "run` (and guess, preview, check); the Dagster definitions do not model "
                                         "them")
        built = (stream_pipeline_definitions(pipeline) if registry.is_stream(pipeline.config.input)
                 else objects_pipeline_definitions(pipeline))
        # The default translator with no translation changes nothing: skip the pass over every spec.
        if type(translator) is not PipelineTranslator or pipeline.translation != Translation():
            roles = {key: role for role, key in pipeline.keys.items()}
            built = built.map_asset_specs(func=partial(_translated_spec, translator, pipeline, roles))
        parts.append(built)
        parts.append(dg.Definitions(jobs=[check_job(pipeline)]))
    # A run is one object and its checks: one process is faster than a process per step.
    return dg.Definitions.merge(*parts, dg.Definitions(resources=shared_resources(pipelines),
                                                       executor=dg.in_process_executor))


def _translated_spec(translator: PipelineTranslator, pipeline: Pipeline, roles: Mapping[dg.AssetKey, str],
                     spec: dg.AssetSpec) -> dg.AssetSpec:
    return translator.get_asset_spec(pipeline, roles.get(spec.key, "table"), spec)


_RESOURCES: dict[tuple[str, str | None], object] = {}


def shared_resources(pipelines: list[Pipeline]) -> dict[str, object]:
    """The resources ``pipelines`` need, one instance per key in the process.

    Components merge their definitions, and Dagster takes two resources under one key as the same only
    when they are the same object: every component asks here, so they are.
    """
    def shared(key: str, variable: str | None, make) -> object:
        return _RESOURCES.setdefault((key, variable), make())

    resources: dict[str, object] = {
        "s3": shared("s3", None, S3Resource), "kms": shared("kms", None, KmsResource),
        "kinesis": shared("kinesis", None, KinesisResource)}
    for pipeline in pipelines:
        variable = pipeline.conninfo_variable
        resources[pipeline.warehouse_resource_key] = shared(
            pipeline.warehouse_resource_key, variable,
            lambda v=variable: WarehouseResource(conninfo=dg.EnvVar(v) if v else None))
    return resources


def objects_pipeline_definitions(pipeline: Pipeline) -> dg.Definitions:
    """A pipeline of objects (S3, local files): objects and table assets, checks, the load job and its sensor."""
    objects = assets.objects_spec(pipeline)
    table = assets.table_asset(pipeline)
    table_checks = checks.table_checks(pipeline)
    with_each = check_names(pipeline.translation.object_checks, [c.check_key.name for c in table_checks],
                            f"{pipeline.name}: translation.checks.with_each_object")
    load_job = dg.define_asset_job(
        f"{pipeline.name}_load",
        selection=dg.AssetSelection.assets(pipeline.table_key).without_checks()
        | dg.AssetSelection.checks(checks.object_check_key(pipeline),
                                   *[c.check_key for c in table_checks if c.check_key.name in with_each]),
        tags=pipeline.run_tags,
        description=f"Load one object (one partition) into {pipeline.config.output.qualified_table}.",
    )
    check_job = dg.define_asset_job(
        f"{pipeline.name}_table_checks",
        selection=dg.AssetSelection.checks(*[c.check_key for c in table_checks]),
        tags=pipeline.run_tags,
        description=f"Whole-table checks of {pipeline.config.output.qualified_table}; each scans the table, "
                    "so they run on a schedule rather than with every object.",
    )
    schedule = pipeline.translation.check_schedule
    automation = [dg.AutomationConditionSensorDefinition(
        f"{pipeline.name}_automation", target=dg.AssetSelection.assets(pipeline.table_key),
        default_status=sensors.default_status(), minimum_interval_seconds=sensors.MINIMUM_INTERVAL_SECONDS,
        description=f"Evaluates the automation condition of {pipeline.table_key.to_user_string()}: launches the "
                    f"load of each object {pipeline.name}_sensor registers (trigger: automation).",
    )] if pipeline.trigger == "automation" else []
    jobs: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = [
        load_job, check_job, sync_partitions_job(pipeline)]
    if pipeline.stream_mode == "continuous":  # in.notifications: one long run follows the bucket's queue
        from pipeline.orchestration import events

        follow_job = events.continuous_job(pipeline)
        jobs.append(follow_job)
        watch = events.follow_sensor(pipeline, follow_job)
    else:
        watch = sensors.object_sensor(pipeline, load_job)
    return dg.Definitions(
        assets=[objects, table, assets.rejected_spec(pipeline)],
        asset_checks=table_checks + freshness_checks(pipeline),
        jobs=jobs,
        sensors=[watch, *automation, *freshness_sensors(pipeline)],
        schedules=[dg.ScheduleDefinition(
            name=f"{pipeline.name}_table_checks_schedule",
            job=check_job,
            cron_schedule=schedule,
            default_status=dg.DefaultScheduleStatus(sensors.default_status().value),
        )] if schedule else [],
    )

