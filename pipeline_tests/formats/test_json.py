"""JSON records into rows: one object per record, or JSON lines; values as the writer's text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pipeline.errors import RecordError
from pipeline.formats.json import JsonOptions, parse_record, parse_records, record_columns, row_identity
from pipeline.formats.types import normalize
from pipeline.schema import Column

SOURCE = "test-streaming-data/shardId-000000000001"
SEQUENCE = "49650000000000000000000000000000000000000000000000001234"
ARRIVAL = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
METADATA = {
    "$record_timestamp": ARRIVAL,
    "$shard_id": "shardId-000000000001",
    "$sequence_number": SEQUENCE,
    "$partition_key": "sensor-7",
}
SENSOR = JsonOptions(
    columns=(
        Column("sensorId", "long"),
        Column("currentTemperature", "double"),
        Column("status", "string"),
        Column("online", "boolean"),
        Column("eventTime", "timestamp"),
        Column("tags", "json"),
    )
)


def parse(data: bytes | str, options: JsonOptions = SENSOR):
    return parse_record(data.encode() if isinstance(data, str) else data, METADATA, options, SOURCE, SEQUENCE)


def one_column(kind: str, fmt: str | None = None) -> JsonOptions:
    return JsonOptions(columns=(Column("v", kind, fmt),))


def value_of(json_value: str, kind: str, fmt: str | None = None):
    row = parse(f'{{"v": {json_value}}}', one_column(kind, fmt))
    return row if isinstance(row, RecordError) else row["v"]


# -- one object per record ---------------------------------------------------------------------


def test_an_object_becomes_a_row_of_the_configured_columns_plus_the_record_timestamp():
    row = parse(
        '{"sensorId": 42, "currentTemperature": 21.5, "status": "OK", "online": true,'
        ' "eventTime": "2024-05-06T07:08:00Z", "tags": {"room": "lab", "floors": [1, 2]}, "ignored": 1}'
    )

    assert row == {
        "sensorId": "42",
        "currentTemperature": "21.5",
        "status": "OK",
        "online": "true",
        "eventTime": "2024-05-06 07:08:00+00:00",
        "tags": '{"room":"lab","floors":[1,2]}',
        "$record_timestamp": "2024-05-06 07:08:09.123000+00:00",
    }
    assert [c.name for c in record_columns(SENSOR)] == list(row)


def test_a_key_absent_from_the_object_and_json_null_are_null():
    row = parse('{"sensorId": 42, "status": null}')

    assert row["status"] is None
    assert row["currentTemperature"] is None
    assert row["tags"] is None


def test_configured_metadata_columns_take_the_record_metadata_not_the_object():
    options = JsonOptions(columns=(Column("sensorId", "long"), Column("$shard_id"), Column("$partition_key")))

    row = parse('{"sensorId": 1, "$shard_id": "forged"}', options)

    assert row == {
        "sensorId": "1",
        "$shard_id": "shardId-000000000001",
        "$partition_key": "sensor-7",
        "$record_timestamp": "2024-05-06 07:08:09.123000+00:00",
    }


def test_the_record_timestamp_can_be_configured_as_a_column_of_its_own_place_and_type():
    options = JsonOptions(columns=(Column("$record_timestamp", "string"), Column("sensorId", "long")))

    assert [c.name for c in record_columns(options)] == ["$record_timestamp", "sensorId"]
    assert parse('{"sensorId": 1}', options)["$record_timestamp"] == "2024-05-06 07:08:09.123000+00:00"


@pytest.mark.parametrize(
    ("json_value", "kind", "expected"),
    [
        ("42", "long", "42"),
        ("-9223372036854775808", "long", "-9223372036854775808"),
        ("3.0", "long", "3"),
        ("21.5", "double", "21.5"),
        ("7", "double", "7.0"),
        ("true", "boolean", "true"),
        ("0", "boolean", "false"),
        ('"text"', "string", "text"),
        ("12", "string", "12"),
        ("1.25", "string", "1.25"),
        ("false", "string", "false"),
        ("1714979289", "timestamp", "2024-05-06 07:08:09+00:00"),
        ("1714979289.5", "timestamp", "2024-05-06 07:08:09.500000+00:00"),
        ('{"b": [1, {"c": null}], "a": "é"}', "json", '{"b":[1,{"c":null}],"a":"é"}'),
        ('"just text"', "json", '"just text"'),
        ("[1, 2]", "json", "[1,2]"),
    ],
)
def test_json_values_become_the_canonical_text_of_their_column_type(json_value, kind, expected):
    assert value_of(json_value, kind) == expected


@pytest.mark.parametrize(
    ("text", "kind", "fmt"),
    [
        (" 17 ", "long", None),
        ("12abc", "long", None),
        ("1e3", "double", None),
        ("NaN", "double", None),
        ("yes", "boolean", None),
        ("maybe", "boolean", None),
        ("2024-05-06 07:08:09", "timestamp", None),
        ("yesterday", "timestamp", None),
        ("06/05/2024 07:08 +0900", "timestamp", "%d/%m/%Y %H:%M %z"),
        ('{"a": 1}', "json", None),
    ],
)
def test_a_json_string_in_a_typed_column_follows_the_same_rules_as_a_csv_field(text, kind, fmt):
    column = Column("v", kind, fmt)
    try:
        expected = normalize(text, column)
    except ValueError as error:
        expected = str(error)

    result = value_of(json.dumps(text), kind, fmt)

    if kind == "json":  # a JSON string is a JSON value in its own right, not JSON text to parse
        assert result == json.dumps(text)
    elif isinstance(result, RecordError):
        assert (result.message, result.value, result.column) == (expected, text, "v")
    else:
        assert result == expected


@pytest.mark.parametrize(
    ("json_value", "kind", "reason"),
    [
        ("true", "long", "a boolean is not a long"),
        ("1.5", "long", "not an integer"),
        ("9223372036854775808", "long", "out of the range of a 64-bit long"),
        ("[1]", "long", "an array is not a long"),
        ("false", "double", "a boolean is not a double"),
        ("1" + "0" * 400, "double", "int too large"),
        ('{"x": 1}', "double", "an object is not a double"),
        ("2", "boolean", "a number is not a boolean"),
        ('{"x": 1}', "string", "declare the column as json"),
        ("[1, 2]", "string", "declare the column as json"),
        ("true", "timestamp", "a boolean is not a timestamp"),
        ("1e300", "timestamp", "out of range"),
    ],
)
def test_a_value_that_does_not_fit_its_column_is_a_record_error_naming_column_and_value(
    json_value, kind, reason
):
    error = value_of(json_value, kind)

    assert isinstance(error, RecordError)
    assert error.column == "v"
    decoded = json.loads(json_value)
    assert error.value == (decoded if isinstance(decoded, str) else json.dumps(decoded)[:200])
    assert reason in error.message
    assert error.source == SOURCE
    assert error.position == SEQUENCE
    assert error.raw == f'{{"v": {json_value}}}'


def test_a_record_error_describes_where_and_what():
    error = parse('{"sensorId": 4.2}')

    assert str(error) == (f"{SOURCE} sequence {SEQUENCE}, column sensorId: not an integer (value '4.2')")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"sensorId": 1', "invalid JSON: Expecting ',' delimiter at line 1 column 15"),
        (b"[1, 2]", "the record is an array, not a JSON object"),
        (b'"text"', "the record is a string, not a JSON object"),
        (b"null", "the record is null, not a JSON object"),
        (b'{"sensorId": NaN}', "invalid JSON: NaN is not valid JSON"),
        (b'{"sensorId": Infinity}', "invalid JSON: Infinity is not valid JSON"),
        (b"\xff\xfe{}", "the record is not UTF-8 (byte 0)"),
        (b"  \n", "the record is empty"),
        (b"[" * 100_000 + b"]" * 100_000, "the JSON is nested too deeply"),
    ],
)
def test_a_record_that_is_not_one_json_object_is_a_record_error(data, reason):
    error = parse(data)

    assert isinstance(error, RecordError)
    assert error.message == reason
    assert error.column is None
    assert (error.source, error.position) == (SOURCE, SEQUENCE)


def test_a_record_over_max_record_bytes_is_refused_before_parsing():
    options = JsonOptions(columns=(Column("v"),), max_record_bytes=100)
    data = json.dumps({"v": "x" * 200}).encode()

    error = parse(data, options)

    assert isinstance(error, RecordError)
    assert error.message == "the record is 209 bytes, more than max_record_bytes (100)"
    assert error.raw == data.decode()


def test_text_postgresql_cannot_store_is_a_record_error():
    nul = parse('{"status": "on\\u0000off"}')
    surrogate = parse('{"status": "\\ud800"}')
    nul_in_json = parse('{"tags": {"k": "\\u0000"}}')

    assert isinstance(nul, RecordError) and "NUL" in nul.message and nul.column == "status"
    assert isinstance(surrogate, RecordError) and "surrogate" in surrogate.message
    assert isinstance(nul_in_json, RecordError) and nul_in_json.column == "tags"


def test_escaped_text_that_postgresql_can_store_is_kept():
    row = parse('{"status": "caf\\u00e9 \\ud83d\\ude00", "tags": ["\\u00e9"]}')

    assert row["status"] == "café 😀"
    assert row["tags"] == '["é"]'


def test_a_utf8_byte_order_mark_is_ignored():
    assert parse(b'\xef\xbb\xbf{"sensorId": 5}')["sensorId"] == "5"


def test_a_bad_column_format_fails_when_the_options_are_made_not_on_a_record():
    with pytest.raises(ValueError, match="uses %K, which is not supported"):
        JsonOptions(columns=(Column("t", "timestamp", "%Y %K"),))


# -- JSON lines --------------------------------------------------------------------------------


def test_a_record_of_json_lines_gives_one_row_per_line_numbered_by_its_line():
    data = b'{"sensorId": 1}\n\n{"sensorId": 2}\r\n{"sensorId": 3}\n'

    rows = parse_records(data, METADATA, SENSOR, SOURCE, SEQUENCE)

    assert [(line, row["sensorId"]) for line, row in rows] == [(1, "1"), (3, "2"), (4, "3")]


def test_a_bad_line_is_rejected_alone_and_names_its_line():
    data = b'{"sensorId": 1}\n{"sensorId": true}\n{oops\n{"sensorId": 4}'

    rows = parse_records(data, METADATA, SENSOR, SOURCE, SEQUENCE)

    assert [line for line, _ in rows] == [1, 2, 3, 4]
    assert rows[0][1]["sensorId"] == "1" and rows[3][1]["sensorId"] == "4"
    bad_value, bad_json = rows[1][1], rows[2][1]
    assert isinstance(bad_value, RecordError) and bad_value.message == "line 2: a boolean is not a long"
    assert bad_value.raw == '{"sensorId": true}'
    assert isinstance(bad_json, RecordError) and bad_json.message.startswith("line 3: invalid JSON")


def test_a_one_object_record_is_line_0_even_when_pretty_printed():
    rows = parse_records(b'{\n  "sensorId": 1\n}\n', METADATA, SENSOR, SOURCE, SEQUENCE)

    assert [(line, row["sensorId"]) for line, row in rows] == [(0, "1")]


def test_only_newline_separates_json_lines_not_unicode_line_separators_inside_strings():
    data = '{"status": "a\u2028b"}\n{"status": "c\x85d"}'.encode()

    rows = parse_records(data, METADATA, SENSOR, SOURCE, SEQUENCE)

    assert [row["status"] for _, row in rows] == ["a\u2028b", "c\x85d"]


def test_each_json_lines_row_has_its_own_identity_and_a_one_object_record_keeps_the_records():
    assert row_identity("s/shardId-1/5", 0) == "s/shardId-1/5"
    assert row_identity("s/shardId-1/5", 3) == "s/shardId-1/5#3"


# -- never an exception ------------------------------------------------------------------------

EVERY_TYPE = JsonOptions(
    columns=tuple(Column(k, k) for k in ("long", "double", "boolean", "string", "timestamp", "json")),
    max_record_bytes=4096,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def assert_rows_or_errors(results) -> None:
    assert results
    for line, result in results:
        assert isinstance(line, int) and line >= 0
        if isinstance(result, RecordError):
            assert result.source == SOURCE and result.position == SEQUENCE
            (result.raw or "").encode("utf-8")  # the rejected row itself can be stored
        else:
            assert list(result) == [c.name for c in record_columns(EVERY_TYPE)]
            for value in result.values():
                if value is not None:
                    assert isinstance(value, str) and "\x00" not in value
                    value.encode("utf-8")  # COPY sends UTF-8: a lone surrogate would raise here


@settings(max_examples=500)
@given(st.binary(max_size=5000))
def test_any_bytes_give_rows_or_record_errors_and_never_raise(data):
    assert_rows_or_errors(parse_records(data, METADATA, EVERY_TYPE, SOURCE, SEQUENCE))
    result = parse_record(data, METADATA, EVERY_TYPE, SOURCE, SEQUENCE)
    assert isinstance(result, dict | RecordError)


@settings(max_examples=500)
@given(
    st.dictionaries(
        st.sampled_from(["long", "double", "boolean", "string", "timestamp", "json", "x"]), json_values
    )
)
def test_any_json_object_gives_a_row_or_a_record_error_and_never_raises(document):
    data = json.dumps(document).encode()

    assert_rows_or_errors(parse_records(data, METADATA, EVERY_TYPE, SOURCE, SEQUENCE))


@settings(max_examples=200)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["long", "string", "json"]), json_values), min_size=1, max_size=5
    )
)
def test_any_json_lines_give_one_result_per_line(documents):
    data = "\n".join(json.dumps(d) for d in documents).encode()
    # A record over max_record_bytes is refused whole, before its lines are read (tested on its own above).
    assume(len(data) <= EVERY_TYPE.max_record_bytes)

    results = parse_records(data, METADATA, EVERY_TYPE, SOURCE, SEQUENCE)

    assert_rows_or_errors(results)
    assert len(results) == len(documents)
