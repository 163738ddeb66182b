"""The streaming CSV reader: values, NULLs, line numbers and one RecordError per bad record."""

from __future__ import annotations

import pytest

from pipeline.errors import RecordError
from pipeline.formats.csv import CsvOptions, CsvRecord, read_records
from pipeline.schema import Column

SOURCE = "s3://bucket/orders.csv"


def columns(*names: str) -> tuple[Column, ...]:
    return tuple(Column(name) for name in names)


def read(data: bytes, chunk_size: int = 1 << 16, **options) -> list[CsvRecord | RecordError]:
    options.setdefault("columns", columns("a", "b", "c"))
    chunks = [data[index:index + chunk_size] for index in range(0, len(data), chunk_size)]
    return list(read_records(chunks, CsvOptions(**options), SOURCE))


def values(results: list[CsvRecord | RecordError]) -> list[list[str | None]]:
    assert all(isinstance(result, CsvRecord) for result in results), results
    return [result.values for result in results]  # type: ignore[union-attr]


def only_error(results: list[CsvRecord | RecordError]) -> RecordError:
    errors = [result for result in results if isinstance(result, RecordError)]
    assert len(errors) == 1, results
    return errors[0]


# -- values and NULLs ---------------------------------------------------------------------------

def test_records_come_with_their_values_line_and_raw_text() -> None:
    results = read(b"1,x,y\r\n2,z,w\r\n")
    assert results == [CsvRecord(["1", "x", "y"], 1, "1,x,y"), CsvRecord(["2", "z", "w"], 2, "2,z,w")]


def test_unquoted_empty_field_is_null_and_quoted_empty_field_is_empty_string() -> None:
    assert values(read(b'1,,""\n,"",\n')) == [["1", None, ""], [None, "", None]]


def test_null_string_marks_quoted_and_unquoted_fields_alike() -> None:
    # embulk-util-csv CsvTokenizer.nextColumnOrNull (TestCsvTokenizer.testChangeNullString): a field equal to
    # the null_string is NULL whether quoted or not, and an empty field is then ''. (COPY keeps a quoted one.)
    results = read(b'\\N,"\\N",\n', null_string="\\N")
    assert values(results) == [[None, None, ""]]
    assert values(read(b',"",x\n', null_string="")) == [[None, None, "x"]]


def test_quoted_fields_hold_delimiters_doubled_quotes_and_newlines() -> None:
    data = b'1,"a,b","say ""hi"""\n2,"line one\nline two\r\nline three\rend",x\n'
    # embulk-util-csv CsvTokenizer: each line break inside quotes becomes the newline option's (CRLF by default).
    assert values(read(data)) == [
        ["1", "a,b", 'say "hi"'],
        ["2", "line one\r\nline two\r\nline three\r\nend", "x"],
    ]
    assert values(read(data, newline="LF"))[1][1] == "line one\nline two\nline three\nend"


def test_backslash_escape_inside_quotes() -> None:
    data = b'"a\\"b","c\\\\d","e\\nf"\n'
    assert values(read(data, escape="\\")) == [['a"b', "c\\d", "e\\nf"]]


def test_doubled_quote_works_even_when_escape_is_backslash() -> None:
    assert values(read(b'"a""b",x,y\n', escape="\\")) == [['a"b', "x", "y"]]


def test_quote_inside_an_unquoted_field_is_an_ordinary_character() -> None:
    assert values(read(b'5\'10",ab"c,x\n')) == [["5'10\"", 'ab"c', "x"]]


def test_spaces_after_the_closing_quote_are_allowed() -> None:
    assert values(read(b'"a"  ,"b" ,c\n')) == [["a", "b", "c"]]


def test_without_quoting_quotes_are_data() -> None:
    assert values(read(b'"a,b",c\n', quote=None)) == [['"a', 'b"', "c"]]


def test_trim_if_not_quoted_trims_unquoted_fields_only() -> None:
    assert values(read(b'  1 ,  " x " ,   \n', trim_if_not_quoted=True)) == [["1", " x ", None]]


def test_without_trim_spaces_are_kept_and_a_late_quote_is_data() -> None:
    assert values(read(b' 1 , "x",c\n')) == [[" 1 ", ' "x"', "c"]]


def test_multi_character_delimiter() -> None:
    assert values(read(b'1::"a::b"::c\n', delimiter="::")) == [["1", "a::b", "c"]]


