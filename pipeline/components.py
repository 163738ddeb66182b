"""Dagster Components: one pipeline in a ``defs.yaml`` (``pipeline.EmbulkLoad``), or a folder of configs.

``dg list components`` shows both (registered under the ``dagster_dg_cli.registry_modules`` entry
point), ``dg scaffold defs pipeline.EmbulkLoad NAME --seed s3://bucket/prefix/`` writes one from a
guess, and ``dg check defs`` validates it as ``pipeline run`` does, naming the line of a bad key.

    type: pipeline.EmbulkLoad
    attributes:
      path: book_order.yml           # a config beside this defs.yaml, or inline under `config:`
      trigger: sensor                # or automation: the sensor registers objects, a condition loads them
      translation:
        key_prefix: [warehouse]
        group: sales
        owners: [team:data]
        checks: {schedule: "0 * * * *", with_each_object: [primary_key_unique]}

The engine never imports this module; it is Dagster's side of the product.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import dagster as dg
from dagster.components import (
    Component,
    ComponentLoadContext,
    Resolvable,
    Resolver,
    Scaffolder,
    ScaffoldRequest,
    scaffold_with,
)
from pydantic import BaseModel, ConfigDict, Field

from pipeline.config import identifier
from pipeline.errors import ConfigError, PipelineError
from pipeline.orchestration import factory
from pipeline.orchestration.translation import DEFAULT_CHECK_SCHEDULE, PipelineTranslator, Translation

CONFIG_SECTION = ("attributes", "config")


# --------------------------------------------------------------------------- translation block


@dataclass
class FreshnessAttributes(Resolvable):
    """The table's freshness policy: stale after ``fail_within`` without a load, a warning after ``warn_within``."""

    fail_within: str
    warn_within: str | None = None


@dataclass
class CheckAttributes(Resolvable):
    """When the whole-table checks run: on ``schedule`` (cron, or null for none) and with every object load."""

    schedule: str | None = DEFAULT_CHECK_SCHEDULE
    with_each_object: Sequence[str] = ()


@dataclass
class RetryAttributes(Resolvable):
    """Dagster's retry policy for the load step: a failed load is tried again in the same run."""

    max_retries: int = 1
    delay: str | None = None  # a duration: 30s, 5m
    backoff: Literal["linear", "exponential"] | None = None


@dataclass
class TranslationAttributes(Resolvable):
    """How the pipeline's assets are named and described (see ``pipeline.orchestration.translation``)."""

    key: str | None = None  # the table's asset key, slash-separated: warehouse/book_order
    key_prefix: str | Sequence[str] | None = None
    group: str | None = None
    owners: Sequence[str] | None = None
    tags: Mapping[str, str] | None = None
    kinds: Sequence[str] | None = None
    description: str | None = None
    freshness: FreshnessAttributes | None = None
    automation_condition: Annotated[
        dg.AutomationCondition | None,
        Resolver.default(model_field_type=str | None,
                         description="The table's condition, e.g. \"{{ automation_condition.eager() }}\"; "
                                     "with trigger: automation it launches the loads (by default each "
                                     "registered object's, once)."),
    ] = None
    pool: str | None = None
    checks: CheckAttributes | None = None
    retry_policy: RetryAttributes | None = None

    def resolved(self, where: str) -> Translation:
        from datetime import timedelta

        from pipeline.config import parse_duration

        fail = warn = None
        if self.freshness is not None:
            fail = timedelta(seconds=parse_duration(self.freshness.fail_within, f"{where}.freshness.fail_within"))
            if self.freshness.warn_within is not None:
                warn = timedelta(seconds=parse_duration(self.freshness.warn_within, f"{where}.freshness.warn_within"))
        retry = None
        if self.retry_policy is not None:
            delay = self.retry_policy.delay
            retry = dg.RetryPolicy(
                max_retries=self.retry_policy.max_retries,
                delay=None if delay is None else parse_duration(delay, f"{where}.retry_policy.delay"),
                backoff=dg.Backoff(self.retry_policy.backoff.upper()) if self.retry_policy.backoff else None)
        prefix = [self.key_prefix] if isinstance(self.key_prefix, str) else list(self.key_prefix or ())
        checks = self.checks or CheckAttributes()
        return Translation(
            key=dg.AssetKey.from_user_string(self.key) if self.key else None,
            key_prefix=tuple(prefix), group=self.group,
            owners=tuple(self.owners) if self.owners is not None else None,
            tags=dict(self.tags or {}), kinds=tuple(self.kinds) if self.kinds is not None else None,
            description=self.description, fail_within=fail, warn_within=warn,
            automation_condition=self.automation_condition, pool=self.pool,
            check_schedule=checks.schedule, object_checks=tuple(checks.with_each_object), retry_policy=retry)


def _raw(context: Any, value: Any) -> Any:
    """The inline config as written: its ``{{ env.NAME }}`` are the pipeline's to read at run time."""
    return value


# The inline config's JSON schema, for `dg check yaml` and editors: its shape only (in and out, each with a
# type). Values are the engine's to judge: `dg check defs`, like `pipeline run`, names a bad one and its line.
_OPEN = ConfigDict(extra="allow")


class _InSchema(BaseModel):
    model_config = _OPEN
    type: str


class _OutSchema(BaseModel):
    model_config = _OPEN
    type: str


class _ConfigSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str | None = None
    in_: _InSchema = Field(alias="in")
    filters: list[dict[str, Any]] | None = None
    exec: dict[str, Any] | None = None
    out: _OutSchema


