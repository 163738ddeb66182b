"""guess: the in.parser mapping `embulk guess` would write, with lossless column types."""

from __future__ import annotations

import bz2
import gzip

import pyarrow as pa
import pytest

from pipeline.formats.csv import CsvOptions, CsvRecord, read_records
from pipeline.formats.guess import SAMPLE_BYTES, guess_csv, guess_growing, guess_json_columns
from pipeline.formats.types import normalize
from pipeline.schema import Column

BOOK_ORDER = (
    "order_id,user_id,book_id,book_name,order_cnt,order_amt\r\n"
    "3f1c0a3e-8b7e-4c7a-9a55-1b2f7f3f9a01,101,9784478025819,嫌われる勇気,1,1650\r\n"
    "6a2b9c1d-2e3f-4a5b-8c7d-9e0f1a2b3c4d,102,9784062748681,ノルウェイの森,2,1540\r\n"
    "0b7e4f2a-1c3d-4e5f-a6b7-c8d9e0f1a2b3,101,9784101001616,人間失格,1,407\r\n"
)
BOOK_ORDER_COLUMNS = [
    {"name": "order_id", "type": "string"}, {"name": "user_id", "type": "long"},
    {"name": "book_id", "type": "long"}, {"name": "book_name", "type": "string"},
    {"name": "order_cnt", "type": "long"}, {"name": "order_amt", "type": "long"},
]


def columns_of(sample: str | bytes, complete: bool = True) -> list[dict]:
    data = sample.encode() if isinstance(sample, str) else sample
    return guess_csv(data, complete=complete)["columns"]


def types_of(sample: str) -> list[str]:
    return [column["type"] for column in columns_of(sample)]


def test_guess_writes_embulk_keys_in_embulk_order() -> None:
    parser = guess_csv(BOOK_ORDER.encode(), complete=True)
    assert parser == {
        "charset": "UTF-8", "newline": "CRLF", "type": "csv", "delimiter": ",", "quote": '"', "escape": '"',
        "trim_if_not_quoted": False, "skip_header_lines": 1, "allow_extra_columns": False,
        "allow_optional_columns": False, "columns": BOOK_ORDER_COLUMNS,
    }
    assert list(parser) == ["charset", "newline", "type", "delimiter", "quote", "escape",
                            "trim_if_not_quoted", "skip_header_lines", "allow_extra_columns",
                            "allow_optional_columns", "columns"]


def test_null_string_is_guessed_when_a_null_word_fills_whole_fields() -> None:
    sample = "id,comment\n1,embulk\n2,NULL\n3,\"NULL is a word\"\n"
    parser = guess_csv(sample.encode(), complete=True)
    assert parser["null_string"] == "NULL"
    assert list(parser)[6] == "null_string"


def test_no_null_string_when_none_appears() -> None:
    assert "null_string" not in guess_csv(BOOK_ORDER.encode(), complete=True)


def test_mysql_style_backslash_n_null() -> None:
    assert guess_csv(b"1\tfoo\t\\N\n2\tbar\t\\N\n", complete=True)["null_string"] == "\\N"


# -- charsets -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("codec", "charset"),
    [("utf-8", "UTF-8"), ("utf-8-sig", "UTF-8"), ("cp932", "MS932"), ("euc_jp", "EUC-JP"),
     ("utf-16", "UTF-16")],
)
def test_charset_of_japanese_book_orders(codec: str, charset: str) -> None:
    parser = guess_csv(BOOK_ORDER.encode(codec), complete=True)
    assert parser["charset"] == charset
    assert parser["columns"] == BOOK_ORDER_COLUMNS


@pytest.mark.parametrize("title", ["嫌われる勇気", "ノルウェイの森", "人間失格", "１Ｑ８４", "かがみの孤城"])
def test_shift_jis_and_euc_jp_are_told_apart_on_a_single_title(title: str) -> None:
    row = f"1,{title}\n2,{title}\n"
    assert guess_csv(row.encode("cp932"), complete=True)["charset"] == "MS932"
    assert guess_csv(row.encode("euc_jp"), complete=True)["charset"] == "EUC-JP"