def test_tab_delimiter() -> None:
    assert values(read(b"1\tx y\t\n", delimiter="\t")) == [["1", "x y", None]]


# -- lines ----------------------------------------------------------------------------------------

def test_line_numbers_count_skipped_header_lines_blank_lines_and_quoted_newlines() -> None:
    data = b'title\r\na,b,c\r\n1,"two\r\nlines",x\r\n\r\n\r\n2,y,z\r\n"3\n",p,q\r\n4,r,s'
    results = read(data, skip_header_lines=2)
    assert [(record.line, record.values) for record in results] == [  # type: ignore[union-attr]
        (3, ["1", "two\r\nlines", "x"]),
        (7, ["2", "y", "z"]),
        (8, ["3\r\n", "p", "q"]),  # the newline option's line break (CRLF), as Embulk writes it
        (10, ["4", "r", "s"]),
    ]


def test_mixed_newlines_in_one_file_are_all_line_breaks() -> None:
    results = read(b"1,a,b\n2,c,d\r\n3,e,f\r4,g,h")
    assert [(r.line, r.values[0]) for r in results] == [(1, "1"), (2, "2"), (3, "3"), (4, "4")]  # type: ignore


def test_a_crlf_split_between_chunks_is_one_line_break() -> None:
    results = read(b"1,a,b\r\n2,c,d\r\n", chunk_size=6)
    assert [(r.line, r.raw) for r in results] == [(1, "1,a,b"), (2, "2,c,d")]  # type: ignore[union-attr]


def test_raw_is_the_record_text_without_its_final_line_break() -> None:
    results = read(b'1,"a\r\nb",c\r\n')
    assert results[0].raw == '1,"a\r\nb",c'  # type: ignore[union-attr]


def test_comment_lines_are_skipped_but_counted() -> None:
    results = read(b"# exported 2024-01-01\n1,a,b\n#2,c,d\n3,e,f\n", comment_line_marker="#")
    assert [(r.line, r.values[0]) for r in results] == [(2, "1"), (4, "3")]  # type: ignore[union-attr]


def test_byte_order_mark_at_the_start_is_dropped() -> None:
    assert values(read(b"\xef\xbb\xbf1,a,b\n")) == [["1", "a", "b"]]


def test_byte_order_mark_in_the_middle_is_data() -> None:
    assert values(read(b"1,a,b\n\xef\xbb\xbf2,c,d\n")) == [["1", "a", "b"], ["\ufeff2", "c", "d"]]


def test_skipped_header_lines_may_hold_anything() -> None:
    results = read(b'"unclosed\n\xff\xfe\n1,a,b\n', skip_header_lines=2)
    assert values(results) == [["1", "a", "b"]]
    assert results[0].line == 3  # type: ignore[union-attr]


# -- ragged records -------------------------------------------------------------------------------

def test_too_few_fields_is_an_error_naming_the_first_missing_column() -> None:
    results = read(b"1,a,b\n2,c\n3,d,e\n")
    error = only_error(results)
    assert (error.source, error.position, error.column, error.raw) == (SOURCE, 2, "c", "2,c")
    assert "2 fields but 3 columns" in error.message
    assert [r.line for r in results if isinstance(r, CsvRecord)] == [1, 3]


def test_too_many_fields_is_an_error_showing_the_extra_field() -> None:
    error = only_error(read(b"1,a,b,extra,more\n"))
    assert (error.position, error.value) == (1, "extra")
    assert "5 fields but 3 columns" in error.message and "after the last column c" in error.message


def test_allow_optional_columns_fills_missing_fields_with_null() -> None:
    assert values(read(b"1\n2,x\n", allow_optional_columns=True)) == [["1", None, None], ["2", "x", None]]


def test_allow_extra_columns_drops_extra_fields() -> None:
    assert values(read(b"1,a,b,c,d\n", allow_extra_columns=True)) == [["1", "a", "b"]]


def test_a_single_column_file_reads_each_line_as_a_record_and_skips_blank_lines() -> None:
    assert values(read(b"a\n\n\"\"\nb\n", columns=columns("name"))) == [["a"], [""], ["b"]]


# -- bad bytes ------------------------------------------------------------------------------------

