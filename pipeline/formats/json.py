"""JSON records (the data of one Kinesis record) into rows of the configured columns.

A record holds one JSON object, or several objects on separate lines (JSON lines): when the
whole record is not one JSON document because more follows the first, each non-blank line is
parsed as its own object and becomes its own row, numbered by its 1-based line in the record.

Each row maps every configured column to canonical text (what the writer sends to COPY) or
``None`` for NULL:

- a key absent from the object, or JSON ``null``, is NULL;
- ``long``: a JSON integer, an integral number (``3.0``) or an integer string, within 64 bits;
  ``true``/``false`` are refused;
- ``double``: a finite JSON number or a numeric string;
- ``boolean``: JSON ``true``/``false``, ``0``/``1``, or a boolean string;
- ``string``: a JSON string, or a number or boolean as written (``1.5``, ``true``); an object or
  array is refused (declare the column ``json``);
- ``timestamp``: a string in the column's ``format`` (ISO 8601 without one), or a number of
  seconds since the epoch (written ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``, like the metadata);
- ``json``: any value, as compact JSON text.

Strings that are not numbers, booleans or timestamps go through
:func:`pipeline.formats.types.normalize`, the same rules as CSV fields.

The record's metadata is available as columns: ``$record_timestamp`` (a datetime) and the
texts ``$shard_id``, ``$sequence_number`` and ``$partition_key`` (``KinesisRecord.metadata()``).
A configured column with one of those names takes its value from the metadata, not from the
object, and ``$record_timestamp`` (a timestamp) is appended to every row unless configured, as
AWS Glue does, so a ``drop_fields`` filter can drop it.

:func:`parse_record` and :func:`parse_records` never raise: bad input comes back as a
:class:`RecordError` naming the source, the position, the column and the value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, partial
from types import MappingProxyType
from typing import Any

from pipeline.errors import RecordError
from pipeline.formats.types import Normalizer, normalizer
from pipeline.schema import Column

METADATA_FIELDS: dict[str, str] = {
    "$record_timestamp": "timestamp",
    "$shard_id": "string",
    "$sequence_number": "string",
    "$partition_key": "string",
}
# Always present unless configured otherwise: the field Glue jobs drop with DropFields.
DEFAULT_METADATA = ("$record_timestamp",)
MAX_RAW_CHARS = 64 << 10  # of a bad record's text, kept in its rejected row

NO_METADATA: Mapping[str, Any] = MappingProxyType({})
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_BOOLEAN_NUMBERS = {0: "false", 1: "true"}


@dataclass(frozen=True)
class JsonOptions:
    """The ``in.parser`` of a JSON source; the reader, not the parser, acts on ``stop_on_invalid_record``."""

    columns: tuple[Column, ...]
    stop_on_invalid_record: bool = True
    max_record_bytes: int = 1 << 20
    # Metadata added to every row unless configured; a loader may leave out what its filters drop anyway.
    default_metadata: tuple[str, ...] = DEFAULT_METADATA

    def __post_init__(self) -> None:
        self.converters  # noqa: B018 -- a bad column type or format fails here, not on the first record

    @cached_property
    def record_columns(self) -> tuple[Column, ...]:
        """The columns of every row: the configured ones, then default metadata not configured."""
        names = {c.name for c in self.columns}
        extra = (Column(name, METADATA_FIELDS[name]) for name in self.default_metadata if name not in names)
        return (*self.columns, *extra)

    @cached_property
    def uses_metadata(self) -> bool:
        """Whether any row takes a value from the record's metadata (else pass :data:`NO_METADATA`)."""
        return any(c.name in METADATA_FIELDS for c in self.record_columns)

    @cached_property
    def converters(self) -> tuple[tuple[str, bool, Callable[[Any], str | None]], ...]:
        """(column name, taken from the metadata?, conversion to text) for each record column."""
        return tuple((c.name, c.name in METADATA_FIELDS, _converter(c)) for c in self.record_columns)


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str
    column: str | None = None
    value: Any = None