def test_a_sample_cut_inside_a_character_is_still_utf8() -> None:
    data = BOOK_ORDER.encode()
    cut = data.index("勇".encode()) + 1
    assert guess_csv(data[:cut], complete=False)["charset"] == "UTF-8"


def test_western_bytes_that_are_not_utf8_are_windows_1252() -> None:
    assert guess_csv("name\ncafé\nnaïve\n".encode("cp1252"), complete=True)["charset"] == "windows-1252"


# -- dialect --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("newline", "name"), [("\r\n", "CRLF"), ("\n", "LF"), ("\r", "CR")])
def test_newline(newline: str, name: str) -> None:
    assert guess_csv(f"id,name{newline}1,a{newline}2,b{newline}".encode(), complete=True)["newline"] == name


@pytest.mark.parametrize("delimiter", [",", "\t", "|", ";"])
def test_delimiter_is_the_one_splitting_every_line_alike(delimiter: str) -> None:
    sample = "\n".join(delimiter.join(row) for row in [["id", "note", "n"], ["1", "a, b; c|d", "5"],
                                                        ["2", "x", "6"], ["3", "y", "7"]]) + "\n"
    assert guess_csv(sample.encode(), complete=True)["delimiter"] == delimiter


def test_single_column_file_gets_comma() -> None:
    parser = guess_csv(b"name\nalpha\nbeta\n", complete=True)
    assert parser["delimiter"] == ","
    assert parser["columns"] == [{"name": "c0", "type": "string"}]


def test_doubled_quotes_give_escape_quote() -> None:
    parser = guess_csv(b'id,comment\n1,"Embulk ""csv"" parser"\n2,plain\n', complete=True)
    assert (parser["quote"], parser["escape"]) == ('"', '"')


def test_backslash_escaped_quotes_give_escape_backslash() -> None:
    parser = guess_csv(b'id,comment\n1,"Embulk \\"csv\\" parser"\n2,plain\n', complete=True)
    assert (parser["quote"], parser["escape"]) == ('"', "\\")


def test_single_quoted_fields_give_quote_apostrophe() -> None:
    parser = guess_csv(b"id,comment\n1,'a, b'\n2,'c, d'\n", complete=True)
    assert parser["quote"] == "'"


def test_quotes_that_never_close_a_field_disable_quoting() -> None:
    parser = guess_csv(b'id\tsize\n1\t"12 inch\n2\t"14 inch\n', complete=True)
    assert parser["quote"] is None
    assert "escape" not in parser


def test_preamble_lines_before_the_table_are_skipped() -> None:
    parser = guess_csv(b"this is a CSV\ncreated for a test\ncol1\tcol2\n1\tfoo\n2\tbar\n", complete=True)
    assert parser["skip_header_lines"] == 3
    assert [c["name"] for c in parser["columns"]] == ["col1", "col2"]


def test_comment_line_marker() -> None:
    parser = guess_csv(b"foo\t 1\tother\n# foo\t 2\tother\nfoo\t 3\tother\n", complete=True)
    assert parser["comment_line_marker"] == "#"


def test_trim_if_not_quoted_when_spaces_hide_numbers() -> None:
    parser = guess_csv(b"  1 \tfoo\n  2 \tfoo\n  3 \tfoo\n", complete=True)
    assert parser["trim_if_not_quoted"] is True
    assert parser["skip_header_lines"] == 0
    assert [c["type"] for c in parser["columns"]] == ["long", "string"]


# -- header ---------------------------------------------------------------------------------------

def test_without_header_columns_are_named_c0_c1() -> None:
    parser = guess_csv(b"1\tfoo\t2000-01-01T00:00:00+0900\n2\tbar\t2000-01-01T00:00:00+0900\n", complete=True)
    assert parser["skip_header_lines"] == 0
    assert parser["columns"] == [{"name": "c0", "type": "long"}, {"name": "c1", "type": "string"},
                                 {"name": "c2", "type": "timestamp", "format": "%Y-%m-%dT%H:%M:%S%z"}]


