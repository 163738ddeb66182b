"""Connections to PostgreSQL-protocol warehouses, with errors a user can act on."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pipeline.errors import WarehouseError

log = logging.getLogger(__name__)


def describe_target(conninfo: str) -> str:
    """``user@host:port/db`` for messages: never the password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "the warehouse"
    return f"{params.get('user', '?')}@{params.get('host', 'localhost')}:{params.get('port', '5432')}/" \
           f"{params.get('dbname', '?')}"


def connect(conninfo: str, *, options: dict[str, Any] | None = None, dialect: str | None = None,
            autocommit: bool = False) -> psycopg.Connection:
    """Open a connection, turning failures into a message a user can act on.

    ``options`` are the dialect's connection options (or name the ``dialect`` to take its own).
    """
    if options is None and dialect is not None:
        from pipeline.warehouse.dialects import dialect_for

        options = dialect_for(dialect).connect_options()
    kwargs: dict = {"autocommit": autocommit, **(options or {})}
    try:
        conn = psycopg.connect(conninfo, **kwargs)
    except psycopg.OperationalError as error:
        raise WarehouseError(f"cannot connect to {describe_target(conninfo)}: {diagnose(error)}") from None
    # Timestamps without an offset mean UTC, as Embulk's default_timezone does, whatever the server's zone.
    conn.execute("SET TIME ZONE 'UTC'")
    if not autocommit:
        conn.commit()
    return conn


def diagnose(error: BaseException) -> str:
    """One line saying what went wrong and what to do, from a psycopg connection error."""
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    full = str(error)
    if "server closed the connection unexpectedly" in full:
        return "the server closed the connection while it was being opened (restarting, or a proxy cut it?)"
    if "password authentication failed" in full:
        return "password authentication failed: check the user and password"
    if "no pg_hba.conf entry" in full or "not in whitelist" in full.lower() or "allowlist" in full.lower():
        return f"the server rejects this client's address (pg_hba.conf or the IP allowlist): {text}"
    if "Connection refused" in full:
        return "connection refused: is the server running and listening on that host and port?"
    if "could not translate host name" in full or "Name or service not known" in full:
        return f"the host name does not resolve (DNS): {text}"
    if "timeout expired" in full or "timed out" in full:
        return "connection timed out: check the host, port, firewall or security group"
    if re.search(r"SSL|TLS|sslmode", full):
        return f"TLS problem: {text}"
    if "does not exist" in full:
        return text
    return text