# --------------------------------------------------------------------------- scaffolding


class ScaffoldParams(BaseModel):
    seed: str = Field(description="s3://bucket/prefix/ to guess from, or a seed config file (as `pipeline guess`)")
    table: str | None = Field(default=None, description="the target table, schema.table (default: public.NAME)")
    target: Literal["hologres", "redshift", "postgresql"] = Field(default="hologres", description="out.type")
    url_variable: str | None = Field(default=None, description="the variable holding the warehouse URL "
                                                               "(default: HOLOGRES_URL, REDSHIFT_URL, ...)")
    mode: str = Field(default="insert_direct", description="out.mode")


class EmbulkLoadScaffolder(Scaffolder[ScaffoldParams]):
    """Guesses the parser from a sample of the data and writes ``defs.yaml`` and a complete config beside it."""

    @classmethod
    def get_scaffold_params(cls) -> type[ScaffoldParams]:
        return ScaffoldParams

    def scaffold(self, request: ScaffoldRequest[ScaffoldParams]) -> None:
        from pipeline.commands.guess import scaffold_component

        if request.params is None:
            raise ConfigError("seed", "pass --seed s3://bucket/prefix/ (or a seed config file) to guess from")
        params = request.params
        try:
            written = scaffold_component(Path(request.target_path), type_name=request.type_name, seed=params.seed,
                                         table=params.table, target=params.target,
                                         url_variable=params.url_variable, mode=params.mode)
        except PipelineError as error:
            import click

            target = Path(request.target_path)
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()  # dg made it for us: leave nothing behind, so the same command can run again

            # dg prints this as a one-line error, not a traceback: the seed or the bucket is the user's to fix.
            raise click.ClickException(str(error)) from None
        for path in written:
            print(f"wrote {path}")


# --------------------------------------------------------------------------- the components


@scaffold_with(EmbulkLoadScaffolder)
@dataclass
class EmbulkLoad(Component, Resolvable):
    """One pipeline from an Embulk-style config: a file beside this ``defs.yaml`` (``path``), or ``config`` inline.

    Its assets, checks, jobs and sensors are those of a config in ``pipelines/``; ``translation``
    changes their keys and attributes, and ``trigger: automation`` launches S3 loads by declarative
    automation instead of by the object sensor.
    """

    path: str | None = None
    config: Annotated[
        Mapping[str, Any] | None,
        Resolver(_raw, model_field_type=_ConfigSchema,
                 description="The config inline (in, filters, exec, out), as in a config file."),
    ] = None
    name: str | None = None  # the pipeline's name; default: the config's `name:`, else the file or folder name
    trigger: Literal["sensor", "automation"] = "sensor"
    translation: TranslationAttributes | None = None

    def get_translator(self) -> PipelineTranslator:
        """Override in a subclass to name and describe the assets in Python."""
        return PipelineTranslator()

    def pipeline(self, context: ComponentLoadContext) -> factory.Pipeline:
        where = str(context.path / "defs.yaml")
        if (self.path is None) == (self.config is None):
            raise ConfigError("attributes", f"{where}: give the config as `path:` (a file) or `config:` (inline), "
                                            "one of the two")
        if self.path is not None:
            path = Path(self.path)
            path = path if path.is_absolute() else context.path / path
            pipeline = factory.read_pipeline(path, name=self.name)
        else:
            pipeline = factory.read_pipeline(_defs_file(context), section=CONFIG_SECTION,
                                             name=self.name or identifier(context.path.name))
        translation = self.translation.resolved("translation") if self.translation else None
        return factory.prepare(pipeline, self.get_translator(), translation, self.trigger)

    def build_defs(self, context: ComponentLoadContext) -> dg.Definitions:
        try:
            return factory.definitions_for([self.pipeline(context)], self.get_translator())
        except PipelineError as error:
            raise dg.DagsterInvalidDefinitionError(str(error)) from None


@dataclass
class EmbulkLoadCollection(Component, Resolvable):
    """Every config in a folder becomes a pipeline: ``*.yml``, ``*.yaml``, ``*.yml.liquid`` (not ``_partials``).

    ``directory`` is relative to this ``defs.yaml``; without it, ``$PIPELINE_CONFIG_DIR``, else
    ``pipelines/`` in the project's root directory (an installed package's: where Dagster runs), never
    the installed package.
    """

    directory: str | None = None
    trigger: Literal["sensor", "automation"] = "sensor"
    translation: TranslationAttributes | None = None

    def get_translator(self) -> PipelineTranslator:
        return PipelineTranslator()

    def build_defs(self, context: ComponentLoadContext) -> dg.Definitions:
        import os

        if self.directory is not None:
            directory = Path(self.directory)
            directory = directory if directory.is_absolute() else context.path / directory
        elif os.environ.get(factory.CONFIG_DIR_VARIABLE):
            directory = factory.config_dir()
        else:
            # The project's, wherever Dagster runs from: a code server's working directory is not the project.
            directory = Path(context.project_root) / factory.DEFAULT_CONFIG_DIR
        translation = self.translation.resolved("translation") if self.translation else None
        try:
            return factory.build_definitions(directory, translator=self.get_translator(), translation=translation,
                                             trigger=self.trigger)
        except PipelineError as error:
            raise dg.DagsterInvalidDefinitionError(str(error)) from None


def _defs_file(context: ComponentLoadContext) -> Path:
    for name in ("defs.yaml", "defs.yml", "component.yaml"):
        if (context.path / name).is_file():
            return context.path / name
    raise ConfigError("", f"no defs.yaml in {context.path}")
