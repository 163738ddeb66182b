"""Pipelines found on disk, and the Dagster definitions built from each of them.

Adding a pipeline is adding a YAML file to ``pipelines/`` (or ``$PIPELINE_CONFIG_DIR``); there is
no per-pipeline Python. At import time a config is read for its structure only: a
``{{ env.NAME }}`` whose variable is unset (and has no default) gets a placeholder, so
``dagster dev`` lists every asset without the secrets in its environment. Runs, checks and sensor
ticks read the config again with the real environment.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg

from pipeline import config as pipeline_config
from pipeline.config import KinesisInputConfig, PipelineConfig, S3InputConfig
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_DIR_VARIABLE = "PIPELINE_CONFIG_DIR"
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "pipelines"
# The run tag the QueuedRunCoordinator limits concurrency by (dagster.yaml), one value per warehouse.
WAREHOUSE_TAG = "pipeline/warehouse"

# Modes that rebuild the whole table from every object: the ledger restarts with each rebuild.
REBUILDING_MODES = ("replace", "truncate_insert")
# How a stream pipeline runs: a bounded run per sensor request, or one long run the sensor keeps alive.
STREAM_MODES = ("micro_batch", "continuous")
# Placeholders for unset variables: first shaped like a URL (out.url is the usual one), then a word.
_PLACEHOLDERS = ("postgresql://unset.invalid/{name}", "unset-{name}")


@dataclass(frozen=True)
class Pipeline:
    """One config file and the names Dagster knows it by."""

    path: Path
    config: PipelineConfig  # structure only: unset variables hold placeholders
    conninfo_variable: str | None  # the variable out.url reads, when it is exactly one
    warehouse: str  # names the target in run tags, pools and resource keys
    sweep: bool  # in.incremental: false, so the sensor also sweeps the prefix for changed objects
    stream_mode: str = "micro_batch"  # a Kinesis pipeline's STREAM_MODES entry (see stream_mode_of)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def objects_key(self) -> dg.AssetKey:
        return dg.AssetKey(f"{self.name}_objects")

    @property
    def stream_key(self) -> dg.AssetKey:
        return dg.AssetKey(f"{self.name}_stream")

    @property
    def table_key(self) -> dg.AssetKey:
        return dg.AssetKey(self.name)

    @property
    def partitions_name(self) -> str:
        return f"{self.name}_objects"

    @property
    def partitions_def(self) -> dg.DynamicPartitionsDefinition:
        return dg.DynamicPartitionsDefinition(name=self.partitions_name)

    @property
    def warehouse_resource_key(self) -> str:
        return f"{self.warehouse}_warehouse"

    @property
    def pool(self) -> str:
        return f"warehouse/{self.warehouse}"

    @property
    def run_tags(self) -> dict[str, str]:
        return {WAREHOUSE_TAG: self.warehouse}

    def resolve(self, conninfo: str | None = None) -> PipelineConfig:
        """The config read again with the real environment.

        ``conninfo`` (the warehouse resource's) is the value of out.url's variable, so a resource
        set in code or tests wins over the environment and still goes through the config's checks.
        """
        environ: dict[str, str] = dict(os.environ)
        if conninfo is not None and self.conninfo_variable:
            environ[self.conninfo_variable] = conninfo
        resolved = pipeline_config.load(self.path, environ=environ)
        if conninfo is not None and not self.conninfo_variable:
            resolved = replace(resolved, output=replace(resolved.output, conninfo=conninfo))
        return resolved

    def resolve_source(self) -> PipelineConfig:
        """The config with the real environment, for work that never touches the warehouse.

        Listing S3 must not need the warehouse's secret, so out.url's variable may be unset here.
        """
        environ: dict[str, str] = dict(os.environ)
        if self.conninfo_variable and self.conninfo_variable not in environ:
            environ[self.conninfo_variable] = _PLACEHOLDERS[0].format(name=self.conninfo_variable)
        return pipeline_config.load(self.path, environ=environ)


def config_dir() -> Path:
    return Path(os.environ.get(CONFIG_DIR_VARIABLE) or DEFAULT_CONFIG_DIR)


def discover(directory: Path | None = None) -> list[Pipeline]:
    """Every ``*.yml`` / ``*.yaml`` / ``*.yml.liquid`` config in ``directory`` (not ``_partials``), in name order."""
    directory = directory or config_dir()
    if not directory.is_dir():
        raise ConfigError("", f"no pipeline config directory at {directory} (set {CONFIG_DIR_VARIABLE})")
    pipelines: dict[str, Pipeline] = {}
    configs = [*directory.glob("*.yml"), *directory.glob("*.yaml"), *directory.glob("*.yml.liquid")]
    for path in sorted(p for p in configs if not p.name.startswith("_")):
        pipeline = read_pipeline(path)
        if pipeline.name in pipelines:
            raise ConfigError("name", f"{path} and {pipelines[pipeline.name].path} both define "
                                      f"pipeline {pipeline.name!r}")
        pipelines[pipeline.name] = pipeline
    return list(pipelines.values())


def read_pipeline(path: Path) -> Pipeline:
    """Read ``path`` for its structure, without failing on unset environment variables."""
    text = path.read_text(encoding="utf-8")
    structure = _load_structure(path, text)
    unset = pipeline_config.unset_variables(text, os.environ)
    placeholders = {name: _PLACEHOLDERS[0].format(name=name) for name in unset}
    raw = pipeline_config.load_yaml(pipeline_config.read_text(path, {**os.environ, **placeholders}), str(path))
    output = raw.get("out") if isinstance(raw.get("out"), Mapping) else {}
    variable = pipeline_config.sole_variable(output.get("url"))
    return Pipeline(
        path=path,
        config=structure,
        conninfo_variable=variable,
        warehouse=_warehouse_name(structure, variable),
        sweep=isinstance(structure.input, S3InputConfig) and not structure.input.incremental,
        stream_mode=stream_mode_of(structure),
    )


def stream_mode_variable(name: str) -> str:
    return f"PIPELINE_{name.upper()}_MODE"


def stream_mode_of(config: PipelineConfig) -> str:
    """``micro_batch`` or ``continuous``: ``$PIPELINE_<NAME>_MODE`` (to switch without an edit), else exec.mode."""
    mode = os.environ.get(stream_mode_variable(config.name)) or config.exec.mode
    if mode not in STREAM_MODES:
        raise ConfigError("exec.mode", f"{mode!r} is not one of {', '.join(STREAM_MODES)} "
                                       f"(from ${stream_mode_variable(config.name)})")
    return mode


def _load_structure(path: Path, text: str) -> PipelineConfig:
    unset = pipeline_config.unset_variables(text, os.environ)
    first_error: ConfigError | None = None
    for placeholder in _PLACEHOLDERS:
        environ = {**os.environ, **{name: placeholder.format(name=name) for name in unset}}
        try:
            return pipeline_config.load(path, environ=environ)
        except ConfigError as error:
            if not unset:
                raise
            first_error = first_error or error
    assert first_error is not None
    raise ConfigError(first_error.path, f"{first_error.message} (in {path}, with placeholders for the unset "
                                        f"variables {', '.join(sorted(unset))})")


def _warehouse_name(config: PipelineConfig, variable: str | None) -> str:
    if variable:
        name = re.sub(r"_(URL|URI|DSN|CONNINFO)$", "", variable, flags=re.IGNORECASE)
    else:
        from psycopg.conninfo import conninfo_to_dict

        host = str(conninfo_to_dict(config.output.conninfo).get("host") or "")
        name = f"{config.output.type}_{host}" if host else config.output.type
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or config.output.type


# --------------------------------------------------------------------------- definitions


def build_definitions(directory: Path | None = None) -> dg.Definitions:
    """The code location: every pipeline's assets, checks, sensors and jobs, and shared resources."""
    from pipeline.defs.check_jobs import check_job
    from pipeline.defs.resources import KinesisResource, KmsResource, S3Resource, WarehouseResource
    from pipeline.defs.streams import stream_pipeline_definitions

    resources: dict[str, object] = {"s3": S3Resource(), "kms": KmsResource(), "kinesis": KinesisResource()}
    parts: list[dg.Definitions] = []
    for pipeline in discover(directory):
        variable = pipeline.conninfo_variable
        resources[pipeline.warehouse_resource_key] = WarehouseResource(
            conninfo=dg.EnvVar(variable) if variable else None)
        if isinstance(pipeline.config.input, KinesisInputConfig):
            parts.append(stream_pipeline_definitions(pipeline))
        else:
            parts.append(s3_pipeline_definitions(pipeline))
        parts.append(dg.Definitions(jobs=[check_job(pipeline)]))
    # A run is one object and its checks: one process is faster than a process per step.
    return dg.Definitions.merge(*parts, dg.Definitions(resources=resources, executor=dg.in_process_executor))


def s3_pipeline_definitions(pipeline: Pipeline) -> dg.Definitions:
    """An S3 pipeline: objects and table assets, checks, the load job and its sensor."""
    from pipeline.defs import assets, checks, sensors

    objects = assets.objects_spec(pipeline)
    table = assets.table_asset(pipeline)
    table_checks = checks.table_checks(pipeline)
    load_job = dg.define_asset_job(
        f"{pipeline.name}_load",
        selection=dg.AssetSelection.assets(pipeline.table_key).without_checks()
        | dg.AssetSelection.checks(checks.object_check_key(pipeline)),
        tags=pipeline.run_tags,
        description=f"Load one S3 object (one partition) into {pipeline.config.output.qualified_table}.",
    )
    check_job = dg.define_asset_job(
        f"{pipeline.name}_table_checks",
        selection=dg.AssetSelection.checks(*[c.check_key for c in table_checks]),
        tags=pipeline.run_tags,
        description=f"Whole-table checks of {pipeline.config.output.qualified_table}; each scans the table, "
                    "so they run on a schedule rather than with every object.",
    )
    return dg.Definitions(
        assets=[objects, table],
        asset_checks=table_checks + freshness_checks(pipeline),
        jobs=[load_job, check_job],
        sensors=[sensors.object_sensor(pipeline, load_job), *freshness_sensors(pipeline)],
        schedules=[dg.ScheduleDefinition(
            name=f"{pipeline.name}_table_checks_schedule",
            job=check_job,
            cron_schedule="0 * * * *",
            default_status=dg.DefaultScheduleStatus(sensors.default_status().value),
        )],
    )


def freshness_checks(pipeline: Pipeline) -> list[dg.AssetChecksDefinition]:
    """The ``freshness`` check, when the config sets ``exec.expect_within``."""
    from pipeline.defs.freshness import freshness_check

    return [freshness_check(pipeline)] if pipeline.config.exec.expect_within is not None else []


def freshness_sensors(pipeline: Pipeline) -> list[dg.SensorDefinition]:
    from pipeline.defs.freshness import freshness_sensor

    return [freshness_sensor(pipeline)] if pipeline.config.exec.expect_within is not None else []
