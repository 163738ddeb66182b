"""Look before loading: ``preview`` a sample as it would be loaded, and ``check`` every dependency.

Both are read-only: no table is created, no checkpoint or ledger row moves, nothing is staged.
The command line (``pipeline preview``, ``pipeline check``) and the Dagster layer call these
functions; neither imports Dagster.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from pipeline import registry
from pipeline.config import KinesisInputConfig, PipelineConfig, S3InputConfig
from pipeline.errors import PipelineError, RecordError
from pipeline.schema import Column

# A preview reads at most this much of an object, however few rows it finds.
PREVIEW_MAX_BYTES = 8 << 20
# A stream preview reads at most this much per shard.
PREVIEW_SHARD_BYTES = 4 << 20


# --------------------------------------------------------------------------- preview


@dataclass
class PreviewRow:
    """One record of the sample: ``values`` in the order of ``Preview.columns``, or ``error``."""

    source: str
    position: int | str | None
    values: list[str | None] | None = None
    error: str | None = None
    column: str | None = None
    raw: str | None = None

    @property
    def rejected(self) -> bool:
        return self.error is not None


@dataclass
class Preview:
    pipeline: str
    columns: list[Column]
    sql_types: list[str]
    rows: list[PreviewRow] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What a bad record does during a load: stop it, or go to the rejected table.
    on_invalid: str = ""


def preview(config: PipelineConfig, rows: int = 20, *, s3_client: Any = None, kinesis_client: Any = None,
            conn: psycopg.Connection | None = None) -> Preview:
    """Read a bounded sample of the source and return it parsed, filtered and typed for the target.

    S3: the first object of the prefix, read as a stream that stops after ``rows`` records.
    Kinesis: the records after each shard's checkpoint, read without moving it. Bad records are
    part of the sample, with the reason a load would reject them.
    """
    if rows < 1:
        raise PipelineError("--rows must be at least 1")
    if not config.is_stream:
        return _preview_objects(config, rows, s3_client)
    return _preview_stream(config, rows, kinesis_client, conn)


def _types(config: PipelineConfig, columns: list[Column]) -> list[str]:
    from pipeline.warehouse.ddl import sql_type

    return [sql_type(c, config.output.type, config.output.column_options) for c in columns]


def _on_invalid(config: PipelineConfig, stop: bool) -> str:
    if stop:
        return "a bad record stops the load (in.parser.stop_on_invalid_record: true)"
    return f"bad records go to {config.output.schema}.{config.output.rejected}"


def _preview_objects(config: PipelineConfig, limit: int, s3_client: Any) -> Preview:
    from pipeline.batch import BatchLoad
    from pipeline.filters import s3_identity
    from pipeline.records import RowPath

    load = BatchLoad(config, s3_client=s3_client)
    source_config = load.input
    columns = load.target.columns
    result = Preview(config.name, columns, _types(config, columns),
                     on_invalid=_on_invalid(config, load.reader.stop_on_invalid_record))
    first = load.store.first()
    if first is None:
        result.notes.append(f"no object under {source_config.uri} matches; nothing to preview")
        return result
    result.sources.append(first.uri)
    # What a load does with each record (filters, identity, NUL check), without the table's fit.
    path = RowPath(load.reader.columns, load.filters)
    identity = partial(s3_identity, first.uri, first.etag)
    blob = load.store.blob(first, limit=PREVIEW_MAX_BYTES)
    records = load.reader.records(blob)
    try:
        for item in records:
            encoded = item if isinstance(item, RecordError) else path.encode(item, first.uri, identity)
            if isinstance(encoded, RecordError):
                result.rows.append(_rejected_row(encoded))
            else:
                result.rows.append(PreviewRow(first.uri, item.line, list(encoded[0]), raw=item.raw))
            if len(result.rows) >= limit:
                break
    finally:
        records.close()  # closes the object's body: nothing past the sample is downloaded
    if blob.cut:
        result.notes.append(f"stopped after {PREVIEW_MAX_BYTES:,} bytes of {first.uri}")
    return result


def _rejected_row(error: RecordError) -> PreviewRow:
    return PreviewRow(error.source, error.position, error=error.describe(), column=error.column, raw=error.raw)


def _preview_stream(config: PipelineConfig, limit: int, kinesis_client: Any,
                    conn: psycopg.Connection | None) -> Preview:
    from pipeline.formats.json import parse_records, row_identity
    from pipeline.sources.kinesis import list_shards, read_order, read_shard
    from pipeline.stream import StreamLoad

    load = StreamLoad(config, kinesis_client=kinesis_client)
    path = load.path  # what a load does with each record (filters, identity, NUL check), without the table's fit
    result = Preview(config.name, list(load.columns), _types(config, list(load.columns)),
                     on_invalid=_on_invalid(config, load.input.parser.stop_on_invalid_record))
    checkpoints = _read_checkpoints(config, conn, result)
    stream = load.input.stream
    shards = read_order(list_shards(load.kinesis, stream), checkpoints)
    for shard in shards:
        if len(result.rows) >= limit:
            break
        source = f"{stream}/{shard.shard_id}"
        result.sources.append(source)
        reader = read_shard(load.kinesis, stream, shard, after_sequence=checkpoints.get(shard.shard_id),
                            starting_position=load.input.starting_position, timestamp=load.timestamp,
                            max_records=limit - len(result.rows), max_bytes=PREVIEW_SHARD_BYTES, stop_at_tip=True)
        for record in reader:
            identity = record.identity(stream)
            raw = partial(record.data.decode, "utf-8", "replace")
            for line, row in parse_records(record.data, record.metadata(), load.options, source, record.position):
                encoded = row if isinstance(row, RecordError) else path.encode_fields(
                    row, source, record.position, row_identity(identity, line), raw)
                if isinstance(encoded, RecordError):
                    result.rows.append(_rejected_row(encoded))
                    continue
                result.rows.append(PreviewRow(source, record.position, list(encoded[0])))
    del result.rows[limit:]
    return result


def _read_checkpoints(config: PipelineConfig, conn: psycopg.Connection | None, result: Preview) -> dict[str, str]:
    """The committed checkpoints, read without creating anything; none if the table is not there yet."""
    from pipeline.warehouse import ddl, state
    from pipeline.warehouse.connection import connect

    assert registry.is_stream(config.input)
    out = config.output
    try:
        own = conn is None
        conn = conn or connect(out.conninfo, dialect=out.type, autocommit=True)
    except PipelineError as error:
        result.notes.append(f"checkpoints not read ({error}); showing records from in.starting_position")
        return {}
    try:
        if not _relation_exists(conn, out.state, ddl.CHECKPOINT_TABLE):
            result.notes.append("no checkpoints yet: showing records from in.starting_position")
            return {}
        checkpoints = state.read_checkpoints(conn, out.state, config.name, config.input.stream)
        if not conn.autocommit:
            conn.rollback()
        return checkpoints
    finally:
        if own:
            conn.close()


def _relation_exists(conn: psycopg.Connection, schema: str, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (sql.Identifier(schema, name).as_string(conn),)).fetchone()
    return bool(row and row[0])


# --------------------------------------------------------------------------- check


@dataclass(frozen=True)
class CheckResult:
    """One dependency: ``ok``, and a detail line (what was found, or what to fix)."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def check(config: PipelineConfig, *, s3_client: Any = None, kinesis_client: Any = None, kms_client: Any = None,
          environ: Mapping[str, str] | None = None) -> list[CheckResult]:
    """Test each dependency of ``config`` without changing anything; one result per check."""
    import os

    results: list[CheckResult] = []
    aws = config.input.aws
    results.append(_credentials(aws, os.environ if environ is None else environ))

    def client(service: str, given: Any) -> Any:
        if given is not None:
            return given
        from pipeline.sources.aws import client as aws_client

        return aws_client(service, **aws.client_kwargs())

    if registry.in_s3(config.input):
        results.extend(_check_s3(config.input, client("s3", s3_client), lambda: client("kms", kms_client)))
    elif registry.is_stream(config.input):
        results.extend(_check_kinesis(config.input, client("kinesis", kinesis_client)))
    else:
        results.append(_check_store(config.input))
    results.extend(_check_warehouse(config))
    return results


