"""Data-quality queries on a target table, for asset checks: keys, NULLs, row counts against the ledger."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from pipeline.config import OutputConfig

_SAMPLE = 5  # offending values shown in a check's metadata


def _table(out: OutputConfig) -> sql.Identifier:
    return sql.Identifier(out.schema, out.table)


def table_exists(conn: psycopg.Connection, out: OutputConfig) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                    (out.schema, out.table))
        return cur.fetchone() is not None


def rejected_count(conn: psycopg.Connection, out: OutputConfig, pipeline: str, source: str) -> int:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE pipeline = %s AND source = %s").format(
            sql.Identifier(out.schema, out.rejected)), (pipeline, source))
        row = cur.fetchone()
    return int(row[0]) if row else 0


def duplicate_keys(conn: psycopg.Connection, out: OutputConfig) -> tuple[int, list[str]]:
    """How many primary-key values occur more than once, and a few of them."""
    keys = sql.SQL(", ").join(map(sql.Identifier, out.primary_key))
    duplicates = sql.SQL("SELECT {keys} FROM {table} GROUP BY {keys} HAVING count(*) > 1").format(
        keys=keys, table=_table(out))
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM ({}) AS d").format(duplicates))
        row = cur.fetchone()
        count = int(row[0]) if row else 0
        cur.execute(duplicates + sql.SQL(" LIMIT {}").format(sql.Literal(_SAMPLE)))
        sample = ["/".join(str(value) for value in values) for values in cur.fetchall()]
    return count, sample


def required_columns(conn: psycopg.Connection, out: OutputConfig) -> list[str]:
    """Primary-key columns and the columns declared NOT NULL, in table order."""
    with conn.cursor() as cur:
        cur.execute("SELECT column_name, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position", (out.schema, out.table))
        return [name for name, nullable in cur.fetchall() if nullable == "NO" or name in out.primary_key]


def null_counts(conn: psycopg.Connection, out: OutputConfig, columns: Sequence[str]) -> dict[str, int]:
    if not columns:
        return {}
    # CASE rather than FILTER: Redshift has no FILTER clause.
    sums = sql.SQL(", ").join(
        sql.SQL("sum(CASE WHEN {} IS NULL THEN 1 ELSE 0 END)").format(sql.Identifier(c)) for c in columns)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {}").format(sums, _table(out)))
        row = cur.fetchone() or ()
    return {column: int(value or 0) for column, value in zip(columns, row, strict=False)}


def table_row_count(conn: psycopg.Connection, out: OutputConfig) -> int:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(_table(out)))
        row = cur.fetchone()
    return int(row[0]) if row else 0


def ledger_row_total(conn: psycopg.Connection, out: OutputConfig, pipeline: str) -> int:
    from pipeline.warehouse.dialects import LEDGER_TABLE

    with conn.cursor() as cur:
        try:
            cur.execute(sql.SQL("SELECT coalesce(sum(rows), 0) FROM {} WHERE pipeline = %s").format(
                sql.Identifier(out.state, LEDGER_TABLE)), (pipeline,))
        except psycopg.errors.UndefinedTable:
            return 0
        row = cur.fetchone()
    return int(row[0]) if row else 0
