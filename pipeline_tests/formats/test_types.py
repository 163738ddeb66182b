"""Embulk type conversion: what each type accepts and the text PostgreSQL is sent."""

from __future__ import annotations

import pytest

from pipeline.formats.types import normalize, postgres_parses_natively
from pipeline.schema import Column

LONG = Column("n", "long")
DOUBLE = Column("x", "double")
BOOLEAN = Column("b", "boolean")
JSON = Column("j", "json")


def timestamp(fmt: str | None = None) -> Column:
    return Column("at", "timestamp", fmt)


def test_null_stays_null_for_every_type() -> None:
    for kind in ("string", "long", "double", "boolean", "json", "timestamp"):
        assert normalize(None, Column("c", kind)) is None


def test_string_is_unchanged() -> None:
    assert normalize("  嫌われる勇気 ", Column("s")) == "  嫌われる勇気 "


@pytest.mark.parametrize(
    ("raw", "text"),
    [("42", "42"), (" 42 ", "42"), ("+5", "5"), ("-0", "0"), ("007", "7"),
     ("9223372036854775807", "9223372036854775807"), ("-9223372036854775808", "-9223372036854775808")],
)
def test_long_accepts_signed_64_bit_integers(raw: str, text: str) -> None:
    assert normalize(raw, LONG) == text


@pytest.mark.parametrize("raw", ["9223372036854775808", "-9223372036854775809", "1.0", "1e3", "", " ",
                                 "1_000", "١٢٣", "0x10", "12a"])
def test_long_refuses_anything_else(raw: str) -> None:
    with pytest.raises(ValueError, match="not a 64-bit integer"):
        normalize(raw, LONG)


@pytest.mark.parametrize(
    ("raw", "text"),
    [("1.5", "1.5"), (" -2.25 ", "-2.25"), ("1e3", "1e3"), (".5", ".5"), ("0.1000000000000000055511",
     "0.1000000000000000055511"), ("NaN", "NaN"), ("+NaN", "NaN"), ("Infinity", "Infinity"),
     ("-inf", "-Infinity"), ("1e-310", "1e-310")],
)
def test_double_accepts_what_postgresql_float8_reads(raw: str, text: str) -> None:
    assert normalize(raw, DOUBLE) == text


@pytest.mark.parametrize(("raw", "reason"), [("1e400", "out of range"), ("1e-400", "out of range"),
                                             ("abc", "not a double"), ("1_0", "not a double"),
                                             ("0x1p3", "not a double"), ("", "not a double")])
