"""Bulk writes through ``COPY ... FROM STDIN``.

Two ways in: raw CSV bytes that the server parses itself (the fast path, as fast as ``psql
\\copy``), and rows we parsed and validated ourselves, sent as COPY text format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql

# COPY text format: backslash escapes for the four characters that would break a line or field.
_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_csv_statement(
    table: sql.Composable,
    columns: Sequence[str],
    *,
    delimiter: str,
    quote: str,
    escape: str | None,
    null_string: str | None,
    extra_options: Sequence[sql.Composable] = (),
) -> sql.Composed:
    options = [
        sql.SQL("FORMAT csv"),
        sql.SQL("DELIMITER {}").format(sql.Literal(delimiter)),
        sql.SQL("QUOTE {}").format(sql.Literal(quote)),
        sql.SQL("ESCAPE {}").format(sql.Literal(escape or quote)),
        sql.SQL("NULL {}").format(sql.Literal(null_string or "")),
        sql.SQL("ENCODING 'UTF8'"),
        *extra_options,
    ]
    return sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(options))


def copy_text_statement(table: sql.Composable, columns: Sequence[str],
                        extra_options: Sequence[sql.Composable] = ()) -> sql.Composed:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(table, sql.SQL(", ").join(map(sql.Identifier, columns)))
    if extra_options:
        statement += sql.SQL(" ({})").format(sql.SQL(", ").join([sql.SQL("FORMAT text"), *extra_options]))
    return statement


def copy_bytes(cur: psycopg.Cursor, statement: sql.Composed, chunks: Iterable[bytes]) -> tuple[int, int]:
    """Stream ``chunks`` into a COPY; returns (rows, bytes)."""
    nbytes = 0
    with cur.copy(statement) as copy:
        for chunk in chunks:
            nbytes += len(chunk)
            copy.write(chunk)
    return max(cur.rowcount, 0), nbytes


def text_line(values: Sequence[str | None]) -> str:
    """One row in COPY text format; ``None`` is NULL."""
    return "\t".join(["\\N" if v is None else v.translate(_TEXT_ESCAPES) for v in values]) + "\n"


_TEXT_UNESCAPE = re.compile(r"\\(.)")
_UNESCAPED = {"t": "\t", "n": "\n", "r": "\r"}


def text_values(line: str) -> list[str | None]:
    """The values of one COPY text line (``text_line``'s inverse): ``\\N`` is NULL, each escape read once, left
    to right, so a backslash before a ``t`` stays a backslash and a ``t``."""
    return [None if field == "\\N" else _unescape(field) if "\\" in field else field
            for field in line.rstrip("\n").split("\t")]


def _unescape(field: str) -> str:
    return _TEXT_UNESCAPE.sub(lambda m: _UNESCAPED.get(m.group(1), m.group(1)), field)


def copy_lines(cur: psycopg.Cursor, statement: sql.Composed, lines: Sequence[str]) -> int:
    """Write pre-formatted COPY text lines in one COPY; returns rows written."""
    if not lines:
        return 0
    with cur.copy(statement) as copy:
        copy.write("".join(lines).encode("utf-8"))
    return len(lines)