def test_all_string_header_is_found_by_its_lengths() -> None:
    # Every value under prefecture_code is two characters long; the name is not.
    sample = "prefecture_code,name\n13,Tokyo\n27,Osaka\n01,Hokkaido\n"
    parser = guess_csv(sample.encode(), complete=True)
    assert parser["skip_header_lines"] == 1
    assert parser["columns"] == [{"name": "prefecture_code", "type": "string"},
                                 {"name": "name", "type": "string"}]


def test_all_string_rows_without_a_header_stay_data() -> None:
    parser = guess_csv(b"apple,red\nbanana,yellow\ncherry,dark red\n", complete=True)
    assert parser["skip_header_lines"] == 0


def test_a_single_line_is_data() -> None:
    parser = guess_csv(b"id,name\n", complete=True)
    assert parser["skip_header_lines"] == 0
    assert [c["name"] for c in parser["columns"]] == ["c0", "c1"]


def test_blank_and_duplicate_header_names_are_made_unique() -> None:
    parser = guess_csv(b"id,,id\n1,2,3\n4,5,6\n", complete=True)
    assert [c["name"] for c in parser["columns"]] == ["id", "c1", "id_2"]


# -- lossless types -------------------------------------------------------------------------------

def test_leading_zeros_and_plus_signs_keep_a_column_string() -> None:
    sample = "zip,code,delta,n\n00123,007,+5,1\n10001,123,6,2\n"
    assert types_of(sample) == ["string", "string", "string", "long"]


def test_integers_beyond_64_bits_stay_string() -> None:
    assert types_of("n,m\n9223372036854775807,1\n9223372036854775808,2\n") == ["string", "long"]


def test_doubles_that_would_lose_digits_stay_string() -> None:
    assert types_of("x,y\n0.1000000000000000055511,0.5\n0.25,1.25\n") == ["string", "double"]


def test_long_and_double_merge_into_double() -> None:
    assert types_of("price\n1650\n1540.5\n407\n") == ["double"]


def test_large_integers_next_to_doubles_stay_string() -> None:
    assert types_of("x\n9007199254740993\n1.5\n") == ["string"]


def test_boolean_comes_from_words_only() -> None:
    assert types_of("a,b,c\ntrue,yes,1\nFalse,NO,0\n") == ["boolean", "boolean", "long"]


def test_json_objects_and_arrays() -> None:
    sample = 'id\tdoc\n1\t{"a": 1}\n2\t[1, 2]\n'
    assert types_of(sample) == ["long", "json"]


def test_empty_and_null_values_say_nothing_about_the_type() -> None:
    assert types_of('id,n\n1,\n2,""\n3,7\n') == ["long", "long"]


def test_a_column_of_nothing_but_nulls_is_string() -> None:
    assert types_of("id,n\n1,\n2,\n") == ["long", "string"]


def test_any_other_conflict_is_string() -> None:
    assert types_of("a,b,c\ntrue,2015-01-27,1\n5,abc,x\n") == ["string", "string", "string"]


@pytest.mark.parametrize(
    ("values", "fmt"),
    [
        (["2015-01-27 19:23:49", "2015-01-28 02:20:02"], "%Y-%m-%d %H:%M:%S"),
        (["2015-01-27", "2015-12-31"], "%Y-%m-%d"),
        (["2015/01/27 19:23:49", "2015/01/28 02:20:02"], "%Y/%m/%d %H:%M:%S"),
        (["20150127", "20150128"], "%Y%m%d"),
        (["2015-01-27 19:23:49.123", "2015-01-28 02:20:02.5"], "%Y-%m-%d %H:%M:%S.%L"),
        (["2015-01-27 19:23:49.123456", "2015-01-28 02:20:02.5"], "%Y-%m-%d %H:%M:%S.%N"),
        (["2015-01-27T19:23:49+09:00", "2015-01-28T02:20:02-05:00"], "%Y-%m-%dT%H:%M:%S%:z"),
        (["2015-01-27 19:23:49.123456 +0900", "2015-01-28 02:20:02.5 +0000"], "%Y-%m-%d %H:%M:%S.%N %z"),
        (["2015-01-27T19:23:49Z", "2015-01-28T02:20:02Z"], "%Y-%m-%dT%H:%M:%S%z"),
    ],
)
def test_timestamp_formats(values: list[str], fmt: str) -> None:
    sample = "id,at\n" + "".join(f"{n},{value}\n" for n, value in enumerate(values))
    assert columns_of(sample)[1] == {"name": "at", "type": "timestamp", "format": fmt}
    for value in values:
        assert normalize(value, Column("at", "timestamp", fmt)) is not None


