"""Connections to PostgreSQL-protocol warehouses, and what kind of server answered."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pipeline.errors import WarehouseError

log = logging.getLogger(__name__)

_FLAVORS_LOGGED: set[tuple[str, str]] = set()
_FLAVORS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Server:
    """What answered: ``flavor`` is postgresql, hologres or redshift; ``version`` is version()."""

    flavor: str
    version: str

    def effective(self, wanted: str) -> str:
        """The SQL dialect to use for an output of type ``wanted`` on this server.

        Hologres or Redshift-only SQL is used only when that server really answers; against plain
        PostgreSQL (the embedded stack) the PostgreSQL equivalent is used, said once in the log.
        """
        if wanted == self.flavor or wanted == "postgresql":
            return self.flavor if wanted == self.flavor else "postgresql"
        with _FLAVORS_LOCK:
            if (wanted, self.flavor) not in _FLAVORS_LOGGED:
                _FLAVORS_LOGGED.add((wanted, self.flavor))
                log.info("out.type is %s but the server is %s: using %s SQL (no %s-only statements)",
                         wanted, self.flavor, self.flavor, wanted)
        return self.flavor


def describe_target(conninfo: str) -> str:
    """``user@host:port/db`` for messages: never the password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "the warehouse"
    return f"{params.get('user', '?')}@{params.get('host', 'localhost')}:{params.get('port', '5432')}/" \
           f"{params.get('dbname', '?')}"


def connect(conninfo: str, *, flavor: str = "postgresql", autocommit: bool = False) -> psycopg.Connection:
    """Open a connection, turning failures into a message a user can act on."""
    kwargs: dict = {"autocommit": autocommit}
    if flavor == "redshift":
        # Redshift speaks an old protocol: no server-side prepared statements, UTF8 only.
        kwargs["prepare_threshold"] = None
        kwargs["client_encoding"] = "UTF8"
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


def server_of(conn: psycopg.Connection) -> Server:
    with conn.cursor() as cur:
        cur.execute("SELECT version()")
        row = cur.fetchone()
    version = row[0] if row else ""
    if "Hologres" in version:
        flavor = "hologres"
    elif "Redshift" in version:
        flavor = "redshift"
    else:
        flavor = "postgresql"
    return Server(flavor=flavor, version=version)
