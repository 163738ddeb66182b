"""The fast path's guard: whatever it lets through, PostgreSQL's COPY reads as our checked reader (Embulk) does.

Cases named "embulk-util-csv ..." are the inputs of that project's TestCsvTokenizer, used as
specifications of what Embulk reads (and so what the checked path must be left to judge).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from pipeline.formats.csv import CsvOptions, CsvRecord, read_records
from pipeline.formats.strict import MAX_CARRY_BYTES, NotPlain, guard
from pipeline.schema import Column


def through(data: bytes, *, chunk: int = 1 << 20, escape: str | None = '"', limit: int = 131072,
            delimiter: str = ",", null_string: str | None = None, newline: str = "\n") -> bytes:
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(guard(chunks, delimiter=delimiter, quote='"', escape=escape, max_quoted_size=limit,
                          null_string=null_string, newline=newline))


@pytest.mark.parametrize("data", [
    b"a,b\nc,d\n",
    b'"a","b""c"\n"",x\n',                   # doubled quote, quoted empty field
    b'"multi\nline, with comma",x\r\n',      # a quoted line break and delimiter
    b'a,"b"\r\nc,"d"',                        # CRLF, no final line break
    b'x,"\\",y\n',                            # a backslash alone is data to both, escape '"'
    b"",
])
def test_plain_csv_passes_unchanged_in_any_chunking(data):
    for size in (1, 2, 3, 7, 1 << 20):
        assert through(data, chunk=size) == data


@pytest.mark.parametrize(("data", "why"), [
    (b'"a"aa,b\n', "does not open or close"),          # embulk-util-csv: text after a closing quote is an error
    (b'"a"  ,b\n', "does not open or close"),          # Embulk drops spaces after the closing quote; COPY keeps them
    (b'  "a",b\n', "does not open or close"),          # Embulk: unquoted `  "a"`; COPY: quoted from the quote on
    (b'a"b,c\n', "does not open or close"),            # a quote inside an unquoted field is data to Embulk
    (b'a",b\n', "does not open or close"),
    (b'"a,"b",c\n', "does not open or close"),         # closes after `a,` and `b` follows
    (b'a,b\n\nc,d\n', "empty line"),                   # Embulk skips it; COPY reads a row
    (b'\na,b\n', "empty line"),
    (b'"a,b\n', "does not open or close"),       # a quote never closed
])
def test_what_copy_would_read_otherwise_is_refused_in_any_chunking(data, why):
    for size in (1, 2, 5, 1 << 20):
        with pytest.raises(NotPlain, match=why):
            through(data, chunk=size)


def test_with_a_backslash_escape_its_sequences_are_left_to_the_checked_path():
    assert through(b'"a\\nb",c\n', escape="\\") == b'"a\\nb",c\n'  # backslash + n: data to both
    for data in (b'"a\\"b",c\n', b'"a\\\\b",c\n'):
        with pytest.raises(NotPlain, match="escape sequence"):
            through(data, escape="\\")


def test_a_quoted_field_over_max_quoted_size_limit_is_refused():
    field = b'"' + b"x" * 200 + b'"'
    assert through(field + b",a\n", limit=200)
    with pytest.raises(NotPlain, match="max_quoted_size_limit"):
        through(field + b",a\n", limit=199)


@pytest.mark.parametrize("field", [b'"' + b'x""' * 100 + b'"', b'"""' + b"x" * 199 + b'"', b'"' + b"x" * 199 + b'"""'])
def test_a_quoted_field_with_doubled_quotes_counts_each_as_one_character(field):
    assert through(field + b",a\n", limit=200)  # 200 characters once unescaped
    with pytest.raises(NotPlain, match="max_quoted_size_limit"):
        through(field + b",a\n", limit=199)


def test_a_quote_left_open_for_more_than_the_carry_limit_is_refused_without_holding_the_object():
    data = b'"' + b"x\n" * (MAX_CARRY_BYTES // 2 + 1024)
    with pytest.raises(NotPlain, match="no line break outside quotes"):
        through(data, chunk=1 << 20)


def test_the_error_says_where_the_stray_quote_is():
    with pytest.raises(NotPlain, match="at byte 12"):
        through(b'ok,"fine"\nab"c,d\n')


# ---------------------------------------------------------------------------- against PostgreSQL itself

ALPHABET = ["a", "b", " ", ",", '"', '""', "\n", "\r\n", "\r", "\\", "é"]


@pytest.fixture(scope="module")
def postgres(stack: Any) -> Any:
    from pipeline.local.stack import HOST, PG_PASSWORD, PG_USER

    with psycopg.connect(f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{stack.pg_port}/hologres",
                         autocommit=True) as conn:
        yield conn


def copy_rows(conn: psycopg.Connection, data: bytes, width: int, null_string: str | None) -> list[tuple] | None:
    """What COPY (FORMAT csv), as the fast path sends it, loads from ``data``; None when it refuses."""
    columns = sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(width))
    null = sql.SQL(", NULL {}").format(sql.Literal(null_string)) if null_string is not None else sql.SQL("")
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("CREATE TEMP TABLE strict_probe ({}) ON COMMIT DROP").format(
                sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(f"c{i}")) for i in range(width))))
            with conn.cursor().copy(sql.SQL("COPY strict_probe ({}) FROM STDIN (FORMAT csv, DELIMITER ',', "
                                            "QUOTE '\"', ESCAPE '\"'{})").format(columns, null)) as copy:
                copy.write(data)
            return conn.execute("SELECT * FROM strict_probe").fetchall()
    except psycopg.errors.DataError:
        return None


@pytest.mark.stack
@settings(max_examples=400, deadline=None)
@example(pieces=['"', "a", "\\", "\\", "b", '"'], width=1, escape="\\", chunk=8, null_string=None,
         newline="LF")  # Embulk: a\b; COPY: a\\b
@example(pieces=["a", ",", '"', "b", '""', "c", '"', "\n"], width=2, escape="\\", chunk=3,
         null_string=None, newline="LF")
@example(pieces=['"', "a", '"', ",", "b", "\n"], width=2, escape='"', chunk=8, null_string="a", newline="LF")
@example(pieces=['"', "a", "\n", "b", '"', "\n"], width=1, escape='"', chunk=8, null_string=None, newline="CRLF")
@given(pieces=st.lists(st.sampled_from(ALPHABET), max_size=24), width=st.integers(1, 3),
       escape=st.sampled_from(['"', "\\", None]), chunk=st.integers(1, 8),
       null_string=st.sampled_from([None, None, "", "a"]), newline=st.sampled_from(["LF", "LF", "CRLF", "CR"]))
def test_what_the_guard_lets_through_postgresql_reads_as_the_checked_reader_does(postgres, pieces, width, escape,
                                                                                 chunk, null_string, newline):
    from pipeline.formats.csv import NEWLINES

    data = "".join(pieces).encode()
    try:
        through(data, chunk=chunk, escape=escape, null_string=null_string, newline=NEWLINES[newline])
    except NotPlain:
        return  # the checked path reads it
    loaded = copy_rows(postgres, data, width, null_string)
    if loaded is None:
        return  # the server refuses it: the fast path is refused and the checked path reads it
    options = CsvOptions(escape=escape, null_string=null_string, newline=newline,
                         columns=tuple(Column(f"c{i}") for i in range(width)))
    read = list(read_records([data], options, "s3://b/k"))
    assert all(isinstance(record, CsvRecord) for record in read), (data, read)
    assert [tuple(record.values) for record in read] == loaded, data
