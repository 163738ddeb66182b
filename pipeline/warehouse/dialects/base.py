"""What a warehouse dialect is: its capabilities as data, its SQL, and its way of committing exactly once.

The engines (batch, stream, inspect) ask the dialect; they never compare dialect names. A dialect owns
its types, DDL, connection options, detection, bulk loading, merge, state writes (ledger claim and shard
checkpoints), per-mode strategy and what it does when the server refuses a load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from psycopg import sql

from pipeline.schema import Column
from pipeline.warehouse.fit import POSTGRESQL_REFUSALS, Refusals

LEDGER_TABLE = "pipeline_object_ledger"
CHECKPOINT_TABLE = "pipeline_shard_checkpoint"
PENDING_TABLE = "pipeline_pending_run"  # a replace run's ledger rows, until its table swap is settled
# Per shard: which incarnation of the stream the checkpoint belongs to, and until when every record is known read.
WATCH_TABLE = "pipeline_stream_watch"
# The byte ranges of an object's body that a scattered load's writers committed, until the object's ledger row does.
PART_TABLE = "pipeline_object_part"
REJECTED_COLUMNS = ("pipeline", "source", "line_number", "sequence_number", "column_name", "raw_record", "error")


@dataclass(frozen=True)
class Capabilities:
    """What a target can do, as fields the engines read (dlt's destination capabilities)."""

    copy_from_stdin: bool  # bulk rows arrive by COPY FROM STDIN (else: COPY FROM S3)
    enforces_keys: bool  # primary and unique keys are enforced
    ddl_with_dml: bool  # DDL and DML may share one transaction
    temp_tables: bool
    on_conflict: bool  # INSERT ... ON CONFLICT
    ssl_view: bool = False  # pg_stat_ssl tells whether this session is encrypted (libpq may not know behind a proxy)


@dataclass(frozen=True)
class CopyFormat:
    """How the staged or source files of a COPY FROM S3 are written, in COPY's words."""

    csv: bool = True
    delimiter: str = ","
    quote: str = '"'
    null_as: str = "\\N"
    ignore_header: int = 0
    compression: str | None = None  # GZIP | BZIP2 | ZSTD


@dataclass(frozen=True)
class Strategy:
    """How a mode commits exactly once on this server: a short name and a sentence for `pipeline check`."""

    mode: str
    name: str
    description: str
    exact: bool = True
    fix: str = ""


class Dialect:
    """A warehouse's SQL. ``version`` is what the server said it is (empty before detection)."""

    name: ClassVar[str]
    label: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    types: ClassVar[Mapping[str, str]]

    def __init__(self, version: str = ""):
        self.version = version

    # ----------------------------------------------------------------- detection and connections

    @classmethod
    def detect(cls, conn: psycopg.Connection) -> str | None:
        """The server's version text if ``conn`` is this dialect's server, else None."""
        raise NotImplementedError

    def connect_options(self) -> dict[str, Any]:
        return {}

    def prepare_connection(self, conn: psycopg.Connection) -> None:
        """Session settings every connection of a load needs."""

    def describe(self) -> str:
        """"Hologres 2.2.11", "PostgreSQL 15.18": the server's name and release."""
        return self.version.split(" (")[0].split(" on ")[0].split(",")[0] if self.version else self.label

    # ----------------------------------------------------------------- strategies

    def strategy(self, mode: str, *, stream: bool = False) -> Strategy:
        raise NotImplementedError

    # ----------------------------------------------------------------- DDL

    def sql_type(self, column: Column, overrides: Mapping[str, str] | None = None) -> str:
        if overrides and column.name in overrides:
            return overrides[column.name]
        return self.types[column.type]

    def create_table(self, schema: str, table: str, columns: Sequence[Column], *, primary_key: Sequence[str] = (),
                     column_options: Mapping[str, str] | None = None, table_properties: Mapping[str, Any] | None = None,
                     distkey: str | None = None, sortkey: Sequence[str] = (),
                     if_not_exists: bool = True) -> list[sql.Composed]:
        """The statements that create a table, to run together in one DDL transaction."""
        return [self._create(schema, table, columns, primary_key, column_options, if_not_exists)]

    def _create(self, schema: str, table: str, columns: Sequence[Column], primary_key: Sequence[str],
                column_options: Mapping[str, str] | None, if_not_exists: bool) -> sql.Composed:
        parts = []
        for column in columns:
            not_null = sql.SQL(" NOT NULL") if column.name in primary_key else sql.SQL("")
            parts.append(sql.SQL("{} {}{}").format(
                sql.Identifier(column.name), sql.SQL(self.sql_type(column, column_options)), not_null))
        if primary_key:
            parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, primary_key))))
        return sql.SQL("CREATE TABLE {}{} ({})").format(
            sql.SQL("IF NOT EXISTS ") if if_not_exists else sql.SQL(""), sql.Identifier(schema, table),
            sql.SQL(", ").join(parts))

    @property
    def text(self) -> str:
        return self.types["string"]

    # The rejected table's columns and what they hold, as the Dagster asset of it describes them.
    REJECTED_COLUMNS = (
        ("pipeline", "text", "the pipeline that refused the record"),
        ("source", "text", "s3://bucket/key of the object, or stream/shard"),
        ("line_number", "bigint", "the record's first physical line in the object"),
        ("sequence_number", "text", "the Kinesis record's sequence number"),
        ("column_name", "text", "the column whose value was refused, when one was"),
        ("raw_record", "text", "the record as it was read"),
        ("error", "text", "why it was refused"),
        ("rejected_at", "timestamp with time zone", "when"),
    )

    def rejected_table(self, schema: str, table: str) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "pipeline {t} NOT NULL, source {t} NOT NULL, line_number bigint, sequence_number {t}, "
            "column_name {t}, raw_record {t}, error {t} NOT NULL, "
            "rejected_at timestamp with time zone NOT NULL DEFAULT now())"
        ).format(sql.Identifier(schema, table), t=sql.SQL(self.text))

    def ledger_table(self, schema: str) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "pipeline {t} NOT NULL, object_key {t} NOT NULL, etag {t} NOT NULL, "
            "rows bigint NOT NULL, rejected bigint NOT NULL, bytes bigint NOT NULL, "
            "loaded_at timestamp with time zone NOT NULL DEFAULT now(), "
            "PRIMARY KEY (pipeline, object_key, etag))"
        ).format(sql.Identifier(schema, LEDGER_TABLE), t=sql.SQL(self.text))

    def pending_table(self, schema: str) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "pipeline {t} NOT NULL, run_id {t} NOT NULL, object_key {t} NOT NULL, etag {t} NOT NULL, "
            "rows bigint NOT NULL, rejected bigint NOT NULL, bytes bigint NOT NULL, "
            "PRIMARY KEY (pipeline, run_id, object_key, etag))"
        ).format(sql.Identifier(schema, PENDING_TABLE), t=sql.SQL(self.text))

    def checkpoint_table(self, schema: str) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "pipeline {t} NOT NULL, stream {t} NOT NULL, shard_id {t} NOT NULL, "
            "sequence_number {t} NOT NULL, records bigint NOT NULL DEFAULT 0, "
            "updated_at timestamp with time zone NOT NULL DEFAULT now(), "
            "PRIMARY KEY (pipeline, stream, shard_id))"
        ).format(sql.Identifier(schema, CHECKPOINT_TABLE), t=sql.SQL(self.text))

    def watch_table(self, schema: str) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "pipeline {t} NOT NULL, stream {t} NOT NULL, shard_id {t} NOT NULL, "
            "stream_created timestamp with time zone, verified_through timestamp with time zone, "
            "generation integer NOT NULL DEFAULT 0, "
            "PRIMARY KEY (pipeline, stream, shard_id))"
        ).format(sql.Identifier(schema, WATCH_TABLE), t=sql.SQL(self.text))

    def part_table(self, schema: str) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "pipeline {t} NOT NULL, object_key {t} NOT NULL, etag {t} NOT NULL, part {t} NOT NULL, "
            "ranges {t} NOT NULL, rows bigint NOT NULL, bytes bigint NOT NULL, "
            "loaded_at timestamp with time zone NOT NULL DEFAULT now(), "
            "PRIMARY KEY (pipeline, object_key, etag, part))"
        ).format(sql.Identifier(schema, PART_TABLE), t=sql.SQL(self.text))

    def stage_like(self, schema: str, stage: str, target: sql.Identifier, columns: Sequence[Column],
                   column_options: Mapping[str, str] | None = None) -> sql.Composed:
        """A table of the target's columns (no keys, no data) for staged modes."""
        return sql.SQL("CREATE TABLE {} (LIKE {})").format(sql.Identifier(schema, stage), target)

    # ----------------------------------------------------------------- page scattering

    def single_writer(self, mode: str, *, primary_key: bool) -> str | None:
        """Why an object loads through one COPY writer here although exec.min_output_tasks asks for more
        (None: writers work side by side). ``primary_key``: the table the rows go into has one."""
        if mode == "merge":
            return ("mode merge keeps the last row of a key in the object's order, which writers side by side "
                    "would not")
        return None

    # ----------------------------------------------------------------- transactions

    @property
    def atomic_dml(self) -> bool:
        """Several DML statements can commit or roll back together."""
        return True

    # A merge stage's sequence column is filled by the server in COPY order (else: rows carry it).
    fills_merge_sequence: ClassVar[bool] = True

    def merge_stage(self, stage: sql.Identifier, target: sql.Identifier, columns: Sequence[str],
                    sequence: str) -> list[sql.Composed]:
        """A session-private table of the target's columns plus ``sequence`` (the staged row order)."""
        return [sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                    stage, sql.SQL(", ").join(map(sql.Identifier, columns)), target),
                sql.SQL("ALTER TABLE {} ADD COLUMN {} bigserial").format(stage, sql.Identifier(sequence))]

    @contextlib.contextmanager
    def atomic(self, conn: psycopg.Connection) -> Iterator[psycopg.Cursor]:
        """One transaction in which several DML statements commit or roll back together."""
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def truncate(self, table: sql.Identifier) -> sql.Composed:
        """Empty ``table`` inside a DML transaction."""
        return sql.SQL("TRUNCATE {}").format(table)

    def lock_for_claim(self, cur: psycopg.Cursor, table: sql.Identifier) -> None:
        """Before a claim on a target that does not enforce keys, make claimers take turns."""

    def lock_first(self, cur: psycopg.Cursor, *tables: sql.Identifier) -> None:
        """The first statement of a transaction that writes ``tables`` (state tables), where claims need a lock:
        taken before the transaction's snapshot, so what it then reads is what the previous holder committed."""
        for table in tables:
            self.lock_for_claim(cur, table)

    # ----------------------------------------------------------------- state

    def claim_object(self, cur: psycopg.Cursor, schema: str, pipeline: str, key: str, etag: str) -> bool:
        """Insert the ledger row first, inside the load's transaction; False if another run has it."""
        cur.execute(
            sql.SQL("INSERT INTO {} (pipeline, object_key, etag, rows, rejected, bytes) VALUES (%s, %s, %s, 0, 0, 0) "
                    "ON CONFLICT DO NOTHING").format(sql.Identifier(schema, LEDGER_TABLE)),
            (pipeline, key, etag))
        return cur.rowcount == 1

    def record_object(self, cur: psycopg.Cursor, schema: str, pipeline: str, key: str, etag: str, *,
                      rows: int, rejected: int, nbytes: int) -> bool:
        """The complete ledger row in one statement, for loads that are idempotent; False if it was there."""
        cur.execute(
            sql.SQL("INSERT INTO {} (pipeline, object_key, etag, rows, rejected, bytes) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING").format(
                sql.Identifier(schema, LEDGER_TABLE)),
            (pipeline, key, etag, rows, rejected, nbytes))
        return cur.rowcount == 1

    def insert_checkpoint(self, cur: psycopg.Cursor, table: sql.Identifier, values: tuple) -> bool:
        """A shard's first checkpoint (a concurrent first insert fails on the key, rolling the batch back)."""
        cur.execute(sql.SQL("INSERT INTO {} (pipeline, stream, shard_id, sequence_number, records) "
                            "VALUES (%s, %s, %s, %s, %s)").format(table), values)
        return True

    max_text_bytes: ClassVar[int | None] = None  # the widest string column, where there is a limit
    refusals: ClassVar[Refusals] = POSTGRESQL_REFUSALS  # how the server words what a column's type refuses

    def fit_text(self, value: str | None) -> str | None:
        """A string cut to fit the widest string column (with a marker saying so), where there is a limit."""
        if value is None or self.max_text_bytes is None or len(value) * 4 <= self.max_text_bytes:
            return value
        encoded = value.encode("utf-8")
        if len(encoded) <= self.max_text_bytes:
            return value
        marker = f" ... [cut to {self.max_text_bytes} bytes of {len(encoded)}]"
        return encoded[:self.max_text_bytes - len(marker)].decode("utf-8", "ignore") + marker

    def upsert_copy_options(self, on_conflict: str) -> list[sql.Composable] | None:
        """COPY options that make a COPY an idempotent upsert on the primary key, where the target has them."""
        return None

    def retryable(self, error: BaseException) -> bool:
        """Whether a failed transaction should simply be run again (a serialization conflict)."""
        return False

    # ----------------------------------------------------------------- rows

    def write_rows(self, cur: psycopg.Cursor, table: sql.Composable, columns: Sequence[str],
                   rows: Sequence[Sequence[Any]]) -> None:
        """A few rows (rejected records): COPY where the target has it."""
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                table, sql.SQL(", ").join(map(sql.Identifier, columns)))) as copy:
            for row in rows:
                copy.write_row(row)

    # ----------------------------------------------------------------- COPY FROM S3 (no copy_from_stdin)

    def copy_from_s3(self, table: sql.Composable, columns: Sequence[str], uri: str, iam_role: str,
                     fmt: CopyFormat, *, manifest: bool = False, region: str | None = None) -> sql.Composed:
        """The COPY that loads the staged object at ``uri`` (or the objects its manifest lists) into ``table``."""
        raise NotImplementedError

    @staticmethod
    def load_errors(conn: psycopg.Connection) -> list[dict]:
        """What the last COPY FROM S3 of this session refused, by line."""
        raise NotImplementedError

    def merge_from_stage(self, target: sql.Identifier, stage: sql.Composable, columns: Sequence[str],
                         keys: Sequence[str], order: str) -> list[sql.Composed]:
        """Upsert the stage into the target on ``keys``; of several stage rows of a key the last (by
        ``order``) wins. Batch and stream merges both use this."""
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        key_list = sql.SQL(", ").join(map(sql.Identifier, keys))
        others = [c for c in columns if c not in keys]
        action = (sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others)) if others \
            else sql.SQL("DO NOTHING")
        return [sql.SQL("INSERT INTO {target} ({cols}) SELECT DISTINCT ON ({keys}) {cols} FROM {stage} "
                        "ORDER BY {keys}, {order} DESC ON CONFLICT ({keys}) {action}").format(
            target=target, cols=cols, keys=key_list, stage=stage, order=sql.Identifier(order), action=action)]

    def primary_key(self, conn: psycopg.Connection, schema: str, table: str) -> list[str]:
        """The table's primary-key columns as the server declares them, in key order."""
        with conn.cursor() as cur:
            cur.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
                "ORDER BY array_position(i.indkey::int2[], a.attnum)",
                (sql.Identifier(schema, table).as_string(conn),))
            return [row[0] for row in cur.fetchall()]


def render(statements: Sequence[sql.Composable]) -> str:
    """Statements as SQL text, one per line, for printing and for tests of generated SQL."""
    return "\n".join(s.as_string(None) + ";" for s in statements)
