"""DDL for each dialect: target tables, their rejected-records tables and the state tables.

Every name goes through ``psycopg.sql.Identifier``; statements are returned as
``sql.Composed`` so they can be executed or rendered for `pipeline guess` and tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import sql

from pipeline.schema import Column

_TYPES = {
    "postgresql": {"boolean": "boolean", "long": "bigint", "double": "double precision", "string": "text",
                   "timestamp": "timestamp with time zone", "json": "jsonb"},
    "hologres": {"boolean": "boolean", "long": "bigint", "double": "double precision", "string": "text",
                 "timestamp": "timestamp with time zone", "json": "jsonb"},
    # Redshift has no unbounded text: VARCHAR(65535) is its widest, and SUPER holds JSON.
    "redshift": {"boolean": "boolean", "long": "bigint", "double": "double precision",
                 "string": "varchar(65535)", "timestamp": "timestamptz", "json": "super"},
}

LEDGER_TABLE = "pipeline_object_ledger"
CHECKPOINT_TABLE = "pipeline_shard_checkpoint"


def sql_type(column: Column, dialect: str, overrides: Mapping[str, str] | None = None) -> str:
    if overrides and column.name in overrides:
        return overrides[column.name]
    return _TYPES[dialect][column.type]


def table_ident(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def create_table(
    schema: str,
    table: str,
    columns: Sequence[Column],
    dialect: str,
    *,
    primary_key: Sequence[str] = (),
    column_options: Mapping[str, str] | None = None,
    table_properties: Mapping[str, Any] | None = None,
    distkey: str | None = None,
    sortkey: Sequence[str] = (),
    if_not_exists: bool = True,
) -> list[sql.Composed]:
    """The statements that create a table, to run in one transaction.

    Hologres table properties are ``CALL set_table_property`` statements in the same transaction
    as the CREATE TABLE; Redshift gets DISTKEY/SORTKEY clauses; PostgreSQL gets neither.
    """
    parts = []
    for column in columns:
        not_null = sql.SQL(" NOT NULL") if column.name in primary_key else sql.SQL("")
        parts.append(sql.SQL("{} {}{}").format(
            sql.Identifier(column.name), sql.SQL(sql_type(column, dialect, column_options)), not_null))
    if primary_key:
        parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, primary_key))))
    create = sql.SQL("CREATE TABLE {}{} ({})").format(
        sql.SQL("IF NOT EXISTS ") if if_not_exists else sql.SQL(""),
        table_ident(schema, table),
        sql.SQL(", ").join(parts),
    )
    if dialect == "redshift":
        if distkey:
            create += sql.SQL(" DISTKEY({})").format(sql.Identifier(distkey))
        if sortkey:
            create += sql.SQL(" SORTKEY({})").format(sql.SQL(", ").join(map(sql.Identifier, sortkey)))
    statements = [create]
    if dialect == "hologres" and table_properties:
        statements.extend(hologres_table_properties(schema, table, table_properties))
    return statements


def hologres_table_properties(schema: str, table: str, properties: Mapping[str, Any]) -> list[sql.Composed]:
    """``CALL set_table_property('schema.table', 'key', 'value')`` for each property.

    Lists become Hologres' comma-separated form; the table name is quoted as an identifier inside
    the string literal so a hostile name cannot escape it.
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


def rejected_table(schema: str, table: str, dialect: str) -> sql.Composed:
    text = _TYPES[dialect]["string"]
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        "pipeline {t} NOT NULL, source {t} NOT NULL, line_number bigint, sequence_number {t}, "
        "column_name {t}, raw_record {t}, error {t} NOT NULL, "
        "rejected_at timestamp with time zone NOT NULL DEFAULT now())"
    ).format(table_ident(schema, table), t=sql.SQL(text))


def ledger_table(schema: str, dialect: str) -> sql.Composed:
    text = _TYPES[dialect]["string"]
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        "pipeline {t} NOT NULL, object_key {t} NOT NULL, etag {t} NOT NULL, "
        "rows bigint NOT NULL, rejected bigint NOT NULL, bytes bigint NOT NULL, "
        "loaded_at timestamp with time zone NOT NULL DEFAULT now(), "
        "PRIMARY KEY (pipeline, object_key, etag))"
    ).format(table_ident(schema, LEDGER_TABLE), t=sql.SQL(text))


def checkpoint_table(schema: str, dialect: str) -> sql.Composed:
    text = _TYPES[dialect]["string"]
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        "pipeline {t} NOT NULL, stream {t} NOT NULL, shard_id {t} NOT NULL, "
        "sequence_number {t} NOT NULL, records bigint NOT NULL DEFAULT 0, "
        "updated_at timestamp with time zone NOT NULL DEFAULT now(), "
        "PRIMARY KEY (pipeline, stream, shard_id))"
    ).format(table_ident(schema, CHECKPOINT_TABLE), t=sql.SQL(text))


def create_schema(schema: str) -> sql.Composed:
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


def render(statements: Sequence[sql.Composable]) -> str:
    """Statements as SQL text, one per line, for printing and for tests of generated SQL."""
    return "\n".join(s.as_string(None) + ";" for s in statements)