def test_invalid_utf8_is_an_error_at_its_line_and_column_and_reading_goes_on() -> None:
    results = read(b"1,a,b\n2,caf\xe9,x\n3,c,d\n")
    error = only_error(results)
    assert (error.position, error.column, error.value) == (2, "b", "caf\\xe9")
    assert error.raw == "2,caf\\xe9,x"
    assert "not valid UTF-8" in error.message
    assert [r.line for r in results if isinstance(r, CsvRecord)] == [1, 3]


def test_invalid_bytes_inside_a_quoted_multiline_field_are_found() -> None:
    results = read(b'1,"ok\nbad \xff",x\n2,a,b\n')
    error = only_error(results)
    assert (error.position, error.column) == (1, "b")
    assert values([r for r in results if isinstance(r, CsvRecord)]) == [["2", "a", "b"]]


def test_nul_byte_is_an_error_because_postgresql_text_cannot_hold_it() -> None:
    results = read(b'1,a\x00b,c\n2,"x\x00",y\n3,d,e\n')
    errors = [r for r in results if isinstance(r, RecordError)]
    assert [(e.position, e.column, e.value) for e in errors] == [(1, "b", "a\\x00b"), (2, "b", "x\\x00")]
    assert all("NUL" in e.message for e in errors)
    assert values([r for r in results if isinstance(r, CsvRecord)]) == [["3", "d", "e"]]


# -- quoting errors -------------------------------------------------------------------------------

def test_a_ten_megabyte_quoted_field_over_the_limit_is_an_error_and_the_next_record_is_read() -> None:
    big = b"x" * (10 * 1024 * 1024)
    results = read(b'1,a,b\n2,"' + big + b'",c\n3,d,e\n')
    error = only_error(results)
    assert (error.position, error.column) == (2, "b")
    assert "max_quoted_size_limit (131072 characters)" in error.message
    assert [r.line for r in results if isinstance(r, CsvRecord)] == [1, 3]


