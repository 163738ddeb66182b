"""Assets of an S3 pipeline: the objects under its prefix, and the table they load into.

Both are partitioned by object key (a dynamic partition per object, added by the sensor).
Materializing a partition of the table loads that one object through the engine, with the same
ledger and the same exactly-once guarantee as ``pipeline run``.
"""


import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from pipeline import registry
from pipeline.config import PipelineConfig, S3InputConfig
from pipeline.errors import PipelineError
from pipeline.orchestration.pipelines import REBUILDING_MODES, Pipeline
from pipeline.orchestration.translation import object_loads

WAREHOUSE_NAMES = {"hologres": "Hologres", "redshift": "Redshift", "postgresql": "PostgreSQL"}


def objects_spec(pipeline: Pipeline) -> dg.AssetSpec:
    """The source objects (S3 objects, or files), an external asset: Dagster observes them and never writes them."""
    source = pipeline.config.input
    assert not registry.is_stream(source)
    if not registry.in_s3(source):
        return dg.AssetSpec(
            key=pipeline.objects_key,
            description=(f"{source.parser.type.upper()} files under {source.uri}. One partition per path, added by "
                         f"{pipeline.name}_sensor; each load observes the file's size and modification time."),
            group_name=pipeline.name,
            kinds={source.type},
            partitions_def=pipeline.partitions_def,
            metadata={"path_prefix": source.path_prefix, "dagster/uri": source.uri,
                      "dagster/column_schema": source_schema(config_columns(source)), **code_references(pipeline)},
        )
    matching = f" whose keys match `{source.path_match_pattern}`" if source.path_match_pattern else ""
    return dg.AssetSpec(
        key=pipeline.objects_key,
        description=(
            f"CSV objects under {source.uri}{matching}. One partition per object key, added by "
            f"{pipeline.name}_sensor; each load observes the object's size, ETag, encryption and KMS key."
        ),
        group_name=pipeline.name,
        kinds={"s3"},
        partitions_def=pipeline.partitions_def,
        metadata={
            "bucket": source.bucket,
            "path_prefix": source.path_prefix,
            "path_match_pattern": source.path_match_pattern or "(all keys)",
            "dagster/uri": source.uri,
            "dagster/column_schema": source_schema(config_columns(source)),
            **code_references(pipeline),
        },
    )


def table_asset(pipeline: Pipeline) -> dg.AssetsDefinition:
    """The warehouse table; a partition is the rows of one object."""
    from pipeline.orchestration.checks import object_check_spec

    config = pipeline.config
    out = config.output
    source = _objects_input(config)
    key_note = f", primary key {', '.join(out.primary_key)}" if out.primary_key else ""
    description = (
        f"Rows of the {source.parser.type.upper()} objects under {source.uri}, loaded into "
        f"{WAREHOUSE_NAMES[out.type]} table {out.qualified_table} (mode {out.mode}{key_note}). Each partition "
        f"is one object; each version of an object (key and ETag) loads exactly once, and records that fail "
        f"to parse go to {out.schema}.{out.rejected}. Config: {pipeline.path.name}."
    )

    @dg.asset(
        key=pipeline.table_key,
        description=description,
        group_name=pipeline.name,
        kinds={out.type},
        partitions_def=pipeline.partitions_def,
        deps=[pipeline.objects_key],
        metadata={**table_metadata(pipeline, column_schema(config)),
                  "dagster/column_lineage": column_lineage(pipeline, pipeline.objects_key)},
        required_resource_keys={"s3", "kms", pipeline.warehouse_resource_key},
        check_specs=[object_check_spec(pipeline)],
        # One pool per warehouse: Dagster then caps concurrent loads into it, however they were launched.
        pool=pipeline.pool,
        freshness_policy=pipeline.freshness_policy,
        # trigger: automation: the sensor registers each object, and this condition launches its load.
        automation_condition=(pipeline.translation.automation_condition or object_loads())
        if pipeline.trigger == "automation" else None,
        retry_policy=pipeline.translation.retry_policy,
    )
    def load_object(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return materialize_object(context, pipeline)

    return load_object


def rejected_spec(pipeline: Pipeline) -> dg.AssetSpec:
    """``<table>_rejected``: what the loads refused, with where each record came from and why."""
    from pipeline.warehouse.dialects.base import Dialect

    out = pipeline.config.output
    return dg.AssetSpec(
        key=pipeline.rejected_key,
        description=(f"Records the loads into {out.qualified_table} refused (they failed to parse, or the warehouse "
                     f"refused a value), one row each with the source, the line or sequence number, the column, "
                     f"the raw record and the error. Written in the same transaction as the rows it sits beside; "
                     f"each load that rejects records reports a materialization of it."),
        group_name=pipeline.name,
        kinds={out.type},
        deps=[pipeline.table_key],
        partitions_def=None if registry.is_stream(pipeline.config.input) else pipeline.partitions_def,
        metadata={"dagster/table_name": f"{out.schema}.{out.rejected}",
                  "dagster/column_schema": dg.TableSchema(columns=[
                      dg.TableColumn(name=name, type=kind, description=what)
                      for name, kind, what in Dialect.REJECTED_COLUMNS]),
                  **code_references(pipeline)},
    )


def code_references(pipeline: Pipeline) -> dict[str, Any]:
    """A link from the asset to the config file that defines it (the UI's "code" link)."""
    return {"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=[
        dg.LocalFileCodeReference(file_path=str(pipeline.path.absolute()), line_number=1,
                                  label=f"config {pipeline.path.name}")])}


