"""``parser: {type: parquet}``: Parquet objects through pyarrow, read by byte range, one row group at a time.

::

    parser:
      type: parquet
      columns:                       # filled in by `pipeline guess` from the file's own schema
      - {name: order_id, type: string}
      - {name: order_amt, type: double}

Only the configured columns are read (column projection), through ranged GETs of the object: the
footer first, then each row group's column chunks in buffered pieces, so memory holds about one
row group's batch, whatever the object's size. Each value becomes the canonical text of its
configured column type, losslessly or not at all:

- integers, floats, booleans, strings, lists, structs and maps follow the JSON parser's rules
  (:mod:`pipeline.formats.json`): a ``long`` takes integral numbers within 64 bits, a ``string``
  refuses a list or struct (declare the column ``json``), ``json`` writes any value as compact JSON;
- decimals keep every digit: a ``long`` takes an integral one, a ``double`` or ``string`` its exact
  text, ``json`` a JSON number;
- a timestamp with a zone (``isAdjustedToUTC``) is that instant; one without is a wall time in the
  column's ``timezone`` (``default_timezone``, UTC unless set), as a CSV timestamp without an offset
  is read; a date is its midnight there. Nanoseconds the warehouse cannot keep (it keeps
  microseconds) make the value an error rather than a rounded one;
- binary values must be UTF-8 text.

A value that does not fit is a record error naming the object, the row (1-based, as ``line``) and
the column; a configured column the file lacks fails the object, naming both.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from pipeline.errors import RecordError, SourceError
from pipeline.records import Blob, Record
from pipeline.schema import Column

TYPE = "parquet"
BATCH_ROWS = 4096  # rows converted at a time
# Each column chunk is read in pieces, never whole, each piece a ranged GET held while its column is read:
# 2 MiB (half the GETs of 1 MiB; 8 MiB, the size S3's performance guide gives, cost 60 MB more at the peak
# for six columns), less with many columns so that the pieces of all the columns read stay within
# READ_BUDGET_BYTES, 1 MiB at the least.
READ_BUFFER_BYTES = (1 << 20, 2 << 20)
READ_BUDGET_BYTES = 12 << 20
READ_AHEAD_BYTES = 256 << 10  # a smaller read fetches this much, for the reads that follow it
MAGIC = b"PAR1"
MAX_RAW_CHARS = 4096
# Decimals with at most this many digits survive a double and back as the same text (DBL_DIG).
DOUBLE_DIGITS = 15


@dataclass(frozen=True)
class ParquetParserConfig:
    columns: tuple[Column, ...] = ()
    stop_on_invalid_record: bool = False
    type: str = TYPE


def configure(section: Any, require_parser: bool, columns: Callable[..., tuple[Column, ...]]) -> ParquetParserConfig:
    config = ParquetParserConfig(columns=columns(section, require=require_parser),
                                 stop_on_invalid_record=section.boolean("stop_on_invalid_record", False))
    section.done(refused={
        "charset": "Parquet strings are UTF-8 by the format's definition",
        "decoders": "Parquet compresses its own pages (snappy, gzip, zstd, ...); pyarrow reads them",
    })
    return config


class RangeFile(io.RawIOBase):
    """A read-only, seekable file over a Blob's byte ranges: what pyarrow reads a Parquet file through."""

    def __init__(self, blob: Blob):
        super().__init__()
        self.blob = blob
        self.position = 0
        self._ahead_start = 0
        self._ahead = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.blob.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        stop = self.blob.size if size is None or size < 0 else min(self.blob.size, self.position + size)
        if stop <= self.position:
            return b""
        start = self.position
        ahead = self._ahead_start
        if not (ahead <= start and stop <= ahead + len(self._ahead)):
            # pyarrow reads page headers and small pages a few KiB at a time: one GET fetches them all.
            self._ahead_start = start
            self._ahead = self.blob.read(start, min(self.blob.size, max(stop, start + READ_AHEAD_BYTES)))
            ahead = start
        data = self._ahead[start - ahead:stop - ahead]
        self.position += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)