def test_timestamps_of_different_formats_stay_string() -> None:
    assert types_of("id,at\n1,2015-01-27 19:23:49\n2,2015-01-27\n")[1] == "string"


def test_impossible_dates_are_not_timestamps() -> None:
    assert types_of("id,at\n1,2015-02-30\n2,2015-01-27\n")[1] == "string"


def test_date_like_numbers_that_are_not_dates_are_long() -> None:
    assert types_of("id,n\n1,20150127\n2,12345678\n")[1] == "long"


# -- samples --------------------------------------------------------------------------------------

def test_a_cut_sample_drops_its_partial_last_line() -> None:
    # Cut inside "3,4.5": read whole, "3,4" would look like a long; dropped, only whole lines count.
    assert types_of_cut("a,b\n1,2\n2,3\n3,4") == ["long", "long"]
    assert columns_of("a,b\n1,2\n2,3\n3,abc", complete=False) == columns_of("a,b\n1,2\n2,3\n")
    assert [c["type"] for c in columns_of("a,b\n1,2\n2,3\n3,abc", complete=True)] == ["long", "string"]


def types_of_cut(sample: str) -> list[str]:
    return [column["type"] for column in columns_of(sample, complete=False)]


def test_compressed_samples_are_guessed_from_their_content() -> None:
    assert guess_csv(gzip.compress(BOOK_ORDER.encode()), complete=True)["columns"] == BOOK_ORDER_COLUMNS
    assert guess_csv(bz2.compress(BOOK_ORDER.encode()), complete=True)["columns"] == BOOK_ORDER_COLUMNS
    zstd = pa.Codec("zstd").compress(BOOK_ORDER.encode(), asbytes=True)
    assert guess_csv(zstd, complete=True)["columns"] == BOOK_ORDER_COLUMNS


def test_a_zstd_sample_grows_until_it_holds_whole_blocks() -> None:
    # zstd decodes whole blocks (up to 128 KiB of output): a 32 KiB cut of a large object can hold none.
    rows = "".join(f"o{i:07d},{i % 97},{i % 13},Book {i * 7919 % 100003},{i % 5 + 1},{i % 991}\n"
                   for i in range(60_000))
    data = pa.Codec("zstd").compress((BOOK_ORDER.splitlines(keepends=True)[0] + rows).encode(), asbytes=True)
    assert len(data) > 4 * SAMPLE_BYTES
    sizes: list[int] = []

    def read(size: int) -> tuple[bytes, bool]:
        sizes.append(size)
        return data[:size], size >= len(data)

    assert [c["name"] for c in guess_growing(read)["columns"]] == [c["name"] for c in BOOK_ORDER_COLUMNS]
    assert sizes[0] == SAMPLE_BYTES and len(sizes) > 1  # the first 32 KiB held no whole block


