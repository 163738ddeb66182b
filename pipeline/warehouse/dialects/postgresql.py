"""Plain PostgreSQL: transactional DDL, enforced keys, COPY FROM STDIN, INSERT ... ON CONFLICT."""

from __future__ import annotations

from typing import ClassVar

import psycopg

from pipeline.warehouse.dialects.base import Capabilities, Dialect, Strategy

_STRATEGIES = {
    "insert_direct": "one transaction per object: ledger claim, COPY FROM STDIN, ledger completion",
    "append": "one transaction per object: ledger claim, COPY FROM STDIN, ledger completion",
    "merge": "one transaction per object: ledger claim, COPY into a stage, INSERT ... ON CONFLICT DO UPDATE",
    "insert": "objects load into a stage table; one transaction publishes the rows and the ledger",
    "truncate_insert": "objects load into a stage table; one transaction truncates, publishes and rewrites the ledger",
    "replace": "objects load into a new table; one transaction swaps it in and rewrites the ledger",
}


class PostgreSQL(Dialect):
    name = "postgresql"
    label = "PostgreSQL"
    capabilities = Capabilities(copy_from_stdin=True, enforces_keys=True, ddl_with_dml=True, temp_tables=True,
                                on_conflict=True, ssl_view=True)
    types: ClassVar[dict[str, str]] = {
        "boolean": "boolean", "long": "bigint", "double": "double precision", "string": "text",
             "timestamp": "timestamp with time zone", "json": "jsonb"}

    @classmethod
    def detect(cls, conn: psycopg.Connection) -> str | None:
        row = conn.execute("SELECT version()").fetchone()
        version = str(row[0]) if row else ""
        return version if version.startswith("PostgreSQL") and "Redshift" not in version else None

    def strategy(self, mode: str, *, stream: bool = False) -> Strategy:
        if stream:
            return Strategy(mode, "transactional batch",
                            "rows, rejected records and shard checkpoints commit in one transaction")
        return Strategy(mode, "transactional", _STRATEGIES[mode])
