"""Data-quality checks of an S3 pipeline's table.

``rows_accounted_for`` runs with every object load (it is part of the load's step and costs a few
indexed lookups). The whole-table checks scan the table, so they run from their own job on a
schedule, or when selected in the UI, instead of once per object.

The queries at the bottom take a psycopg connection and know nothing of Dagster.
"""


from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
import psycopg

from pipeline import registry
from pipeline.config import OutputConfig, PipelineConfig
from pipeline.orchestration.pipelines import REBUILDING_MODES, Pipeline
from pipeline.warehouse.quality import (
    duplicate_keys,
    ledger_row_total,
    null_counts,
    rejected_count,
    required_columns,
    table_exists,
    table_row_count,
)

OBJECT_CHECK = "rows_accounted_for"
# How many offending key values a failed check shows.


def object_check_key(pipeline: Pipeline) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(pipeline.table_key, OBJECT_CHECK)


def object_check_spec(pipeline: Pipeline) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        OBJECT_CHECK,
        asset=pipeline.table_key,
        description="Every record of the loaded object is accounted for: records parsed = rows loaded (ledger) "
                    "+ rows rejected, and the rejected table holds as many rows for the object as the ledger "
                    "says were rejected.",
    )


def evaluate_object(conn: psycopg.Connection, pipeline: Pipeline, config: PipelineConfig, source: str, etag: str,
                    ledger: Sequence[dict[str, Any]], loaded: Any) -> dg.AssetCheckResult:
    """Judge one object's load from its ledger rows, the rejected table and (if this run loaded it) the run."""
    out = config.output
    current = next((row for row in ledger if row["etag"] == etag), None)
    if current is None:
        return dg.AssetCheckResult(
            check_name=OBJECT_CHECK, passed=False,
            description=f"the ledger has no row for {source} with ETag {etag}: this version was not committed",
            metadata={"etag": etag})
    problems: list[str] = []
    metadata: dict[str, Any] = {"etag": etag, "ledger_rows": current["rows"], "ledger_rejected": current["rejected"]}
    if loaded is not None:
        metadata["parsed_records"] = loaded.parsed
        if loaded.parsed != current["rows"] + current["rejected"]:
            problems.append(f"{loaded.parsed:,} records parsed but the ledger accounts for "
                            f"{current['rows']:,} loaded + {current['rejected']:,} rejected")
    recorded = rejected_count(conn, out, config.name, source)
    # Every version of the key rejects into the same table, so compare with all its ledger rows.
    expected = sum(int(row["rejected"]) for row in ledger)
    metadata["rejected_table_rows"] = recorded
    if out.mode in REBUILDING_MODES:  # the ledger restarted, the rejected table kept its history
        if recorded < current["rejected"]:
            problems.append(f"the ledger says {current['rejected']:,} records were rejected but "
                            f"{out.schema}.{out.rejected} holds {recorded:,} for {source}")
    elif recorded != expected:
        problems.append(f"the ledger says {expected:,} records of {source} were rejected but "
                        f"{out.schema}.{out.rejected} holds {recorded:,}")
    return dg.AssetCheckResult(
        check_name=OBJECT_CHECK, passed=not problems, metadata=metadata,
        description="; ".join(problems) if problems else
        f"{current['rows']:,} rows loaded and {current['rejected']:,} rejected: every record accounted for")


def table_checks(pipeline: Pipeline) -> list[dg.AssetChecksDefinition]:
    """Whole-table checks: primary key unique, no NULL where none may be, row count matches the ledger."""

    out = pipeline.config.output
    built = [_required_columns_check(pipeline)]
    if out.primary_key:
        built.insert(0, _primary_key_check(pipeline))
    # The object ledger is the S3 side's; merge updates rows in place, so the ledger counts more than the table.
    if not registry.is_stream(pipeline.config.input) and out.mode != "merge":
        built.append(_ledger_total_check(pipeline))
    return built


def _primary_key_check(pipeline: Pipeline) -> dg.AssetChecksDefinition:
    keys = ", ".join(pipeline.config.output.primary_key)

    @dg.asset_check(
        asset=pipeline.table_key, name="primary_key_unique",
        description=f"No two rows share a primary key ({keys}). Redshift does not enforce primary keys.",
        required_resource_keys={pipeline.warehouse_resource_key},
    )
    def primary_key_unique(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        with _connection(context, pipeline) as (conn, out):
            if not table_exists(conn, out):
                return _no_table(out)
            count, sample = duplicate_keys(conn, out)
        return dg.AssetCheckResult(
            passed=count == 0, metadata={"duplicate_keys": count, "sample": ", ".join(sample) or "(none)"},
            description=f"{count:,} {keys} values appear more than once" if count else f"every {keys} is unique")

    return primary_key_unique


def _required_columns_check(pipeline: Pipeline) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=pipeline.table_key, name="required_columns_not_null",
        description="No NULL in the primary-key columns or in columns the table declares NOT NULL.",
        required_resource_keys={pipeline.warehouse_resource_key},
    )
    def required_columns_not_null(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        with _connection(context, pipeline) as (conn, out):
            if not table_exists(conn, out):
                return _no_table(out)
            columns = required_columns(conn, out)
            nulls = null_counts(conn, out, columns)
        bad = {column: count for column, count in nulls.items() if count}
        return dg.AssetCheckResult(
            passed=not bad, metadata={"columns": ", ".join(columns) or "(none)", **{f"nulls_{c}": n for c, n in
                                                                                  nulls.items()}},
            description=", ".join(f"{c}: {n:,} NULL" for c, n in bad.items()) if bad else
            f"no NULL in {', '.join(columns)}" if columns else "the table has no required columns")

    return required_columns_not_null


def _ledger_total_check(pipeline: Pipeline) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=pipeline.table_key, name="rows_match_ledger",
        description="The table holds exactly the rows the ledger says were loaded: no duplicate load, no gap, "
                    "no row written around the pipeline.",
        required_resource_keys={pipeline.warehouse_resource_key},
    )
    def rows_match_ledger(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        with _connection(context, pipeline) as (conn, out):
            if not table_exists(conn, out):
                return _no_table(out)
            rows = table_row_count(conn, out)
            ledger = ledger_row_total(conn, out, pipeline.name)
        return dg.AssetCheckResult(
            passed=rows == ledger, metadata={"table_rows": rows, "ledger_rows": ledger},
            description=f"{out.qualified_table} holds {rows:,} rows; the ledger accounts for {ledger:,}")

    return rows_match_ledger


@contextmanager
def _connection(context: dg.AssetCheckExecutionContext, pipeline: Pipeline
                ) -> Iterator[tuple[psycopg.Connection, OutputConfig]]:
    """The config resolved with the warehouse resource, and a connection to that warehouse."""
    warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
    out = pipeline.resolve(warehouse.conninfo).output
    with warehouse.connect(out) as conn:
        yield conn, out


def _no_table(out: OutputConfig) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True, description=f"{out.qualified_table} does not exist yet: nothing loaded")