def read_buffer_bytes(columns: int) -> int:
    """The piece each of ``columns`` column chunks is read in."""
    low, high = READ_BUFFER_BYTES
    return max(low, min(high, READ_BUDGET_BYTES // max(1, columns)))


def _open(blob: Blob, columns: int = 1) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if blob.size < 12:
        raise SourceError(f"{blob.uri}: {blob.size} bytes is too short for a Parquet file")
    # The system allocator gives pages back as they are freed; mimalloc's pools keep about 25 MB more.
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())
    try:
        return pq.ParquetFile(RangeFile(blob), buffer_size=read_buffer_bytes(columns), pre_buffer=False)
    except SourceError:
        raise
    except Exception as error:  # pyarrow's ArrowInvalid and friends: the object is no Parquet file
        raise SourceError(f"{blob.uri}: not a readable Parquet file: {error}") from None


class ParquetReader:
    def __init__(self, config: ParquetParserConfig):
        from pipeline.formats.json import JsonOptions

        self.config = config
        self.columns = config.columns
        self.stop_on_invalid_record = config.stop_on_invalid_record
        json_converters = JsonOptions(columns=config.columns, default_metadata=()).converters
        self._converters = [_value_converter(column, convert)
                            for column, (_, _, convert) in zip(config.columns, json_converters, strict=True)]

    def records(self, blob: Blob) -> Iterator[Record | RecordError]:
        source = blob.uri
        parquet = _open(blob, len(self.columns))
        names = [c.name for c in self.columns]
        present = set(parquet.schema_arrow.names)
        lacking = [name for name in names if name not in present]
        if lacking:
            raise SourceError(f"{source}: has no column {lacking[0]!r}, which in.parser.columns lists "
                              f"(its columns: {', '.join(parquet.schema_arrow.names)})")
        types = [parquet.schema_arrow.field(name).type for name in names]
        converters = [convert(kind) for convert, kind in zip(self._converters, types, strict=True)]
        row = 0
        try:
            batches = parquet.iter_batches(batch_size=BATCH_ROWS, columns=names, use_threads=False)
            for batch in batches:
                arrays = [batch.column(index) for index in range(len(names))]
                texts = [_fast_texts(array, column) for array, column in zip(arrays, self.columns, strict=True)]
                slow = [index for index, done in enumerate(texts) if done is None]
                if not slow:  # every column converted at once: a row is its texts
                    for values in zip(*texts, strict=True):
                        row += 1
                        yield Record(list(values), row, "")
                    continue
                values_of = [_values(arrays[index]) if done is None else done for index, done in enumerate(texts)]
                for values in zip(*values_of, strict=True):
                    row += 1
                    record = list(values)
                    error = None
                    for index in slow:
                        value = record[index]
                        if value is None:
                            continue
                        try:
                            record[index] = converters[index](value)
                        except (ValueError, TypeError, OverflowError) as problem:
                            error = RecordError(source, row, str(problem), column=names[index],
                                                value=_shown(value), raw=_raw(names, values))
                            break
                    yield error if error is not None else Record(record, row, "")
        except SourceError:
            raise
        except Exception as error:  # a corrupt page: the rows before it are read, the rest are not
            from pipeline.errors import PipelineError

            if isinstance(error, PipelineError):
                raise
            raise SourceError(f"{source}: cannot read the Parquet data after row {row:,}: {error}") from None

    def native_csv(self) -> None:
        return None  # no warehouse COPY here reads Parquet as this reader does


def _fast_texts(array: Any, column: Column) -> list[str | None] | None:
    """The canonical texts of a whole column batch when its type converts without a check per value (the
    same texts the per-value path gives), else None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(kind):
        if not (pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)):
            return None
        kind = kind.value_type
    wanted = column.type
    if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and wanted == "string":
        return array.to_pylist()
    if pa.types.is_integer(kind) and wanted in ("long", "string"):
        if kind == pa.uint64() and wanted == "long":
            highest = pc.max(array).as_py()
            if highest is not None and highest >= 1 << 63:
                return None  # those values are errors, found one by one
        return pc.cast(array, pa.string()).to_pylist()
    if pa.types.is_boolean(kind) and wanted in ("boolean", "string"):
        return [None if value is None else "true" if value else "false" for value in array.to_pylist()]
    if pa.types.is_floating(kind) and wanted == "double":
        return [None if value is None else repr(value) if math.isfinite(value) else _float_word(value)
                for value in array.to_pylist()]
    return None


def _float_word(value: float) -> str:
    return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"


def _values(array: Any) -> list[Any]:
    """Python values of a column batch; nanosecond timestamps as (epoch nanoseconds, zone) so none is rounded."""
    import pyarrow as pa

    kind = array.type
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        nanos = array.cast(pa.int64()).to_pylist()
        return [None if n is None else _Nanos(n) for n in nanos]
    return array.to_pylist()


@dataclass(frozen=True, slots=True)
class _Nanos:
    value: int


def _raw(names: list[str], values: tuple) -> str:
    """The row as a JSON object, for its rejected row."""
    text = json.dumps(dict(zip(names, values, strict=True)), default=str, ensure_ascii=False)
    return text[:MAX_RAW_CHARS]


def _shown(value: Any) -> str:
    return str(value.value) if isinstance(value, _Nanos) else str(value)


def _value_converter(column: Column, json_convert: Callable[[Any], str | None]
                     ) -> Callable[[Any], Callable[[Any], str | None]]:
    """For a column, given the file's arrow type: the function from one of its values to canonical text."""
    from pipeline.formats.types import normalizer

    zone = column.timezone
    iso = normalizer(Column(column.name, "timestamp", None, timezone=zone))

    def for_type(kind: Any) -> Callable[[Any], str | None]:
        import pyarrow as pa

        aware = pa.types.is_timestamp(kind) and kind.tz is not None

        def convert(value: Any) -> str | None:
            if isinstance(value, _Nanos):
                value = _from_nanos(value.value, aware)
            if isinstance(value, Decimal):
                return _decimal(column, value)
            if isinstance(value, datetime | date | time) and not isinstance(value, bool):
                return _temporal(column, value, iso)
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise ValueError(f"binary value is not UTF-8 text (byte {error.start})") from None
            if column.type == "double" and isinstance(value, float) and not math.isfinite(value):
                return _float_word(value)
            if column.type == "json":
                value = _jsonable(value)
            elif isinstance(value, list) and value and isinstance(value[0], tuple):
                raise ValueError("a map is not a " + column.type + "; declare the column json")
            return json_convert(value)

        return convert

    return for_type


def _from_nanos(nanos: int, aware: bool) -> datetime:
    from datetime import UTC, timedelta

    seconds, rest = divmod(nanos, 1_000_000_000)
    if rest % 1000:
        raise ValueError("the timestamp has nanoseconds, and the warehouse keeps microseconds")
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=rest // 1000)
    return moment if aware else moment.replace(tzinfo=None)


def _decimal(column: Column, value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"decimal {value} is not a number")
    text = format(value, "f")
    if column.type == "long":
        if value != value.to_integral_value():
            raise ValueError(f"{text} is not a whole number")
        whole = int(value)
        if not -(1 << 63) <= whole < (1 << 63):
            raise ValueError("not a 64-bit integer")
        return str(whole)
    if column.type in ("double", "string", "json"):
        return text
    raise ValueError(f"a decimal is not a {column.type}")


def _temporal(column: Column, value: datetime | date | time, iso: Callable[[str], str]) -> str:
    if isinstance(value, time):
        if column.type in ("string", "json"):
            text = value.isoformat()
            return json.dumps(text) if column.type == "json" else text
        raise ValueError(f"a time of day is not a {column.type}")
    # A datetime carries its offset when the file says it is an instant; a date is its midnight.
    text = value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat() + " 00:00:00"
    if column.type == "timestamp":
        return iso(text)
    if column.type == "string":
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if column.type == "json":
        return json.dumps(text)
    raise ValueError(f"a {'timestamp' if isinstance(value, datetime) else 'date'} is not a {column.type}")


def _jsonable(value: Any) -> Any:
    """Nested values with what JSON can hold: decimals as numbers written exactly, times as ISO text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {str(k): _jsonable(v) for k, v in value}  # a map's (key, value) pairs
        return [_jsonable(item) for item in value]
    if isinstance(value, Decimal):
        return _json_number(value)
    if isinstance(value, _Nanos):
        return _from_nanos(value.value, True).isoformat(sep=" ")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def _json_number(value: Decimal) -> int | float | str:
    """A decimal inside a JSON value: a number when one holds it exactly, else its digits as a string."""
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        return int(value)
    if len(value.as_tuple().digits) <= DOUBLE_DIGITS:
        return float(value)  # repr() of it gives these digits back
    return format(value, "f")


def reader(config: ParquetParserConfig) -> ParquetReader:
    return ParquetReader(config)


def detects(head: bytes) -> bool:
    return head.startswith(MAGIC)


def guess(blob: Blob, fixed: Any, *, all_strings: bool = False) -> dict[str, Any]:
    """``in.parser`` from the file's own schema (its footer); a seed's ``columns`` stay as written."""
    parquet = _open(blob)
    parser: dict[str, Any] = {"type": TYPE, **{k: v for k, v in dict(fixed or {}).items() if k != "type"}}
    if not parser.get("columns"):
        parser["columns"] = [{"name": field.name, "type": "string" if all_strings else column_type(field.type)}
                             for field in parquet.schema_arrow]
    return parser


def column_type(kind: Any) -> str:
    """The Embulk type that holds every value of an arrow type without loss."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "long"
    if pa.types.is_floating(kind):
        return "double"
    if pa.types.is_decimal(kind):
        if kind.scale == 0 and kind.precision <= 18:
            return "long"
        return "double" if kind.precision <= DOUBLE_DIGITS else "string"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "timestamp"
    if pa.types.is_nested(kind):
        return "json"
    return "string"