class _Invalid(ValueError):
    """A value does not fit its column."""


def record_columns(options: JsonOptions) -> list[Column]:
    """The columns of the rows :func:`parse_records` returns (the writer's schema before filters)."""
    return list(options.record_columns)


def row_identity(identity: str, line: int) -> str:
    """The identity of one row: the record's own, or ``<identity>#<line>`` for a JSON-lines row."""
    return identity if line == 0 else f"{identity}#{line}"


Row = dict[str, str | None]


def parse_records(
    data: bytes, metadata: Mapping[str, Any], options: JsonOptions, source: str, position: str
) -> list[tuple[int, Row | RecordError]]:
    """The rows of one record as ``(line, row or error)``; ``line`` is 0 for a one-object record."""
    text = _text(data, options)
    if isinstance(text, _Failure):
        return [(0, _error(text, source, position, data))]
    document = _parse(text)
    if isinstance(document, _Failure) and document.message.startswith(_EXTRA_DATA):
        return _json_lines(text, metadata, options, source, position)
    return [(0, _error_or_row(_row(document, text, metadata, options), source, position, text))]


def parse_record(
    data: bytes, metadata: Mapping[str, Any], options: JsonOptions, source: str, position: str | int
) -> Row | RecordError:
    """The row of a record holding exactly one JSON object."""
    text = _text(data, options)
    if isinstance(text, _Failure):
        return _error(text, source, position, data)
    return _error_or_row(_row(_parse(text), text, metadata, options), source, position, text)


# --------------------------------------------------------------------------- records

_EXTRA_DATA = "invalid JSON: Extra data"


def _text(data: bytes, options: JsonOptions) -> str | _Failure:
    if len(data) > options.max_record_bytes:
        return _Failure(
            f"the record is {len(data):,} bytes, more than max_record_bytes ({options.max_record_bytes:,})"
        )
    try:
        text = data.decode("utf-8")  # the utf-8-sig codec is written in Python: strip a BOM by hand
    except UnicodeDecodeError as error:
        return _Failure(f"the record is not UTF-8 (byte {error.start})")
    if text[:1] == "\ufeff":
        text = text[1:]
    if not text or text.isspace():
        return _Failure("the record is empty")
    return text


def _reject_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _parse(text: str) -> Any:
    """The decoded document, or a _Failure."""
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as error:
        return _Failure(f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}")
    except _Invalid as error:
        return _Failure(f"invalid JSON: {error}")
    except RecursionError:
        return _Failure("the JSON is nested too deeply")


def _json_lines(
    text: str, metadata: Mapping[str, Any], options: JsonOptions, source: str, position: str
) -> list[tuple[int, Row | RecordError]]:
    rows: list[tuple[int, Row | RecordError]] = []
    # Only "\n" ends a line: U+2028 and friends may stand unescaped inside JSON strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        row = _row(_parse(line), line, metadata, options)
        if isinstance(row, _Failure):
            row = _Failure(f"line {number}: {row.message}", row.column, row.value)
        rows.append((number, _error_or_row(row, source, position, line)))
    return rows


def _row(document: Any, text: str, metadata: Mapping[str, Any], options: JsonOptions) -> Row | _Failure:
    if isinstance(document, _Failure):
        return document
    if not isinstance(document, dict):
        return _Failure(f"the record is {_json_kind(document)}, not a JSON object")
    # Only a \u escape can put a NUL or a lone surrogate into a decoded string.
    check_text = "\\u" in text
    row: Row = {}
    for name, from_metadata, convert in options.converters:
        value = metadata.get(name) if from_metadata else document.get(name)
        if value is None:
            row[name] = None
            continue
        try:
            converted = convert(value)
            if check_text and converted is not None:
                _check_storable(converted)
        except (ValueError, TypeError, OverflowError) as error:
            return _Failure(str(error), name, value)
        except RecursionError:
            return _Failure("the JSON is nested too deeply", name)
        row[name] = converted
    return row


