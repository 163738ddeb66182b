"""The target table of a pipeline: its dialect, its preparation, its rejected records and its merge keys."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import psycopg
from psycopg import sql

from pipeline.config import OutputConfig
from pipeline.errors import RecordError, WarehouseError
from pipeline.schema import Column
from pipeline.warehouse import state
from pipeline.warehouse.connection import connect, describe_target
from pipeline.warehouse.dialects import REJECTED_COLUMNS, Dialect, detect, dialect_for
from pipeline.warehouse.fit import ColumnType, Fitter

log = logging.getLogger(__name__)

__all__ = ["REJECTED_COLUMNS", "Target"]


class Target:
    """Where a pipeline writes: ``out`` of its config plus the columns after filters.

    ``dialect`` is the one out.type names until :meth:`connect` has asked the server, then the server's
    own (with its version), which must be the same kind.
    """

    def __init__(self, output: OutputConfig, columns: Sequence[Column], pipeline: str):
        self.output = output
        self.columns = list(columns)
        self.pipeline = pipeline
        self.dialect: Dialect = dialect_for(output.type)
        self._detected = False
        self.column_types: dict | None = None  # the target table's, as prepare() found them

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
        """A connection with the dialect's session settings; the first one also detects the server."""
        conn = connect(self.output.conninfo, options=self.dialect.connect_options(), autocommit=autocommit)
        try:
            if not self._detected:
                was = conn.autocommit
                conn.autocommit = True
                self.dialect = detect(conn, self.output.type, describe_target(self.output.conninfo))
                conn.autocommit = was
                self._detected = True
            self.dialect.prepare_connection(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    # ----------------------------------------------------------------- DDL

    def create_statements(self, *, schema: str | None = None, table: str | None = None,
                          if_not_exists: bool = True) -> list[sql.Composed]:
        out = self.output
        return self.dialect.create_table(
            schema or out.schema, table or out.table, self.columns,
            primary_key=out.primary_key, column_options=out.column_options,
            table_properties=out.table_properties, distkey=out.distkey, sortkey=out.sortkey,
            if_not_exists=if_not_exists,
        )

    def prepare(self, conn: psycopg.Connection) -> Dialect:
        """Create what is missing (state tables, target, rejected table) and check the columns.

        DDL runs in transactions of its own (Hologres never mixes DDL and DML in one). Two runs preparing
        at once may race on CREATE ... IF NOT EXISTS (the server's catalog refuses the second): the loser
        looks again and finds what the winner made.
        """
        for attempt in range(3):
            try:
                return self._prepare(conn)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable,
                    psycopg.errors.DuplicateObject, psycopg.errors.DuplicateSchema):
                if attempt == 2:
                    raise
                log.info("another run created %s's tables at the same moment; looking again",
                         self.output.qualified_table)
        raise AssertionError("unreachable")

    def _prepare(self, conn: psycopg.Connection) -> Dialect:
        state.ensure_state_tables(conn, self.output.state, self.dialect)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.output.schema)))
            from pipeline.warehouse.fit import column_types

            existing = column_types(cur, self.output.schema, self.output.table)
            # Read once here, for the load's type checks too (None: created now, read when needed).
            self.column_types = existing or None
            if not existing:
                if not self.output.create_table:
                    raise WarehouseError(f"table {self.output.qualified_table} does not exist "
                                         "and out.create_table is false")
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
            cur.execute(self.dialect.rejected_table(self.output.schema, self.output.rejected))
        return self.dialect

    def merge_keys(self, conn: psycopg.Connection) -> list[str]:
        if self.output.merge_keys:
            return list(self.output.merge_keys)
        if self.output.primary_key:
            return list(self.output.primary_key)
        keys = self.dialect.primary_key(conn, self.output.schema, self.output.table)
        if not keys:
            enforced = "" if self.dialect.capabilities.enforces_keys else " it enforces"
            raise WarehouseError(f"mode merge needs out.merge_keys: table {self.output.qualified_table} "
                                 f"has no primary key{enforced}")
        return keys

    def fitter(self, types: Mapping[str, ColumnType]) -> Fitter:
        """What the server would refuse of this pipeline's rows in a table of ``types`` (see fit.py)."""
        return Fitter(self.column_names, types, self.dialect.refusals, truncate=self.output.truncate_columns)

    # ----------------------------------------------------------------- rejected records

    def write_rejects(self, cur: psycopg.Cursor, rejects: Sequence[RecordError],
                      table: sql.Identifier | None = None) -> None:
        if rejects:
            self.dialect.write_rows(cur, table or self.rejected_ident, REJECTED_COLUMNS,
                                    [self._rejected_row(error) for error in rejects])

    def _rejected_row(self, error: RecordError) -> tuple:
        line = error.position if isinstance(error.position, int) else None
        sequence = None if isinstance(error.position, int) or error.position is None else str(error.position)
        fit = self.dialect.fit_text
        return (self.pipeline, fit(error.source), line, sequence, fit(error.column), fit(_printable(error.raw)),
                fit(error.describe()))


def _printable(raw: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; keep the rest of the raw record as it was.
    return None if raw is None else raw.replace("\x00", "\\x00")
