"""Properties of the reader and of guess over generated tables and arbitrary bytes."""

from __future__ import annotations

import csv
import io
import re
from itertools import pairwise

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.errors import RecordError
from pipeline.formats.csv import CsvOptions, CsvRecord, read_records
from pipeline.formats.guess import guess_csv
from pipeline.schema import Column

# Any text PostgreSQL can store: no NUL, no lone surrogates.
values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
tables = st.integers(1, 5).flatmap(lambda width: st.lists(st.lists(values, min_size=width, max_size=width),
                                                           min_size=1, max_size=12))
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in pairwise(points)]


@settings(max_examples=300, deadline=None)
@given(table=tables, delimiter=st.sampled_from([",", "\t", "|", ";"]),
       terminator=st.sampled_from(["\r\n", "\n", "\r"]), quote_all=st.booleans(),
       cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_tables_written_by_python_csv_writer_read_back_exactly_with_their_line_numbers(
    table: list[list[str]], delimiter: str, terminator: str, quote_all: bool, cuts: list[int]
) -> None:
    # Python 3.11's writer quotes only the line-break characters of its own terminator; a lone CR
    # left unquoted before an LF terminator is a CRLF to any reader, so such tables are not CSV.
    foreign_breaks = [char for char in "\r\n" if char not in terminator]
    assume(not any(char in value for row in table for value in row for char in foreign_breaks))
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator,
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(["header"] * len(table[0]))
    writer.writerows(table)
    data = out.getvalue().encode()
    width = len(table[0])
    newline = {"\r\n": "CRLF", "\n": "LF", "\r": "CR"}[terminator]
    options = CsvOptions(delimiter=delimiter, skip_header_lines=1, newline=newline,
                         columns=tuple(Column(f"c{index}") for index in range(width)))

    results = list(read_records(chunked(data, cuts), options, "s3://b/k"))

    expected_lines = []
    line = 2
    for row in table:
        expected_lines.append(line)
        line += 1 + sum(len(LINE_BREAK.findall(value)) for value in row)
    # csv.writer leaves an empty field unquoted (NULL to us) unless it is a row's only field.
    # A line break inside quotes reads as the newline option's, as Embulk's tokenizer writes it.
    expected = [[LINE_BREAK.sub(terminator, value) if value or quote_all or width == 1 else None for value in row]
                for row in table]
    assert all(isinstance(result, CsvRecord) for result in results), results
    assert [result.values for result in results] == expected  # type: ignore[union-attr]
    assert [result.line for result in results] == expected_lines  # type: ignore[union-attr]


option_sets = st.builds(
    CsvOptions,
    charset=st.sampled_from(["UTF-8", "MS932", "EUC-JP", "UTF-16LE", "ISO-8859-1"]),
    delimiter=st.sampled_from([",", "\t", "::"]),
    quote=st.sampled_from(['"', "'", None]),
    escape=st.sampled_from(['"', "\\", None]),
    null_string=st.sampled_from([None, "\\N", ""]),
    skip_header_lines=st.integers(0, 2),
    trim_if_not_quoted=st.booleans(),
    comment_line_marker=st.sampled_from([None, "#"]),
    allow_extra_columns=st.booleans(),
    allow_optional_columns=st.booleans(),
    max_quoted_size_limit=st.integers(1, 64),
    columns=st.sampled_from([(), (Column("a"),), (Column("a"), Column("b"), Column("c"))]),
)
csv_like_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from([b"a", b"1", b",", b"\t", b":", b'"', b"'", b"\\", b" ", b"\r", b"\n", b"\r\n",
                              b"#", b"\x00", b"\xff", b"\xef\xbb\xbf", "勇".encode(), "森".encode("cp932"),
                              b"\\N"]), max_size=80).map(b"".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=csv_like_bytes, options=option_sets, cuts=st.lists(st.integers(0, 400), max_size=6))
def test_any_bytes_give_records_and_record_errors_never_an_exception(
    data: bytes, options: CsvOptions, cuts: list[int]
) -> None:
    results = list(read_records(chunked(data, cuts), options, "s3://b/k"))

    lines = [result.line if isinstance(result, CsvRecord) else result.position for result in results]
    assert all(isinstance(result, (CsvRecord, RecordError)) for result in results)
    assert all(isinstance(line, int) and line >= 1 for line in lines)
    for result in results:
        if isinstance(result, CsvRecord):
            assert len(result.values) == len(options.columns)
            assert not any(value is not None and "\x00" in value for value in result.values)
        else:
            assert "\x00" not in (result.raw or "") and "\x00" not in (result.value or "")


@settings(max_examples=200, deadline=None)
@given(data=csv_like_bytes, options=option_sets, cuts=st.lists(st.integers(0, 400), max_size=6))
def test_chunk_boundaries_do_not_change_what_is_read(
    data: bytes, options: CsvOptions, cuts: list[int]
) -> None:
    def outcome(chunks: list[bytes]) -> list[tuple]:
        return [
            (r.line, r.values, r.raw) if isinstance(r, CsvRecord)
            else (r.position, r.message, r.column, r.raw)
            for r in read_records(chunks, options, "s3://b/k")
        ]

    assert outcome(chunked(data, cuts)) == outcome([data])


@settings(max_examples=300, deadline=None)
@given(data=csv_like_bytes, complete=st.booleans())
def test_guess_never_raises_and_always_writes_a_usable_parser(data: bytes, complete: bool) -> None:
    parser = guess_csv(data, complete=complete)

    assert parser["type"] == "csv"
    columns = tuple(Column(c["name"], c["type"], c.get("format")) for c in parser["columns"])
    CsvOptions(charset=parser["charset"], newline=parser["newline"], delimiter=parser["delimiter"],
               quote=parser["quote"], escape=parser.get("escape"), null_string=parser.get("null_string"),
               skip_header_lines=parser["skip_header_lines"], columns=columns)


@settings(max_examples=150, deadline=None)
@given(table=st.lists(st.lists(st.one_of(values, st.integers(-(2**70), 2**70).map(str),
                                         st.floats(allow_nan=False).map(repr),
                                         st.sampled_from(["true", "no", "2015-01-27", "2015-01-27 10:00"])),
                               min_size=3, max_size=3), min_size=2, max_size=10))
def test_what_guess_infers_from_a_table_loads_that_whole_table(table: list[list[str]]) -> None:
    from pipeline.formats.types import normalize

    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\n").writerows([["a", "b", "c"], *table])
    data = out.getvalue().encode()
    parser = guess_csv(data, complete=True)
    columns = tuple(Column(c["name"], c["type"], c.get("format")) for c in parser["columns"])
    options = CsvOptions(charset=parser["charset"], delimiter=parser["delimiter"], quote=parser["quote"],
                         escape=parser.get("escape"), null_string=parser.get("null_string"),
                         trim_if_not_quoted=parser["trim_if_not_quoted"],
                         comment_line_marker=parser.get("comment_line_marker"),
                         skip_header_lines=parser["skip_header_lines"], columns=columns)

    for record in read_records([data], options, "s3://b/k"):
        if isinstance(record, RecordError):
            continue  # a guess from a sample is a guess: ragged rows are the data's fault, not the types'
        for column, value in zip(columns, record.values, strict=True):
            normalize(value, column)