def test_a_ten_megabyte_quoted_field_within_a_raised_limit_is_read_whole() -> None:
    big = "嫌われる勇気\n" * (10 * 1024 * 1024 // 19)
    results = read(b'1,"' + big.encode() + b'",c\n', max_quoted_size_limit=11 * 1024 * 1024, newline="LF")
    assert values(results) == [["1", big, "c"]]


def test_unterminated_quote_is_an_error_at_the_line_where_the_record_started() -> None:
    results = read(b'1,a,b\n2,"never closed,c\n3,d,e\n4,f,g\n')
    error = only_error(results)
    assert (error.position, error.column) == (2, "b")
    assert "not closed" in error.message
    # The record's end is unknown, so reading resumes on the line after the one where it started.
    records = [(r.line, r.values[0]) for r in results if isinstance(r, CsvRecord)]
    assert records == [(1, "1"), (3, "3"), (4, "4")]


def test_text_after_a_closing_quote_is_an_error_and_reading_resumes_on_the_next_line() -> None:
    results = read(b'"a"b,c,d\n2,"x\ny"z,w\n3,e,f\n')
    errors = [r for r in results if isinstance(r, RecordError)]
    assert "unexpected character 'b' after the closing quote" in errors[0].message
    # Line 3 was inside the broken record of line 2, so it is read again on its own: 'y"z,w' is ragged.
    assert [(e.position, e.column) for e in errors] == [(1, "a"), (2, "b"), (3, "c")]
    assert [r.line for r in results if isinstance(r, CsvRecord)] == [4]


def test_errors_are_yielded_not_raised_so_all_good_records_still_come() -> None:
    data = b"".join(b"%d,a,b\n" % n if n % 3 else b"%d,bad\n" % n for n in range(1, 31))
    results = read(data)
    assert sum(isinstance(r, RecordError) for r in results) == 10
    assert sum(isinstance(r, CsvRecord) for r in results) == 20


# -- charsets -------------------------------------------------------------------------------------

def test_ms932_is_decoded_before_fields_are_split() -> None:
    # 表 is 0x95 0x5C in MS932: its second byte is a backslash and must not act as an escape.
    data = '1,"表",ノルウェイの森\r\n'.encode("cp932")
    assert values(read(data, charset="MS932", escape="\\")) == [["1", "表", "ノルウェイの森"]]


def test_euc_jp_file_reads_japanese_values() -> None:
    data = "1,嫌われる勇気,x\n2,ノルウェイの森,y\n".encode("euc_jp")
    assert values(read(data, charset="EUC-JP", chunk_size=5)) == [
        ["1", "嫌われる勇気", "x"], ["2", "ノルウェイの森", "y"]]


def test_bytes_invalid_in_ms932_are_an_error_for_that_record_only() -> None:
    data = "1,勇気,x\n".encode("cp932") + b"2,\x81\x20,y\n" + "3,森,z\n".encode("cp932")
    results = read(data, charset="MS932")
    error = only_error(results)
    assert (error.position, error.column) == (2, "b")
    assert "not valid MS932" in error.message


def test_utf16_file_is_read_with_line_numbers() -> None:
    data = "\ufeff1,a,b\r\n2,\"x\r\ny\",c\r\n3,d,e\r\n".encode("utf-16-le")
    results = read(data, charset="UTF-16LE", chunk_size=3)
    assert [(r.line, r.values) for r in results] == [  # type: ignore[union-attr]
        (1, ["1", "a", "b"]), (2, ["2", "x\r\ny", "c"]), (4, ["3", "d", "e"])]


def test_utf16_undecodable_bytes_are_an_error_for_their_record() -> None:
    bad = b"2\x00,\x00\x00\xdc,\x00c\x00\n\x00"  # 00 DC is a lone low surrogate
    data = "1,a,b\n".encode("utf-16-le") + bad + "3,d,e\n".encode("utf-16-le")
    results = read(data, charset="UTF-16LE")
    error = only_error(results)
    assert (error.position, error.column) == (2, "b")
    assert [r.line for r in results if isinstance(r, CsvRecord)] == [1, 3]


# -- options --------------------------------------------------------------------------------------

def test_options_default_to_embulk_names_and_our_config_defaults() -> None:
    options = CsvOptions()
    assert (options.charset, options.newline, options.delimiter, options.quote, options.escape) == (
        "UTF-8", "CRLF", ",", '"', '"')
    assert options.null_string is None and options.skip_header_lines == 0
    assert options.max_quoted_size_limit == 131072


@pytest.mark.parametrize(
    "bad", [{"newline": "CRCR"}, {"delimiter": ""}, {"quote": "''"}, {"escape": ","}, {"charset": "KOI9"},
            {"skip_header_lines": -1}, {"max_quoted_size_limit": 0}],
)
def test_invalid_options_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        CsvOptions(**bad)


def test_a_cr_line_break_at_the_end_of_a_chunk_ends_its_line() -> None:
    # The second chunk, "2,c,d", has no line break of its own to settle the CR.
    results = read(b"1,a,b\r2,c,d", chunk_size=6)
    assert [(r.line, r.raw) for r in results] == [(1, "1,a,b"), (2, "2,c,d")]  # type: ignore[union-attr]


# -- quotes_in_quoted_fields (embulk-util-csv TestCsvTokenizer) -----------------------------------------------

STRAY = "ACCEPT_STRAY_QUOTES_ASSUMING_NO_DELIMITERS_IN_FIELDS"


def test_rfc4180_mode_refuses_text_after_a_closing_quote():
    # throwWithQuotesInQuotedFields_ACCEPT_ONLY_RFC4180_ESCAPED
    (error,) = read(b'"foo"bar"\n', columns=columns("a"))
    assert isinstance(error, RecordError) and "after the closing quote" in error.message


@pytest.mark.parametrize(("data", "expected"), [
    # parseWithQuotesInQuotedFields_ACCEPT_STRAY_QUOTES_ASSUMING_NO_DELIMITERS_IN_FIELDS
    (b'"foo"bar"\n', 'foo"bar'),
    (b'"""embulk"""\n', '"embulk"'),
    (b'""embul"""k""\n', '"embul""k"'),
    (b'"a""b"\n', 'a"b'),
])
def test_stray_quote_mode_reads_a_quote_as_closing_only_before_a_delimiter_or_the_end(data, expected):
    assert values(read(data, columns=columns("a"), quotes_in_quoted_fields=STRAY)) == [[expected]]


def test_stray_quote_mode_splits_at_the_delimiter_after_a_quote():
    assert values(read(b'"a"",b"\n', columns=columns("a", "b"), quotes_in_quoted_fields=STRAY)) == [['a"', 'b"']]


def test_stray_quote_mode_with_trimming_is_refused_as_embulk_refuses_it():
    with pytest.raises(ValueError, match="cannot be used with trim_if_not_quoted"):
        CsvOptions(quotes_in_quoted_fields=STRAY, trim_if_not_quoted=True)
