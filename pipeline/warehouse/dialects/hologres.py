"""Hologres: PostgreSQL 11 protocol, its own transactions, fixed copy and table properties.

Rules this module relies on (sources in docs/targets.md):

- every statement is its own transaction; several DML statements are atomic only in a multi-DML
  transaction (V2.0+, ``SET hg_experimental_enable_transaction = on``), which locks every table it touches;
- DDL and DML never share a transaction; TRUNCATE is DDL (before V3.1), so DML code empties with DELETE;
- ``CALL set_table_property`` belongs in the CREATE TABLE's transaction;
- plain ``COPY ... FROM STDIN`` is atomic; fixed copy (``STREAM_MODE TRUE``) with ``ON_CONFLICT`` takes row
  locks and is idempotent on the primary key, but is not atomic and joins no transaction;
- no temporary tables.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from pipeline.errors import WarehouseError
from pipeline.schema import Column
from pipeline.warehouse.dialects.base import Capabilities, Dialect, Strategy
from pipeline.warehouse.dialects.postgresql import PostgreSQL

MULTI_DML_SETTING = "hg_experimental_enable_transaction"


class Hologres(Dialect):
    name = "hologres"
    label = "Hologres"
    capabilities = Capabilities(copy_from_stdin=True, enforces_keys=True, ddl_with_dml=False, temp_tables=False,
                                on_conflict=True)
    types = PostgreSQL.types  # Hologres takes PostgreSQL's types for these

    @classmethod
    def detect(cls, conn: psycopg.Connection) -> str | None:
        try:
            with conn.transaction():
                row = conn.execute("SELECT hg_version()").fetchone()
        except psycopg.Error:
            return None
        return str(row[0]) if row else None

    @property
    def release(self) -> tuple[int, ...]:
        match = re.search(r"Hologres (\d+(?:\.\d+)*)", self.version)
        return tuple(int(part) for part in match.group(1).split(".")) if match else ()

    @property
    def multi_dml(self) -> bool:
        """Several DML statements can commit together (V2.0+, with the setting on)."""
        return self.release >= (2, 0)

    @property
    def atomic_dml(self) -> bool:
        return self.multi_dml

    def prepare_connection(self, conn: psycopg.Connection) -> None:
        if self.multi_dml:
            conn.execute(sql.SQL("SET {} = on").format(sql.Identifier(MULTI_DML_SETTING)))
            if not conn.autocommit:
                conn.commit()

    # ----------------------------------------------------------------- strategies

    def strategy(self, mode: str, *, stream: bool = False) -> Strategy:
        need = (f"needs several DML statements in one transaction: Hologres V2.0+ with {MULTI_DML_SETTING} "
                f"(this server is {'.'.join(map(str, self.release)) or 'older'})")
        if stream:
            if mode == "merge":
                return Strategy(mode, "unsupported", "", exact=False,
                                fix="a stream into Hologres merges by staging in a temporary table, which Hologres "
                                    "does not have: use out.mode append (the uuid primary key keeps it exact)")
            if not self.multi_dml:
                return Strategy(mode, "unsupported", "", exact=False, fix=f"a stream's batch {need}")
            return Strategy(mode, "multi-DML transaction",
                            "rows, rejected records and shard checkpoints commit in one multi-DML transaction "
                            f"({MULTI_DML_SETTING}); its table locks make batches take turns")
        if mode == "merge":
            return Strategy(mode, "fixed copy",
                            "fixed copy (STREAM_MODE TRUE, ON_CONFLICT 'update') on the primary key, with row locks "
                            "so objects load side by side; then the object's rejected rows and its ledger row: a "
                            "rerun after a crash loads the object again, which the upsert makes idempotent")
        if mode == "replace":
            return Strategy(mode, "DDL swap with a pending ledger",
                            "objects load into a new table; the run's ledger rows are written as pending; one "
                            "DDL-only transaction swaps the table in and records the run in its comment; the "
                            "pending rows are then settled (a crash in between is settled by the next run)")
        if not self.multi_dml:
            return Strategy(mode, "unsupported", "", exact=False,
                            fix=f"mode {mode} {need}; use mode merge (fixed copy on the primary key) instead")
        if mode in ("insert_direct", "append"):
            return Strategy(mode, "multi-DML transaction",
                            "one multi-DML transaction per object: ledger claim, atomic COPY FROM STDIN, ledger "
                            "completion; its table lock makes objects into one table take turns")
        return Strategy(mode, "stage, then multi-DML publish",
                        "objects load into a stage table (DDL apart); one multi-DML transaction "
                        f"{'deletes the old rows, ' if mode == 'truncate_insert' else ''}publishes the rows, "
                        "the rejected records and the ledger")

    def single_writer(self, mode: str, *, primary_key: bool) -> str | None:
        if primary_key and mode != "merge":
            return ("Hologres' COPY holds a table lock on a table with a primary key until it ends, so writers "
                    "would take turns (fixed copy takes row locks but is not atomic: a crash would leave part of "
                    "a COPY in, which a rerun of an insert could not tell from rows loaded before)")
        return super().single_writer(mode, primary_key=primary_key)

    @contextlib.contextmanager
    def atomic(self, conn: psycopg.Connection) -> Iterator[psycopg.Cursor]:
        if not self.multi_dml:
            raise WarehouseError(f"this Hologres ({self.describe()}) cannot commit several DML statements together "
                                 f"(needs V2.0+ with {MULTI_DML_SETTING})")
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    # ----------------------------------------------------------------- DDL

    def create_table(self, schema: str, table: str, columns: Sequence[Column], *, primary_key: Sequence[str] = (),
                     column_options: Mapping[str, str] | None = None, table_properties: Mapping[str, Any] | None = None,
                     distkey: str | None = None, sortkey: Sequence[str] = (),
                     if_not_exists: bool = True) -> list[sql.Composed]:
        statements = [self._create(schema, table, columns, primary_key, column_options, if_not_exists)]
        statements += table_property_calls(schema, table, table_properties or {})
        return statements

    def stage_like(self, schema: str, stage: str, target: sql.Identifier, columns: Sequence[Column],
                   column_options: Mapping[str, str] | None = None) -> sql.Composed:
        # CREATE TABLE ... (LIKE ...) is not documented for Hologres: spell the columns out.
        return self._create(schema, stage, columns, (), column_options, False)

    def truncate(self, table: sql.Identifier) -> sql.Composed:
        return sql.SQL("DELETE FROM {}").format(table)  # TRUNCATE is DDL before V3.1: not in a DML transaction

    # ----------------------------------------------------------------- fixed copy

    def upsert_copy_options(self, on_conflict: str) -> list[sql.Composable] | None:
        """Fixed copy: row locks, ON_CONFLICT on the primary key; not atomic, and part of no transaction."""
        return [sql.SQL("STREAM_MODE TRUE"), sql.SQL("ON_CONFLICT {}").format(sql.Literal(on_conflict))]


def table_property_calls(schema: str, table: str, properties: Mapping[str, Any]) -> list[sql.Composed]:
    """``CALL set_table_property('schema.table', 'key', 'value')`` for each property.

    Lists become Hologres' comma-separated form; the table name is quoted as an identifier inside the
    string literal so a hostile name cannot escape it.
    """
    qualified = sql.Identifier(schema, table).as_string(None)
    statements = []
    for key, value in properties.items():
        if isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        statements.append(sql.SQL("CALL set_table_property({}, {}, {})").format(
            sql.Literal(qualified), sql.Literal(str(key)), sql.Literal(text)))
    return statements
