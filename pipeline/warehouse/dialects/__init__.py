"""One module per warehouse; this registry is the only place that knows their names.

``dialect_for(out.type)`` gives the SQL a config asks for (for printing DDL before any connection);
``detect(conn, out.type)`` asks the server what it is and refuses a mismatch, so a config for Hologres
never runs PostgreSQL SQL against Hologres (or the other way round).
"""

from __future__ import annotations

import psycopg

from pipeline.errors import WarehouseError
from pipeline.warehouse.dialects.base import (
    CHECKPOINT_TABLE,
    LEDGER_TABLE,
    PENDING_TABLE,
    REJECTED_COLUMNS,
    Capabilities,
    Dialect,
    Strategy,
    render,
)
from pipeline.warehouse.dialects.hologres import Hologres
from pipeline.warehouse.dialects.postgresql import PostgreSQL
from pipeline.warehouse.dialects.redshift import Redshift

# Detection order matters: Hologres' version() reads like PostgreSQL's; only hg_version() tells.
DIALECTS: dict[str, type[Dialect]] = {"hologres": Hologres, "redshift": Redshift, "postgresql": PostgreSQL}

__all__ = ["CHECKPOINT_TABLE", "DIALECTS", "LEDGER_TABLE", "PENDING_TABLE", "REJECTED_COLUMNS", "Capabilities",
           "Dialect", "Strategy", "detect", "dialect_for", "render"]


def dialect_for(name: str) -> Dialect:
    try:
        return DIALECTS[name]()
    except KeyError:
        raise WarehouseError(f"unknown warehouse type {name!r} (known: {', '.join(DIALECTS)})") from None


def detect(conn: psycopg.Connection, wanted: str, where: str = "the warehouse") -> Dialect:
    """The dialect of the server behind ``conn``, which must be the ``wanted`` one (out.type)."""
    for cls in DIALECTS.values():
        version = cls.detect(conn)
        if version is not None:
            found = cls(version)
            if found.name != wanted:
                raise WarehouseError(
                    f"out.type is {wanted}, but {where} is {found.describe()}: set out.type: {found.name}, "
                    f"or point out.url at a {DIALECTS[wanted].label} server")
            return found
    raise WarehouseError(f"{where} did not say what it is (version() and hg_version() failed)")