def config_columns(source: Any) -> list[Any]:
    """The columns an input's parser reads, before filters."""
    return list(source.parser.columns) if source.parser else []


def source_schema(columns: Sequence[Any]) -> dg.TableSchema:
    """The source's columns in Embulk's types, before filters."""
    return dg.TableSchema(columns=[dg.TableColumn(name=c.name, type=c.type) for c in columns])


def column_lineage(pipeline: Pipeline, source_key: dg.AssetKey,
                   columns: Sequence[Any] | None = None) -> dg.TableColumnLineage:
    """Each table column from the source column it came from (``columns``, else the parser's), through ``rename``
    and ``drop_fields``; an ``add_uuid`` column comes from none (it is derived from where the record was read)."""
    from pipeline.filters import build_filters, lineage

    sources = lineage(config_columns(pipeline.config.input) if columns is None else columns,
                      build_filters(list(pipeline.config.filters)))
    return dg.TableColumnLineage(deps_by_column={
        column: [dg.TableColumnDep(asset_key=source_key, column_name=name) for name in deps]
        for column, deps in sources.items()})


def materialize_object(context: dg.AssetExecutionContext, pipeline: Pipeline) -> dg.MaterializeResult:
    """Load the object named by the partition key; a version already in the ledger loads nothing."""
    from pipeline.batch import BatchLoad
    from pipeline.orchestration.checks import evaluate_object
    from pipeline.progress import to_dagster
    from pipeline.sources.s3 import S3Object, describe
    from pipeline.warehouse import state

    key = context.partition_key
    warehouse = getattr(context.resources, pipeline.warehouse_resource_key)
    try:
        config = pipeline.resolve(warehouse.conninfo)
        if config.output.mode in REBUILDING_MODES:
            raise PipelineError(
                f"{config.name}: mode {config.output.mode} rebuilds the whole table from every object, so one "
                f"object cannot be loaded on its own; use `pipeline run {pipeline.path}`, or mode insert_direct, "
                "append or merge for per-object loads")
        source = config.input
        assert not registry.is_stream(source)
        client = context.resources.s3.client(source.aws)
        if registry.in_s3(source):
            obj = describe(client, S3Object(source.bucket, key, 0, "", datetime.fromtimestamp(0, UTC)))
            observed = object_metadata(obj, context.resources.kms, source)
        else:
            obj = registry.store(source, lambda: client).named(key)
            observed = {"key": obj.key, "uri": dg.MetadataValue.url(obj.uri), "size_bytes": obj.size,
                        "etag": obj.etag}
        context.log_event(dg.AssetObservation(asset_key=pipeline.objects_key, partition=key, metadata=observed))
        started = time.monotonic()
        summary = BatchLoad(config, s3_client=client, emit=context.log.info,
                            display=to_dagster(context)).run(keys=[key])
        seconds = time.monotonic() - started
        loaded = summary.loaded[0] if summary.loaded else None
        etag = loaded.etag if loaded else obj.etag
        with warehouse.connect(config.output) as conn:
            ledger = state.ledger_rows(conn, config.output.state, config.name, key)
            check = evaluate_object(conn, pipeline, config, obj.uri, etag, ledger, loaded)
    except PipelineError as error:
        # The engine's message names the object, line and column: show it, not a traceback.
        raise dg.Failure(description=str(error)) from None

    current = next((row for row in ledger if row["etag"] == etag), None)
    table_rows = int(current["rows"]) if current else 0
    metadata: dict[str, Any] = {
        "dagster/row_count": table_rows,
        "dagster/column_schema": column_schema(config),
        "object": dg.MetadataValue.url(obj.uri),
        "etag": etag,
        "new_rows": loaded.rows if loaded else 0,
        "rejected_rows": loaded.rejected if loaded else int(current["rejected"]) if current else 0,
        "object_bytes": obj.size,
        "duration_seconds": round(seconds, 3),
        "load_path": loaded.path if loaded else "already loaded",
    }
    if loaded and loaded.rejected:
        context.log_event(dg.AssetMaterialization(
            asset_key=pipeline.rejected_key, partition=key,
            description=f"{loaded.rejected:,} records of {obj.uri} refused",
            metadata={"dagster/row_count": loaded.rejected, "object": dg.MetadataValue.url(obj.uri), "etag": etag}))
    if loaded:
        metadata["parsed_records"] = loaded.parsed
        metadata["bytes_loaded"] = loaded.bytes
        # Numbers, so the UI's Plots tab charts throughput across runs.
        metadata["rows_per_second"] = round(loaded.rows / loaded.seconds) if loaded.seconds > 0 else 0
        metadata["megabytes_per_second"] = round(loaded.bytes / 1e6 / loaded.seconds, 2) if loaded.seconds > 0 else 0
        metadata["status"] = (f"loaded {loaded.rows:,} rows ({loaded.rejected:,} rejected) from {obj.uri} "
                              f"on the {loaded.path} path")
    else:
        when = current["loaded_at"].isoformat(timespec="seconds") if current else "an earlier run"
        metadata["status"] = (f"{obj.uri} (ETag {etag}) was already loaded at {when}: "
                              "nothing new, 0 rows added")
        context.log.info(metadata["status"])
    return dg.MaterializeResult(metadata=metadata, check_results=[check], data_version=dg.DataVersion(etag))


