"""The target table of a pipeline: its preparation, its rejected records and its merge keys."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from psycopg import sql

from pipeline.config import OutputConfig
from pipeline.errors import RecordError, WarehouseError
from pipeline.schema import Column
from pipeline.warehouse import ddl, state
from pipeline.warehouse.connection import Server, connect, server_of

log = logging.getLogger(__name__)

REJECTED_COLUMNS = ("pipeline", "source", "line_number", "sequence_number", "column_name", "raw_record", "error")


class Target:
    """Where a pipeline writes: ``out`` of its config plus the columns after filters."""

    def __init__(self, output: OutputConfig, columns: Sequence[Column], pipeline: str):
        self.output = output
        self.columns = list(columns)
        self.pipeline = pipeline
        self.server: Server | None = None
        self.dialect = "postgresql"

    # ----------------------------------------------------------------- names

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.output.schema, self.output.table)

    @property
    def rejected_ident(self) -> sql.Identifier:
        return sql.Identifier(self.output.schema, self.output.rejected)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        return connect(self.output.conninfo, flavor=self.output.type, autocommit=autocommit)

    # ----------------------------------------------------------------- DDL

    def create_statements(self, dialect: str | None = None, *, schema: str | None = None,
                          table: str | None = None, if_not_exists: bool = True) -> list[sql.Composed]:
        out = self.output
        return ddl.create_table(
            schema or out.schema, table or out.table, self.columns, dialect or self.dialect,
            primary_key=out.primary_key, column_options=out.column_options,
            table_properties=out.table_properties, distkey=out.distkey, sortkey=out.sortkey,
            if_not_exists=if_not_exists,
        )

    def prepare(self, conn: psycopg.Connection) -> Server:
        """Create what is missing (state tables, target, rejected table) and check the columns."""
        self.server = server_of(conn)
        self.dialect = self.server.effective(self.output.type)
        state.ensure_state_tables(conn, self.output.state, self.dialect)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(ddl.create_schema(self.output.schema))
            existing = table_columns(cur, self.output.schema, self.output.table)
            if not existing:
                if not self.output.create_table:
                    raise WarehouseError(f"table {self.output.qualified_table} does not exist "
                                         "and out.create_table is false")
                if self.output.table_properties and self.dialect != "hologres":
                    log.info("server is %s, not Hologres: table_properties (%s) are skipped", self.dialect,
                             ", ".join(self.output.table_properties))
                for statement in self.create_statements():
                    cur.execute(statement)
                log.info("created table %s", self.output.qualified_table)
            else:
                missing = [c for c in self.column_names if c not in existing]
                if missing:
                    raise WarehouseError(
                        f"table {self.output.qualified_table} has no column {', '.join(missing)}; add "
                        f"{'it' if len(missing) == 1 else 'them'} to the table or remove "
                        f"{'it' if len(missing) == 1 else 'them'} from the config's columns")
            cur.execute(ddl.rejected_table(self.output.schema, self.output.rejected, self.dialect))
        return self.server

    def merge_keys(self, conn: psycopg.Connection) -> list[str]:
        if self.output.merge_keys:
            return list(self.output.merge_keys)
        if self.output.primary_key:
            return list(self.output.primary_key)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                (self.ident.as_string(conn),))
            keys = [row[0] for row in cur.fetchall()]
        if not keys:
            raise WarehouseError(f"mode merge needs out.merge_keys: table {self.output.qualified_table} "
                                 "has no primary key")
        return keys

    # ----------------------------------------------------------------- rejected records

    def write_rejects(self, cur: psycopg.Cursor, rejects: Sequence[RecordError],
                      table: sql.Identifier | None = None) -> None:
        if not rejects:
            return
        rows = [self._rejected_row(error) for error in rejects]
        names = sql.SQL(", ").join(map(sql.Identifier, REJECTED_COLUMNS))
        if self.dialect == "redshift":
            # Redshift has no COPY FROM STDIN; rejects are few, so plain INSERTs do.
            cur.executemany(sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                table or self.rejected_ident, names, sql.SQL(", ").join(sql.Placeholder() * len(REJECTED_COLUMNS))),
                rows)
            return
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table or self.rejected_ident, names)) as copy:
            for row in rows:
                copy.write_row(row)

    def _rejected_row(self, error: RecordError) -> tuple:
        line = error.position if isinstance(error.position, int) else None
        sequence = None if isinstance(error.position, int) or error.position is None else str(error.position)
        return (self.pipeline, error.source, line, sequence, error.column, _printable(error.raw), error.describe())


def table_columns(cur: psycopg.Cursor, schema: str, table: str) -> list[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", (schema, table))
    return [row[0] for row in cur.fetchall()]


def _printable(raw: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; keep the rest of the raw record as it was.
    return None if raw is None else raw.replace("\x00", "\\x00")
