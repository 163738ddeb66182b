"""Pipelines found on disk: each config read for its structure, and the names Dagster knows it by.

Adding a pipeline is adding a YAML file to ``pipelines/`` (or ``$PIPELINE_CONFIG_DIR``); there is
no per-pipeline Python. At import time a config is read for its structure only: a
``{{ env.NAME }}`` whose variable is unset (and has no default) gets a placeholder, so
``dagster dev`` lists every asset without the secrets in its environment. Runs, checks and sensor
ticks read the config again with the real environment.

:class:`Pipeline` is what every builder of definitions (assets, checks, sensors, streams) takes, and
:mod:`pipeline.orchestration.factory` calls the builders: it lives here, below both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import dagster as dg
import yaml

from pipeline import config as pipeline_config
from pipeline import registry
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError
from pipeline.orchestration.translation import PipelineTranslator, Translation, freshness_policy

CONFIG_DIR_VARIABLE = "PIPELINE_CONFIG_DIR"
# Configs are the project's, never the installed package's: $PIPELINE_CONFIG_DIR, else pipelines/ in the
# directory Dagster runs from (the project directory: dg, `dagster dev` and workspace.yaml start there).
DEFAULT_CONFIG_DIR = Path("pipelines")
# How an S3 pipeline's loads are launched: the object sensor requests a run per new object, or it only
# registers the objects and the table's automation condition launches the loads.
TRIGGERS = ("sensor", "automation")
# The run tag the QueuedRunCoordinator limits concurrency by (dagster.yaml), one value per warehouse.
WAREHOUSE_TAG = "pipeline/warehouse"
# A continuous run (one per pipeline, for as long as it runs) carries this tag instead of WAREHOUSE_TAG:
# held by long runs, the per-warehouse run limit would starve every other run into that warehouse.
CONTINUOUS_TAG = "pipeline/continuous"

# Modes that rebuild the whole table from every object: the ledger restarts with each rebuild.
REBUILDING_MODES = ("replace", "truncate_insert")
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
    stream_mode: str = "micro_batch"  # exec.mode, or its $PIPELINE_<NAME>_MODE override (see stream_mode_of)
    translation: Translation = field(default_factory=Translation)
    keys: Mapping[str, dg.AssetKey] = field(default_factory=dict)  # by role, from the translator
    trigger: str = "sensor"  # an S3 pipeline's TRIGGERS entry
    section: tuple[str, ...] = ()  # where the config sits in ``path`` (a component's attributes.config)
    default_name: str | None = None  # the name when the config sets none: the component's, else the file's

    @property
    def name(self) -> str:
        return self.config.name

    def key(self, role: str) -> dg.AssetKey:
        return self.keys.get(role) or PipelineTranslator().get_asset_key(self, role)

    @property
    def objects_key(self) -> dg.AssetKey:
        return self.key("objects")

    @property
    def stream_key(self) -> dg.AssetKey:
        return self.key("stream")

    @property
    def table_key(self) -> dg.AssetKey:
        return self.key("table")

    @property
    def rejected_key(self) -> dg.AssetKey:
        return self.key("rejected")

    @property
    def freshness_policy(self) -> dg.FreshnessPolicy:
        return freshness_policy(self.translation, self.config.exec.expect_within)

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
        return self.translation.pool or f"warehouse/{self.warehouse}"

    @property
    def run_tags(self) -> dict[str, str]:
        return {WAREHOUSE_TAG: self.warehouse}

    @property
    def continuous_run_tags(self) -> dict[str, str]:
        return {CONTINUOUS_TAG: self.warehouse}

    def resolve(self, conninfo: str | None = None) -> PipelineConfig:
        """The config read again with the real environment.

        ``conninfo`` (the warehouse resource's) is the value of out.url's variable, so a resource
        set in code or tests wins over the environment and still goes through the config's checks.
        """
        environ: dict[str, str] = dict(os.environ)
        if conninfo is not None and self.conninfo_variable:
            environ[self.conninfo_variable] = conninfo
        resolved = self._load(environ)
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
        return self._load(environ)

    def _load(self, environ: Mapping[str, str]) -> PipelineConfig:
        return pipeline_config.load(self.path, environ=environ, section=self.section, name=self.default_name)


def config_dir() -> Path:
    return Path(os.environ.get(CONFIG_DIR_VARIABLE) or DEFAULT_CONFIG_DIR).absolute()


def discover(directory: Path | None = None) -> list[Pipeline]:
    """Every ``*.yml`` / ``*.yaml`` / ``*.yml.liquid`` config in ``directory`` (not ``_partials``), in name order."""
    directory = directory or config_dir()
    if not directory.is_dir():
        raise ConfigError("", f"no pipeline config directory at {directory} (set {CONFIG_DIR_VARIABLE})")
    configs = [*directory.glob("*.yml"), *directory.glob("*.yaml"), *directory.glob("*.yml.liquid")]
    # Two configs of one name are refused where the definitions are built (definitions_for), across components too.
    return [read_pipeline(path) for path in sorted(p for p in configs if not p.name.startswith("_"))]


def read_pipeline(path: Path, *, section: Sequence[str] = (), name: str | None = None) -> Pipeline:
    """Read ``path`` for its structure, without failing on unset environment variables.

    ``section`` and ``name`` as for ``pipeline.config.load``: a component's inline config and its name.
    """
    text = path.read_text(encoding="utf-8")
    structure = _load_structure(path, text, tuple(section), name)
    unset = pipeline_config.unset_variables(text, os.environ)
    placeholders = {name: _PLACEHOLDERS[0].format(name=name) for name in unset}
    raw = pipeline_config.select_section(
        yaml.safe_load(pipeline_config.read_text(path, {**os.environ, **placeholders})), section, str(path))
    output = raw.get("out")
    variable = pipeline_config.sole_variable(output.get("url") if isinstance(output, Mapping) else None)
    return Pipeline(
        path=path,
        config=structure,
        conninfo_variable=variable,
        warehouse=_warehouse_name(structure, variable),
        # S3: with in.incremental: false. Another store (local files) lists everything every tick anyway,
        # so its sensor always compares what it lists with the ledger: a file rewritten in place loads again.
        sweep=not registry.is_stream(structure.input) and (
            not registry.in_s3(structure.input) or not structure.input.incremental),
        stream_mode=stream_mode_of(structure),
        section=tuple(section),
        default_name=name,
    )


def stream_mode_variable(name: str) -> str:
    return f"PIPELINE_{name.upper()}_MODE"


def stream_mode_of(config: PipelineConfig) -> str:
    """``micro_batch`` or ``continuous``: ``$PIPELINE_<NAME>_MODE`` (to switch without an edit), else exec.mode."""
    variable = stream_mode_variable(config.name)
    mode = os.environ.get(variable)
    if mode:
        pipeline_config.check_mode(mode, config.input, f" (from ${variable})")  # exec.mode was checked on parsing
    return mode or config.exec.mode


def _load_structure(path: Path, text: str, section: tuple[str, ...] = (), name: str | None = None) -> PipelineConfig:
    unset = pipeline_config.unset_variables(text, os.environ)
    first_error: ConfigError | None = None
    for placeholder in _PLACEHOLDERS:
        environ = {**os.environ, **{name: placeholder.format(name=name) for name in unset}}
        try:
            return pipeline_config.load(path, environ=environ, section=section, name=name)
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