def object_metadata(obj: Any, kms: Any, source: S3InputConfig) -> dict[str, Any]:
    """What HeadObject says about one object version, for its observation."""
    metadata: dict[str, Any] = {
        "key": obj.key,
        "uri": dg.MetadataValue.url(obj.uri),
        "size_bytes": obj.size,
        "etag": obj.etag,
        "last_modified": dg.MetadataValue.timestamp(obj.last_modified),
        "encryption": obj.sse or "none",
    }
    if obj.version_id:
        metadata["version_id"] = obj.version_id
    if obj.kms_key_id:
        metadata["kms_key_id"] = obj.kms_key_id
        metadata["kms_key_state"] = kms.key_state(obj.kms_key_id, source.aws)
    return metadata


def table_metadata(pipeline: Pipeline, schema: dg.TableSchema) -> dict[str, Any]:
    """What a table asset of either kind of pipeline shows in the UI before it is loaded."""
    out = pipeline.config.output
    return {
        "dagster/table_name": out.qualified_table,
        "dagster/column_schema": schema,
        "mode": out.mode,
        "warehouse": pipeline.warehouse,
        "rejected_table": f"{out.schema}.{out.rejected}",
        **code_references(pipeline),
    }


def column_schema(config: PipelineConfig, columns: Sequence[Any] | None = None) -> dg.TableSchema:
    """The target table's columns as the warehouse types them: ``columns``, else the CSV parser's."""
    from pipeline.warehouse.ddl import sql_type

    out = config.output
    if columns is None:
        columns = config_columns(_objects_input(config))
    single_key = len(out.primary_key) == 1
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=sql_type(column, out.type, out.column_options),
                description=f"Embulk type {column.type}" + (f", format {column.format}" if column.format else ""),
                constraints=dg.TableColumnConstraints(
                    nullable=column.name not in out.primary_key,
                    unique=single_key and column.name in out.primary_key,
                ),
            )
            for column in columns
        ],
        constraints=dg.TableConstraints(other=[f"PRIMARY KEY ({', '.join(out.primary_key)})"])
        if out.primary_key else None,
    )


def _objects_input(config: PipelineConfig) -> Any:
    """The input of a pipeline that reads objects (S3 objects, files): its config."""
    if registry.is_stream(config.input):
        raise PipelineError(f"{config.name}: in.type is {config.input.type}, a stream, not objects")
    return config.input