def test_double_refuses_what_postgresql_would_refuse(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize(raw, DOUBLE)


@pytest.mark.parametrize("raw", ["true", "TRUE", "Yes", "y", "on", "1", "t", " True "])
def test_boolean_true_words(raw: str) -> None:
    assert normalize(raw, BOOLEAN) == "true"


@pytest.mark.parametrize("raw", ["false", "No", "N", "OFF", "0", "f"])
def test_boolean_false_words(raw: str) -> None:
    assert normalize(raw, BOOLEAN) == "false"


def test_boolean_refuses_other_words() -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        normalize("maybe", BOOLEAN)


def test_json_is_compacted_keeping_numbers_and_key_order_as_written() -> None:
    raw = '{ "b" : [1, 2.50, 1e2] , "a":"x y", "b": null }'
    assert normalize(raw, JSON) == '{"b":[1,2.50,1e2],"a":"x y","b":null}'


def test_json_scalars_are_json_too() -> None:
    assert normalize(' "text" ', JSON) == '"text"'


@pytest.mark.parametrize(
    "raw", ["{", "{'a': 1}", "[NaN]", '{"a": Infinity}', "[1] x", '"\\u0000"', '"\\ud800"']
)
def test_json_refuses_what_postgresql_jsonb_cannot_hold(raw: str) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        normalize(raw, JSON)


@pytest.mark.parametrize(
    ("fmt", "raw", "text"),
    [
        ("%Y-%m-%d %H:%M:%S", "2015-01-27 19:23:49", "2015-01-27 19:23:49"),
        ("%Y-%m-%d", "2015-01-27", "2015-01-27 00:00:00"),
        ("%Y%m%d", "20150127", "2015-01-27 00:00:00"),
        ("%Y/%m/%d %H:%M:%S", "2015/1/7 9:03:04", "2015-01-07 09:03:04"),
        ("%Y-%m-%d %H:%M:%S.%N %z", "2015-01-27 19:23:49.123456789 +0900",
         "2015-01-27 19:23:49.123456789+09:00"),
        ("%Y-%m-%dT%H:%M:%S.%L%:z", "2015-01-27T19:23:49.120-05:30", "2015-01-27 19:23:49.12-05:30"),
        ("%Y-%m-%dT%H:%M:%S%z", "2015-01-27T19:23:49Z", "2015-01-27 19:23:49+00:00"),
        ("%d/%b/%Y:%H:%M:%S %z", "27/Jan/2015:19:23:49 -0800", "2015-01-27 19:23:49-08:00"),
        ("%a %b %e %H:%M:%S %Y", "Tue Jan  6 19:23:49 2015", "2015-01-06 19:23:49"),
        ("%Y-%m-%d %I:%M %p", "2015-01-27 12:05 AM", "2015-01-27 00:05:00"),
        ("%Y-%m-%d %H:%M:%S %Z", "2015-01-27 19:23:49 JST", "2015-01-27 19:23:49+09:00"),
        ("%Y-%m-%d %H:%M %Z", "2015-07-01 12:00 Asia/Tokyo", "2015-07-01 12:00:00+09:00"),
        ("%s", "1422354229", "2015-01-27 10:23:49+00:00"),
        ("%F %T", "2015-12-31 24:00:00", "2016-01-01 00:00:00"),
        ("%Y年%m月%d日", "2015年01月27日", "2015-01-27 00:00:00"),
    ],
)
def test_timestamp_parses_ruby_strptime_formats_into_iso_text(fmt: str, raw: str, text: str) -> None:
    assert normalize(raw, timestamp(fmt)) == text


@pytest.mark.parametrize(
    ("raw", "text"),
    [("2015-01-27", "2015-01-27 00:00:00"), ("2015-01-27T19:23:49", "2015-01-27 19:23:49"),
     ("2015-01-27 19:23:49.5+09:00", "2015-01-27 19:23:49.5+09:00"),
     ("2015-01-27T19:23Z", "2015-01-27 19:23:00+00:00")],
)
def test_timestamp_without_format_reads_iso_8601(raw: str, text: str) -> None:
    assert normalize(raw, timestamp()) == text


@pytest.mark.parametrize(
    ("fmt", "raw", "reason"),
    [("%Y-%m-%d", "2015/01/27", "does not match timestamp format %Y-%m-%d"),
     ("%Y-%m-%d", "2015-02-29", "not a valid date"),
     ("%Y-%m-%d %H:%M:%S", "2015-01-27 25:00:00", "not a valid time"),
     ("%Y-%m-%d %H:%M:%S %z", "2015-01-27 10:00:00 +1600", "offset out of range"),
     ("%Y-%m-%d %H:%M:%S %Z", "2015-01-27 10:00:00 Mars/Base", "unknown time zone"),
     (None, "27/01/2015", "does not match an ISO 8601 timestamp")],
)
def test_timestamp_refusals_say_why(fmt: str | None, raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize(raw, timestamp(fmt))


def test_unsupported_format_directive_is_reported() -> None:
    with pytest.raises(ValueError, match="uses %U, which is not supported"):
        normalize("2015", timestamp("%Y %U"))


@pytest.mark.parametrize("kind", ["string", "long", "double", "boolean", "json"])
def test_postgresql_parses_the_plain_types_natively(kind: str) -> None:
    assert postgres_parses_natively(Column("c", kind))


@pytest.mark.parametrize(
    ("fmt", "native"),
    [(None, True), ("%Y-%m-%d", True), ("%Y-%m-%d %H:%M:%S", True), ("%Y-%m-%dT%H:%M:%S.%N%z", True),
     ("%Y-%m-%d %H:%M:%S.%6N %:z", True), ("%F %T", True), ("%Y/%m/%d %H:%M:%S", False), ("%Y%m%d", False),
     ("%d/%b/%Y:%H:%M:%S %z", False), ("%s", False), ("%Y-%m-%d %H:%M:%S %Z", False),
     ("%Y-%m-%dT%H:%M:%SZ", False)],
)
def test_postgresql_parses_only_iso_like_timestamp_formats_natively(fmt: str | None, native: bool) -> None:
    assert postgres_parses_natively(timestamp(fmt)) is native


def test_a_long_of_thousands_of_digits_is_out_of_range() -> None:
    with pytest.raises(ValueError, match="not a 64-bit integer: out of range"):
        normalize("9" * 6000, LONG)


# -- Embulk's java: formats (java.time DateTimeFormatter letters) ------------------------------------------------

@pytest.mark.parametrize(("fmt", "raw", "expected"), [
    ("java:yyyy-MM-dd HH:mm:ss", "2024-07-01 09:30:15", "2024-07-01 09:30:15"),
    ("java:yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2024-07-01T09:30:15.123+09:00", "2024-07-01 09:30:15.123+09:00"),
    ("java:EEE, dd MMM yyyy HH:mm:ss Z", "Mon, 01 Jul 2024 09:30:15 +0000", "2024-07-01 09:30:15+00:00"),
    ("java:dd/MMM/yyyy:HH:mm:ss Z", "01/Jul/2024:09:30:15 -0700", "2024-07-01 09:30:15-07:00"),
    ("java:yyyyMMdd", "20240701", "2024-07-01 00:00:00"),
    ("java:h:mm a, d MMMM yyyy", "9:05 PM, 1 July 2024", "2024-07-01 21:05:00"),
])
def test_java_formats_read_what_java_time_would(fmt, raw, expected):
    assert normalize(raw, Column("t", "timestamp", format=fmt)) == expected


@pytest.mark.parametrize("fmt", ["java:yyyy-MM-dd G", "java:yyyy-'MM"])
def test_a_java_letter_we_do_not_read_is_refused(fmt):
    with pytest.raises(ValueError, match="java format"):
        normalize("2024-07-01", Column("t", "timestamp", format=fmt))


def test_an_out_of_range_date_is_a_refused_value_not_a_rolled_over_one():
    # java.time (ResolverStyle.STRICT) and Ruby strptime both refuse Feb 30; so does the reader.
    with pytest.raises(ValueError, match="not a valid date"):
        normalize("2024-02-30 00:00:00", Column("t", "timestamp", format="%Y-%m-%d %H:%M:%S"))