def test_a_cut_gzip_sample_is_guessed_from_what_it_holds() -> None:
    data = gzip.compress((BOOK_ORDER * 200).encode())
    assert guess_csv(data[: len(data) // 2], complete=False)["columns"] == BOOK_ORDER_COLUMNS


def test_empty_sample_gives_no_columns() -> None:
    parser = guess_csv(b"", complete=True)
    assert parser["columns"] == [] and parser["charset"] == "UTF-8"


def test_sample_size_is_32_kib() -> None:
    assert SAMPLE_BYTES == 32 * 1024


def test_what_guess_writes_reads_the_sample_without_a_single_error() -> None:
    sample = BOOK_ORDER.encode("cp932")
    parser = guess_csv(sample, complete=True)
    columns = tuple(Column(c["name"], c["type"], c.get("format")) for c in parser["columns"])
    options = CsvOptions(charset=parser["charset"], delimiter=parser["delimiter"], quote=parser["quote"],
                         escape=parser["escape"], skip_header_lines=parser["skip_header_lines"],
                         columns=columns)
    records = list(read_records([sample], options, "s3://b/k"))
    assert all(isinstance(record, CsvRecord) for record in records) and len(records) == 3
    assert records[0].values[3] == "嫌われる勇気"  # type: ignore[union-attr]
    for record in records:
        for column, value in zip(columns, record.values, strict=True):  # type: ignore[union-attr]
            normalize(value, column)


# -- JSON records ---------------------------------------------------------------------------------

def test_json_columns_follow_the_same_rules() -> None:
    records = [
        {"sensor_id": "s-1", "temperature": 21.5, "count": 3, "ok": True, "at": "2024-05-01T10:00:00Z",
         "tags": ["a"], "zip": "00123"},
        {"sensor_id": "s-2", "temperature": 22, "count": 4, "ok": False, "at": "2024-05-01T10:00:01Z",
         "tags": [], "zip": "10001", "extra": None},
    ]
    assert guess_json_columns(records) == [
        {"name": "sensor_id", "type": "string"}, {"name": "temperature", "type": "double"},
        {"name": "count", "type": "long"}, {"name": "ok", "type": "boolean"},
        {"name": "at", "type": "timestamp", "format": "%Y-%m-%dT%H:%M:%S%z"},
        {"name": "tags", "type": "json"},
        {"name": "zip", "type": "string"}, {"name": "extra", "type": "string"},
    ]


def test_json_integers_beyond_64_bits_or_mixed_with_text_are_string() -> None:
    columns = guess_json_columns([{"a": 2**70, "b": 1}, {"a": 1, "b": "x"}])
    assert [c["type"] for c in columns] == ["string", "string"]


def test_a_sample_cut_inside_a_quoted_multiline_field_ignores_the_cut_record() -> None:
    sample = b'id,note,n\n1,"multi\nline",5\n2,x,6\n3,"cut here\nstill,in,quote\nmore,more,more'
    parser = guess_csv(sample, complete=False)
    assert parser["quote"] == '"'
    assert parser["columns"] == [{"name": "id", "type": "long"}, {"name": "note", "type": "string"},
                                 {"name": "n", "type": "long"}]


def test_a_number_thousands_of_digits_long_is_string_not_a_crash() -> None:
    assert types_of("a,b\n" + "9" * 6000 + ",1\n2,3\n") == ["string", "long"]


def test_a_header_with_a_quoted_line_break_is_skipped_whole() -> None:
    parser = guess_csv(b'id,"order\namount"\n1,100\n2,200\n', complete=True)
    assert parser["skip_header_lines"] == 2
    assert parser["columns"] == [{"name": "id", "type": "long"}, {"name": "order\namount", "type": "long"}]


# -- the seed's own in.parser stays fixed, as in embulk guess ----------------------------------------------------

def test_a_seed_quote_stays_and_the_columns_are_read_with_it():
    sample = b"id,name,score\n1,'Smith, J',10\n2,'Lee, K',20\n"
    guessed = guess_csv(sample, complete=True, fixed={"quote": "'", "escape": None})
    assert guessed["quote"] == "'" and guessed["escape"] is None
    assert [c["name"] for c in guessed["columns"]] == ["id", "name", "score"]
    assert [c["type"] for c in guessed["columns"]] == ["long", "string", "long"]


def test_seed_values_win_over_the_guess_and_unknown_ones_pass_through():
    sample = b"a;b\n1;2\n3;4\n"
    guessed = guess_csv(sample, complete=True, fixed={"delimiter": ";", "newline": "CRLF",
                                                      "stop_on_invalid_record": True})
    assert guessed["delimiter"] == ";" and guessed["newline"] == "CRLF" and guessed["stop_on_invalid_record"] is True
    assert [c["type"] for c in guessed["columns"]] == ["long", "long"]


def test_a_seed_skip_header_lines_is_kept_and_the_last_skipped_line_names_the_columns():
    sample = b"exported 2024-01-01\nid,amount\n1,10\n2,20\n"
    guessed = guess_csv(sample, complete=True, fixed={"skip_header_lines": 2})
    assert guessed["skip_header_lines"] == 2
    assert [(c["name"], c["type"]) for c in guessed["columns"]] == [("id", "long"), ("amount", "long")]


def test_seed_columns_are_kept_as_written():
    columns = [{"name": "code", "type": "string"}, {"name": "n", "type": "string"}]
    guessed = guess_csv(b"code,n\n007,1\n008,2\n", complete=True, fixed={"columns": columns})
    assert guessed["columns"] == columns


# -- the sample grows; csv_all_strings ----------------------------------------------------------------------------

def reader_of(data: bytes, asked: list[int]):
    def read(size: int) -> tuple[bytes, bool]:
        asked.append(size)
        return data[:size], size >= len(data)

    return read


def test_a_first_row_with_a_one_megabyte_field_does_not_break_header_or_type_detection():
    from pipeline.formats.guess import guess_growing

    data = (b"id,note,amount\n1," + b"x" * (1 << 20) + b",10\n"
            + b"".join(b"%d,short,%d\n" % (i, i * 10) for i in range(2, 40)) + b"x" * (64 << 20 >> 8))
    asked: list[int] = []
    guessed = guess_growing(reader_of(data, asked))
    assert [(c["name"], c["type"]) for c in guessed["columns"]] == [("id", "long"), ("note", "string"),
                                                                    ("amount", "long")]
    assert guessed["skip_header_lines"] == 1
    assert asked[0] == SAMPLE_BYTES and max(asked) > 1 << 20  # grown past the long row, not read whole


def test_a_small_object_is_read_once():
    from pipeline.formats.guess import guess_growing

    asked: list[int] = []
    guess_growing(reader_of(b"a,b\n1,2\n", asked))
    assert asked == [SAMPLE_BYTES]


def test_csv_all_strings_types_every_column_as_a_string():
    from pipeline.formats.guess import guess_growing

    guessed = guess_growing(reader_of(b"id,at\n1,2024-01-01 00:00:00\n2,2024-01-02 00:00:00\n", []),
                            all_strings=True)
    assert guessed["columns"] == [{"name": "id", "type": "string"}, {"name": "at", "type": "string"}]


# -- embulk-guess-csv's own cases (TestCsvGuessPlugin and its resource files; TestSchemaGuess) --------------------

BODY = (b'1,32864,2015-01-27 19:23:49,20150127,embulk\n2,14824,2015-01-27 19:01:23,20150127,embulk jruby\n'
        b'3,27559,2015-01-28 02:20:02,20150128,"Embulk ""csv"" parser plugin"\n'
        b'4,11270,2015-01-29 11:54:36,20150129,NULL\n')
TITLES = b"id,account,time,purchase,comment\n"
C5 = [("id", "long", None), ("account", "long", None), ("time", "timestamp", "%Y-%m-%d %H:%M:%S"),
      ("purchase", "timestamp", "%Y%m%d"), ("comment", "string", None)]


def shape(parser: dict) -> tuple:
    return ({key: parser.get(key) for key in ("delimiter", "quote", "escape", "null_string", "skip_header_lines",
                                              "trim_if_not_quoted")},
            [(c["name"], c["type"], c.get("format")) for c in parser["columns"]])


def unnamed(columns):
    return [(f"c{i}", kind, fmt) for i, (_, kind, fmt) in enumerate(columns)]


@pytest.mark.parametrize(("sample", "keys", "columns"), [
    # testSimple (test_simple.csv)
    (TITLES + BODY, {"delimiter": ",", "quote": '"', "escape": '"', "null_string": "NULL", "skip_header_lines": 1,
                     "trim_if_not_quoted": False}, C5),
    # suggestSemicolonAsDelimiter
    ((TITLES + BODY).replace(b",", b";"), {"delimiter": ";", "quote": '"', "escape": '"', "null_string": "NULL",
                                           "skip_header_lines": 1, "trim_if_not_quoted": False}, C5),
    # suggestTabAsDelimiter: quotes inside unquoted fields, so no quoting and no escape
    (BODY.replace(b",", b"\t").replace(b'"Embulk ""csv"" parser plugin"', b'Embulk "csv" parser plugin'),
     {"delimiter": "\t", "quote": None, "escape": None, "null_string": "NULL", "skip_header_lines": 0,
      "trim_if_not_quoted": False}, unnamed(C5)),
    # suggestSingleQuoteAsQuote
    (TITLES + BODY.replace(b'"Embulk ""csv"" parser plugin"', b"'Embulk \"'csv\"' parser plugin'"),
     {"delimiter": ",", "quote": "'", "escape": '"', "null_string": "NULL", "skip_header_lines": 1,
      "trim_if_not_quoted": False}, C5),
    # suggestBackslashAsEscape
    (TITLES + BODY.replace(b'"Embulk ""csv"" parser plugin"', b'"Embulk \\"csv\\" parser plugin"'),
     {"delimiter": ",", "quote": '"', "escape": "\\", "null_string": "NULL", "skip_header_lines": 1,
      "trim_if_not_quoted": False}, C5),
    # testFor1Rows, testFor1RowsAndHeader, testFor1RowsWithTrimNeeded
    (BODY.split(b"\n")[0] + b"\n", {"skip_header_lines": 0}, unnamed(C5)),
    (TITLES + BODY.split(b"\n")[0] + b"\n", {"skip_header_lines": 1}, C5),
    (b" 1 , 32864 ,2015-01-27 19:23:49, 20150127 , embulk\n", {"trim_if_not_quoted": True}, unnamed(C5)),
    # testHeader, single columns, testDoubleSingleColumn, testMergeTimeFormats
    (b'id,name\n12,"S""""am"\n23,Who\n34,Bar\n45,Baz\n56,Qux\n', {"skip_header_lines": 1},
     [("id", "long", None), ("name", "string", None)]),
    (b"1\n2\n3\n4\n", {"skip_header_lines": 0}, [("c0", "long", None)]),
    (b"id\n1\n2\n3\n4\n", {"skip_header_lines": 1}, [("id", "long", None)]),
    (b"ac97447f-146c-4d6c-914e-c283bb165804\n", {"skip_header_lines": 0}, [("c0", "string", None)]),
    (b"1.01\n-1.01\n+1.02\n10.001\n1.234e+5\n2.345e-6\nNaN\n+NaN\n-NaN\nInfinity\n+Infinity\n-Infinity\n",
     {"skip_header_lines": 0}, [("c0", "double", None)]),
    (b'time,name\n2021-12-1 24:30:30,"foo bar"\n2021-12-1  4:30:30,foo\n2021-12-1 24:30:30,bar\n'
     b'2021-12-1 24:30:30,baz\n', {"skip_header_lines": 1},
     [("time", "timestamp", "%Y-%m-%d %k:%M:%S"), ("name", "string", None)]),
])
def test_embulk_guess_csv_resource_cases(sample, keys, columns):
    got_keys, got_columns = shape(guess_csv(sample, complete=True))
    assert {key: got_keys[key] for key in keys} == keys
    assert got_columns == columns


@pytest.mark.parametrize(("values", "expected"), [
    # TestSchemaGuess: testCoalesce1, testCoalesce2, testCoalesce4SoLong, testCoalesce5TimestampNullFormat
    (["20160101", "20160101"], ("timestamp", "%Y%m%d")),
    (["20160101", "20160101", "12345678"], ("long", None)),
    (["9223372036854775807"] * 3, ("long", None)),
    (["2016-01-01T12:34:56", "2016-03-04T12:34:56"], ("timestamp", "%Y-%m-%dT%H:%M:%S")),
])
def test_embulk_schema_guess_coalesces_as_its_tests_say(values, expected):
    from pipeline.formats.guess import value_type

    assert value_type(values) == expected