def _error_or_row(row: Row | _Failure, source: str, position: str | int, text: str) -> Row | RecordError:
    return _error(row, source, position, text) if isinstance(row, _Failure) else row


def _error(failure: _Failure, source: str, position: str | int, raw: str | bytes) -> RecordError:
    if isinstance(raw, bytes):
        raw = raw[: MAX_RAW_CHARS * 4].decode("utf-8", errors="backslashreplace")
    raw = _storable(raw[:MAX_RAW_CHARS])
    value = None if failure.column is None else _shown(failure.value)
    return RecordError(source, position, failure.message, column=failure.column, value=value, raw=raw)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, datetime):
        return value.isoformat()
    try:
        return _storable(json.dumps(value, ensure_ascii=False, allow_nan=False)[:200])
    except (ValueError, TypeError, RecursionError):
        return "(a value too deeply nested to show)"


def _storable(text: str) -> str:
    """``text`` with NUL and lone surrogates escaped, so the rejected row itself can be stored."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return text


def _check_storable(text: str) -> None:
    if "\x00" in text:
        raise _Invalid("contains a NUL character (\\u0000), which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid("contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text") from None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


# --------------------------------------------------------------------------- values


def _converter(column: Column) -> Callable[[Any], str | None]:
    convert = _CONVERTERS[column.type]
    from_text = normalizer(column)  # strings follow the CSV rules; ValueError for a bad format
    return partial(convert, from_text)


def _to_long(from_text: Normalizer, value: Any) -> str | None:
    if type(value) is int and _LONG_MIN <= value <= _LONG_MAX:  # the common case first
        return str(value)
    if isinstance(value, bool):
        raise _Invalid("a boolean is not a long")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise _Invalid("not an integer")
        number = int(value)
    elif isinstance(value, str):
        return from_text(value)
    else:
        raise _Invalid(f"{_json_kind(value)} is not a long")
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise _Invalid("out of the range of a 64-bit long")
    return str(number)


def _to_double(from_text: Normalizer, value: Any) -> str | None:
    if isinstance(value, bool):
        raise _Invalid("a boolean is not a double")
    if isinstance(value, int | float):
        number = float(value)  # OverflowError for an integer beyond a double's range
        if not math.isfinite(number):
            raise _Invalid("out of the range of a double")
        return repr(number)
    if isinstance(value, str):
        return from_text(value)
    raise _Invalid(f"{_json_kind(value)} is not a double")


def _to_boolean(from_text: Normalizer, value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value in _BOOLEAN_NUMBERS:
        return _BOOLEAN_NUMBERS[value]
    if isinstance(value, str):
        return from_text(value)
    raise _Invalid(f"{_json_kind(value)} is not a boolean")


def _to_string(from_text: Normalizer, value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return _timestamp_text(value)
    raise _Invalid(f"{_json_kind(value)} cannot be stored in a string column; declare the column as json")


def _to_timestamp(from_text: Normalizer, value: Any) -> str | None:
    if isinstance(value, datetime):
        return _timestamp_text(value)
    if isinstance(value, bool):
        raise _Invalid("a boolean is not a timestamp")
    if isinstance(value, int | float):
        try:
            return _timestamp_text(datetime.fromtimestamp(value, UTC))
        except (OverflowError, OSError, ValueError):
            raise _Invalid("seconds since the epoch out of range") from None
    if isinstance(value, str):
        return from_text(value)
    raise _Invalid(f"{_json_kind(value)} is not a timestamp")


def _timestamp_text(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(sep=" ")


def _to_json(from_text: Normalizer, value: Any) -> str | None:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if "\\u0000" in text:
        raise _Invalid("contains \\u0000, which PostgreSQL cannot store in JSON")
    return text


_CONVERTERS: dict[str, Callable[[Normalizer, Any], str | None]] = {
    "long": _to_long,
    "double": _to_double,
    "boolean": _to_boolean,
    "string": _to_string,
    "timestamp": _to_timestamp,
    "json": _to_json,
}
