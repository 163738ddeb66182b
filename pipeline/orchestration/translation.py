"""How a pipeline's assets are named and described in Dagster: a ``translation:`` block, or a translator class.

Every pipeline has up to four assets, each in a *role*:

- ``table``: the warehouse table it loads (key: the pipeline's name);
- ``objects`` (S3) or ``stream`` (Kinesis): the source, an external asset (key: ``<table key>_objects``
  or ``<table key>_stream``);
- ``rejected``: ``<table>_rejected``, the records the load refused (key: ``<table key>_rejected``).

A component's ``translation:`` block (``pipeline.EmbulkLoad``) sets, for every asset of the pipeline,
the key prefix, group, owners and tags; for the table, its key, description, kinds, freshness policy
and automation condition; and for the pipeline, its pool, its check schedule, which table checks run
with each object, and a retry policy for the load step. Python users subclass
``PipelineTranslator`` and override ``get_asset_key`` or ``get_asset_spec``; the defaults are the names
the pipeline has always had.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg

from pipeline.errors import ConfigError

ROLES = ("table", "objects", "stream", "rejected")
DEFAULT_CHECK_SCHEDULE = "0 * * * *"
# The table is stale when nothing has been loaded for a day, a warning after half of that, unless
# exec.expect_within or the translation's freshness say otherwise.
DEFAULT_FAIL_WITHIN = timedelta(hours=24)
DEFAULT_WARN_WITHIN = timedelta(hours=12)


@dataclass(frozen=True)
class Translation:
    """A resolved ``translation:`` block. ``None`` or empty means: the default."""

    key: dg.AssetKey | None = None  # the table asset's key; the others derive from it
    key_prefix: tuple[str, ...] = ()  # before every key of the pipeline
    group: str | None = None
    owners: tuple[str, ...] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    kinds: tuple[str, ...] | None = None  # the table's; its warehouse type by default
    description: str | None = None  # the table's
    fail_within: timedelta | None = None  # the table's freshness policy
    warn_within: timedelta | None = None
    automation_condition: dg.AutomationCondition | None = None  # the table's
    pool: str | None = None  # warehouse/<warehouse> by default
    check_schedule: str | None = DEFAULT_CHECK_SCHEDULE  # cron of the whole-table checks; None: no schedule
    object_checks: tuple[str, ...] = ()  # whole-table checks run with every object load as well
    retry_policy: dg.RetryPolicy | None = None  # of the load step


class PipelineTranslator:
    """Names and attributes of a pipeline's assets. Subclass it to change them in Python.

    ``get_asset_key`` is asked first, for every role, and everything that refers to an asset (deps,
    checks, jobs, sensors) uses its answer; ``get_asset_spec`` then changes the rest of each spec
    (group, owners, tags, kinds, description, freshness, automation) but not its key.
    """

    def get_asset_key(self, pipeline: Any, role: str) -> dg.AssetKey:
        translation: Translation = pipeline.translation
        table = translation.key or dg.AssetKey(pipeline.name)
        key = table if role == "table" else dg.AssetKey([*table.path[:-1], f"{table.path[-1]}_{role}"])
        return key.with_prefix(list(translation.key_prefix)) if translation.key_prefix else key

    def get_asset_spec(self, pipeline: Any, role: str, spec: dg.AssetSpec) -> dg.AssetSpec:
        translation: Translation = pipeline.translation
        changes: dict[str, Any] = {}
        if translation.group is not None:
            changes["group_name"] = translation.group
        if translation.owners is not None:
            changes["owners"] = list(translation.owners)
        if translation.tags:
            changes["tags"] = {**{k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")},
                               **translation.tags}
        if role == "table":
            if translation.kinds is not None:
                changes["kinds"] = set(translation.kinds)
            if translation.description is not None:
                changes["description"] = translation.description
            if translation.automation_condition is not None:
                changes["automation_condition"] = translation.automation_condition
        return spec.replace_attributes(**changes) if changes else spec


def object_loads() -> dg.AutomationCondition:
    """trigger: automation's default condition: load each object partition the sensor registered, once.

    Unlike ``eager()``, which takes what exists at its first evaluation as handled, an object registered
    before the automation sensor first ran is loaded too. A partition whose last run failed is left to run
    retries (dagster.yaml's run_retries) rather than requested every tick. (A re-uploaded object already has
    its partition: the object sensor's sweep requests its run.)
    """
    # No any_deps_missing: the objects asset is external, and the sensor registers only objects that exist.
    return (dg.AutomationCondition.missing() & ~dg.AutomationCondition.execution_failed()
            & ~dg.AutomationCondition.in_progress()).with_label("object_loads")


def freshness_policy(translation: Translation, expect_within: float | None) -> dg.FreshnessPolicy:
    """The table's freshness policy: the translation's windows, else exec.expect_within, else a day."""
    if translation.fail_within is not None:
        return dg.FreshnessPolicy.time_window(fail_window=translation.fail_within,
                                              warn_window=translation.warn_within)
    if expect_within is not None:
        return dg.FreshnessPolicy.time_window(fail_window=timedelta(seconds=max(expect_within, 60)))
    return dg.FreshnessPolicy.time_window(fail_window=DEFAULT_FAIL_WITHIN, warn_window=DEFAULT_WARN_WITHIN)


def check_names(names: Sequence[str], known: Sequence[str], where: str) -> tuple[str, ...]:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError("translation.checks.with_each_object",
                          f"{where}: {', '.join(unknown)} is not a table check of this pipeline "
                          f"(its checks: {', '.join(known) or 'none'})")
    return tuple(names)
