"""DDL helpers by dialect name, for code that prints or checks SQL before connecting (guess, preview, assets).

The statements themselves belong to each dialect (pipeline.warehouse.dialects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import sql

from pipeline.schema import Column
from pipeline.warehouse.dialects import CHECKPOINT_TABLE, LEDGER_TABLE, dialect_for, render

__all__ = ["CHECKPOINT_TABLE", "LEDGER_TABLE", "create_table", "render", "sql_type"]


def sql_type(column: Column, dialect: str, overrides: Mapping[str, str] | None = None) -> str:
    return dialect_for(dialect).sql_type(column, overrides)


def create_table(schema: str, table: str, columns: Sequence[Column], dialect: str, **options: Any
                 ) -> list[sql.Composed]:
    return dialect_for(dialect).create_table(schema, table, columns, **options)