def _check_store(source: Any) -> CheckResult:
    """Any other batch input: its objects list."""
    from pipeline import registry
    from pipeline.errors import SourceError

    name = f"source {source.uri}"
    try:
        listed = registry.store(source, lambda: None).listed(lambda message: None)
    except SourceError as error:
        return CheckResult(name, False, str(error))
    return CheckResult(name, True, f"{len(listed):,} object(s) to consider, {sum(o.size for o in listed):,} bytes")


def _credentials(aws: Any, environ: Mapping[str, str]) -> CheckResult:
    name = "AWS credentials"
    if aws.access_key_id:
        return CheckResult(name, True, "from the config (in.access_key_id / in.secret_access_key)")
    import boto3

    try:
        found = boto3.session.Session(region_name=aws.region).get_credentials()
    except Exception as error:  # a broken profile or credentials file
        return CheckResult(name, False, f"the AWS credential chain failed: {error}")
    if found is None:
        return CheckResult(name, False, "none found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                                        "in.access_key_id and in.secret_access_key, a profile, or a role")
    where = {
        "env": "the environment (AWS_ACCESS_KEY_ID)",
        "shared-credentials-file": "the shared credentials file (~/.aws/credentials)",
        "config-file": "the AWS config file (~/.aws/config)",
        "iam-role": "the instance role (instance metadata)",
        "container-role": "the container role (ECS task role)",
        "assume-role": "an assumed role (AWS profile)",
        "assume-role-with-web-identity": "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)",
        "sso": "AWS SSO",
    }.get(found.method, f"the default chain ({found.method})")
    profile = environ.get("AWS_PROFILE")
    suffix = f", profile {profile}" if profile and found.method != "env" else ""
    return CheckResult(name, True, f"from {where}{suffix}")


def _check_s3(source: S3InputConfig, s3: Any, kms: Callable[[], Any]) -> list[CheckResult]:
    from pipeline.errors import SourceError
    from pipeline.sources.s3 import describe, list_objects, read_sample

    results = []
    listing = f"S3 ListBucket {source.uri}"
    try:
        first = next(list_objects(s3, source.bucket, source.path_prefix, pattern=source.path_match_pattern,
                                  limit=1), None)
    except SourceError as error:
        return [CheckResult(listing, False, str(error))]
    if first is None:
        results.append(CheckResult(listing, True, "allowed, but no object matches yet (nothing to load)"))
        return results
    results.append(CheckResult(listing, True, f"allowed (first object {first.key})"))
    try:
        obj = describe(s3, first)
    except SourceError as error:
        return [*results, CheckResult(f"S3 HeadObject {first.uri}", False, str(error))]
    encrypted = obj.sse == "aws:kms"
    name = f"S3 GetObject {obj.uri}" + (" (SSE-KMS: kms:Decrypt)" if encrypted else "")
    try:
        read_sample(s3, obj, 1024)
        results.append(CheckResult(name, True, "allowed" + (f", decrypted with {obj.kms_key_id}" if encrypted else "")))
    except SourceError as error:
        results.append(CheckResult(name, False, str(error)))
    if encrypted:
        results.append(_check_kms_key(kms(), obj.kms_key_id))
    return results


def _check_kms_key(kms: Any, key_id: str | None) -> CheckResult:
    from botocore.exceptions import BotoCoreError, ClientError

    name = f"KMS DescribeKey {key_id}"
    if not key_id:
        return CheckResult(name, False, "S3 did not report the object's KMS key id")
    try:
        metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("AccessDeniedException", "AccessDenied"):
            return CheckResult(name, False, "denied: grant kms:DescribeKey on the key to the reading credentials")
        if code == "NotFoundException":
            return CheckResult(name, False, "the key does not exist in this account and region")
        return CheckResult(name, False, f"{code}: {error}")
    except BotoCoreError as error:
        return CheckResult(name, False, str(error))
    state = metadata.get("KeyState", "Enabled")
    if state != "Enabled" or metadata.get("Enabled") is False:
        return CheckResult(name, False, f"the key is {state}: enable it (kms:EnableKey) or cancel its deletion")
    return CheckResult(name, True, f"enabled ({metadata.get('KeyUsage', 'ENCRYPT_DECRYPT')})")


def _check_kinesis(source: KinesisInputConfig, kinesis: Any) -> list[CheckResult]:
    from pipeline.errors import SourceError
    from pipeline.sources.kinesis import describe_stream, list_shards, read_shard

    stream = source.stream
    try:
        summary = describe_stream(kinesis, stream)
    except SourceError as error:
        return [CheckResult(f"Kinesis DescribeStreamSummary {stream}", False, str(error))]
    ok = summary.status in ("ACTIVE", "UPDATING")
    encryption = "KMS-encrypted" if summary.encryption_type == "KMS" else "not encrypted"
    results = [CheckResult(f"Kinesis DescribeStreamSummary {stream}", ok,
                           f"{summary.status}, {summary.open_shard_count} open shards, {encryption}"
                           if ok else f"the stream is {summary.status}; wait until it is ACTIVE")]
    try:
        shards = list_shards(kinesis, stream)
    except SourceError as error:
        return [*results, CheckResult(f"Kinesis ListShards {stream}", False, str(error))]
    results.append(CheckResult(f"Kinesis ListShards {stream}", True, f"{len(shards)} shards"))
    open_shards = [s for s in shards if not s.closed] or shards
    if not open_shards:
        return results
    name = f"Kinesis GetShardIterator/GetRecords {stream}/{open_shards[0].shard_id}"
    try:
        # LATEST: proves the read permissions (and kms:Decrypt of an encrypted stream) without reading a backlog.
        reader = read_shard(kinesis, stream, open_shards[0], after_sequence=None, starting_position="latest",
                            max_records=1, max_bytes=1 << 20, stop_at_tip=True)
        for _ in reader:
            break
        results.append(CheckResult(name, True, "allowed"))
    except SourceError as error:
        results.append(CheckResult(name, False, str(error)))
    return results


# --------------------------------------------------------------------------- warehouse

# Target column types (information_schema data_type) each Embulk type can be written to.
_TEXT_TYPES = frozenset({"text", "character varying", "character", "bpchar", "varchar", "char"})
_COMPATIBLE = {
    "string": _TEXT_TYPES | {"uuid", "json", "jsonb", "USER-DEFINED", "super"},
    "long": _TEXT_TYPES | {"bigint", "integer", "smallint", "numeric", "double precision", "real"},
    "double": _TEXT_TYPES | {"double precision", "real", "numeric"},
    "boolean": _TEXT_TYPES | {"boolean"},
    "timestamp": _TEXT_TYPES | {"timestamp with time zone", "timestamp without time zone", "date"},
    "json": _TEXT_TYPES | {"json", "jsonb", "super"},
}


def connect_warehouse(config: PipelineConfig, *, connect_timeout: int | None = None
                      ) -> tuple[CheckResult, psycopg.Connection | None]:
    """The warehouse connection check, and the open connection when it passed (the caller closes it)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from pipeline.warehouse.connection import connect, describe_target

    out = config.output
    where = describe_target(out.conninfo)
    name = f"warehouse connection {where}"
    conninfo = out.conninfo
    if connect_timeout is not None and "connect_timeout" not in conninfo_to_dict(conninfo):
        conninfo = make_conninfo(conninfo, connect_timeout=connect_timeout)
    try:
        conn = connect(conninfo, dialect=out.type, autocommit=True)
    except PipelineError as error:
        return CheckResult(name, False, str(error).removeprefix(f"cannot connect to {where}: ")), None
    return CheckResult(name, True, "answers"), conn


def _check_warehouse(config: PipelineConfig) -> list[CheckResult]:
    from pipeline.warehouse.connection import describe_target
    from pipeline.warehouse.dialects import detect

    connected, conn = connect_warehouse(config)
    if conn is None:
        return [connected]
    out, name = config.output, connected.name
    with conn:
        try:
            dialect = detect(conn, out.type, describe_target(out.conninfo))
        except PipelineError as error:
            return [CheckResult(name, False, str(error))]
        results = [_tls(conn, dialect, out, name), *_check_strategies(config, dialect)]
        columns = _target_columns(config)
        with conn.cursor() as cur:
            results.extend(_check_target(cur, config, columns))
            results.extend(_check_state(cur, config))
    return results


def _check_strategies(config: PipelineConfig, dialect: Any) -> list[CheckResult]:
    """How the configured mode commits exactly once on this server (and the others, for comparison)."""
    from pipeline.config import MODES

    stream = config.is_stream
    chosen = dialect.strategy(config.output.mode, stream=stream)
    name = f"mode {config.output.mode} on {dialect.describe()}"
    results = [CheckResult(name, True, f"exact: {chosen.name}: {chosen.description}") if chosen.exact
               else CheckResult(name, False, f"cannot be exact on this server: {chosen.fix}")]
    if not stream:
        others = [dialect.strategy(mode) for mode in MODES if mode != config.output.mode]
        exact = ", ".join(f"{s.mode} ({s.name})" for s in others if s.exact)
        inexact = ", ".join(s.mode for s in others if not s.exact)
        results.append(CheckResult("other modes on this server", True,
                                   f"exact: {exact}" + (f"; not available: {inexact}" if inexact else "")))
    if not dialect.capabilities.copy_from_stdin:
        missing = [key for key, value in (("out.s3_staging", config.output.s3_staging),
                                          ("out.iam_role", config.output.iam_role)) if not value]
        results.append(CheckResult(f"{dialect.label} loads through S3", not missing,
                                   "out.s3_staging and out.iam_role are set" if not missing else
                                   f"set {' and '.join(missing)}: {dialect.label} has no COPY FROM STDIN, rows "
                                   "arrive by COPY FROM S3"))
    return results


def _tls(conn: psycopg.Connection, dialect: Any, out: Any, name: str) -> CheckResult:
    in_use = bool(conn.pgconn.ssl_in_use)
    if dialect.capabilities.ssl_view:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        in_use = bool(row and row[0])
    host = conn.info.host or ""
    label = f"{dialect.describe()} server, TLS {'in use' if in_use else 'not in use'}"
    if in_use or out.allow_insecure or _is_local(host):
        return CheckResult(name, True, label)
    return CheckResult(name, False, f"{label}: the connection to {host} is not encrypted; add sslmode=require to "
                                    "out.url, or set out.allow_insecure: true to accept it")


def _is_local(host: str) -> bool:
    if host.startswith("/") or host in ("", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _target_columns(config: PipelineConfig) -> list[Column]:
    """The columns a load writes, as the engine computes them (neither constructor connects anywhere)."""
    if not config.is_stream:
        from pipeline.batch import BatchLoad

        return list(BatchLoad(config).target.columns)
    from pipeline.stream import StreamLoad

    return list(StreamLoad(config).columns)


def _check_target(cur: psycopg.Cursor, config: PipelineConfig, columns: list[Column]) -> list[CheckResult]:
    out = config.output
    table = out.qualified_table
    schema_exists = _exists(cur, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (out.schema,))
    cur.execute("SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (out.schema, out.table))
    existing = {row[0]: row for row in cur.fetchall()}
    if not existing:
        name = f"target table {table}"
        if not out.create_table:
            return [CheckResult(name, False, "does not exist and out.create_table is false: create it, "
                                             "or set out.create_table: true")]
        if not _can_create(cur, out.schema, schema_exists):
            return [CheckResult(name, False, f"does not exist, and this user may not create it: "
                                             f"{_create_grant(out.schema, schema_exists)}")]
        return [CheckResult(name, True, "does not exist yet; the first run creates it (CREATE allowed)")]
    problems = []
    for column in columns:
        found = existing.get(column.name)
        if found is None:
            problems.append(f"no column {column.name} (config type {column.type})")
        elif found[1] not in _COMPATIBLE[column.type] and column.name not in out.column_options:
            problems.append(f"column {column.name} is {found[1]} but the config's {column.type} cannot be written "
                            "to it")
    names = {c.name for c in columns}
    for name, (_, data_type, nullable, default) in existing.items():
        if name not in names and nullable == "NO" and default is None:
            problems.append(f"column {name} ({data_type}) is NOT NULL without a default and the config "
                            "does not fill it")
    results = [CheckResult(f"target table {table}", not problems,
                           f"exists, {len(columns)} config columns compatible" if not problems else
                           "; ".join(problems) + ": change the table or the config's columns so they match")]
    privileges = {"INSERT"}
    if out.mode == "truncate_insert":
        privileges.add("TRUNCATE")
    if out.mode == "merge":
        privileges.add("UPDATE")
    missing = [p for p in sorted(privileges) if not _privilege(cur, out.schema, out.table, p)]
    results.append(CheckResult(f"privileges on {table}", not missing,
                               f"{', '.join(sorted(privileges))} allowed" if not missing else
                               f"missing {', '.join(missing)}: GRANT {', '.join(missing)} ON {table} TO the "
                               "pipeline's user"))
    return results


def _check_state(cur: psycopg.Cursor, config: PipelineConfig) -> list[CheckResult]:
    from pipeline.warehouse import ddl

    out = config.output
    schema_exists = _exists(cur, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (out.state,))
    tables = [(ddl.CHECKPOINT_TABLE if config.is_stream else ddl.LEDGER_TABLE,
               ("SELECT", "INSERT", "UPDATE", "DELETE")),
              (out.rejected, ("INSERT",))]
    results = []
    for index, (table, privileges) in enumerate(tables):
        schema = out.state if index == 0 else out.schema
        name = f"{'state' if index == 0 else 'rejected-records'} table {schema}.{table}"
        present = schema_exists if index == 0 else _exists(cur, "SELECT 1 FROM pg_namespace WHERE nspname = %s",
                                                           (schema,))
        if not present or not _exists(cur, "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
                                            "AND table_name = %s", (schema, table)):
            if _can_create(cur, schema, present):
                results.append(CheckResult(name, True, "does not exist yet; the first run creates it"))
            else:
                results.append(CheckResult(name, False, f"does not exist and cannot be created: "
                                                        f"{_create_grant(schema, present)}"))
            continue
        missing = [p for p in privileges if not _privilege(cur, schema, table, p)]
        results.append(CheckResult(name, not missing, "exists, " + ", ".join(privileges) + " allowed" if not missing
                                   else f"missing {', '.join(missing)}: GRANT {', '.join(missing)} ON "
                                        f"{schema}.{table} TO the pipeline's user"))
    return results


def _exists(cur: psycopg.Cursor, query: str, params: tuple) -> bool:
    cur.execute(query, params)
    return cur.fetchone() is not None


def _privilege(cur: psycopg.Cursor, schema: str, table: str, privilege: str) -> bool:
    cur.execute("SELECT has_table_privilege(%s, %s)", (sql.Identifier(schema, table).as_string(cur), privilege))
    row = cur.fetchone()
    return bool(row and row[0])


def _can_create(cur: psycopg.Cursor, schema: str, schema_exists: bool) -> bool:
    if schema_exists:
        cur.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,))
    else:
        cur.execute("SELECT has_database_privilege(current_database(), 'CREATE')")
    row = cur.fetchone()
    return bool(row and row[0])


def _create_grant(schema: str, schema_exists: bool) -> str:
    if schema_exists:
        return f"GRANT CREATE ON SCHEMA {schema} TO the pipeline's user, or create the table beforehand"
    return f"schema {schema} does not exist: create it, or GRANT CREATE ON DATABASE to the pipeline's user"
