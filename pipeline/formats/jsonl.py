"""``parser: {type: jsonl}``: one JSON object per line, as embulk-parser-jsonl reads an object.

::

    parser:
      type: jsonl
      stop_on_invalid_record: false   # else a bad line goes to <table>_rejected
      max_record_bytes: 1048576       # a longer line is rejected, never held whole in memory
      columns:
      - {name: sensorId, type: long}
      - {name: reading, type: json}

Each line's values follow the Kinesis JSON parser's column and type rules
(:mod:`pipeline.formats.json`): a missing key or ``null`` is NULL, ``long`` takes integers and
integral numbers, ``string`` refuses objects and arrays, ``json`` keeps any value as compact JSON.
The object's content is decompressed by what it starts with (gzip, bzip2, zstd), read as UTF-8 (a
leading BOM is skipped), and split on LF (a CR before it is dropped); blank lines are skipped.
A line that is not one JSON object, or holds a value its column refuses, is a record error that
names the object, its line and the column.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.errors import RecordError
from pipeline.formats.json import NO_METADATA, JsonOptions, parse_record
from pipeline.records import Blob, Record
from pipeline.schema import Column

TYPE = "jsonl"
GUESS_SAMPLE_BYTES = 1 << 20
GUESS_SAMPLE_LINES = 1000
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class JsonlParserConfig:
    columns: tuple[Column, ...] = ()
    stop_on_invalid_record: bool = False
    max_record_bytes: int = 1 << 20
    type: str = TYPE


def configure(section: Any, require_parser: bool, columns: Callable[..., tuple[Column, ...]]) -> JsonlParserConfig:
    from pipeline.errors import ConfigError

    # embulk-parser-jsonl's line decoder keys: UTF-8 (RFC 8259's encoding) and LF or CRLF read the same here.
    charset = section.string("charset", "UTF-8")
    if charset.replace("-", "").upper() != "UTF8":
        raise ConfigError(section.at("charset"), f"JSON lines are read as UTF-8, the encoding RFC 8259 requires; "
                                                 f"got {charset!r}")
    if section.string("newline", "CRLF", choices=("CRLF", "LF", "CR")) == "CR":
        raise ConfigError(section.at("newline"), "CR alone does not end a JSON line here; lines end at LF or CRLF")
    config = JsonlParserConfig(
        columns=columns(section, require=require_parser),
        stop_on_invalid_record=section.boolean("stop_on_invalid_record", False),
        max_record_bytes=section.integer("max_record_bytes", 1 << 20, minimum=1),
    )
    section.done()
    return config


class JsonlReader:
    def __init__(self, config: JsonlParserConfig):
        self.config = config
        self.columns = config.columns
        self.stop_on_invalid_record = config.stop_on_invalid_record
        # No Kinesis metadata here: an S3 line has no $record_timestamp to add.
        self._options = JsonOptions(columns=config.columns, max_record_bytes=config.max_record_bytes,
                                    default_metadata=())

    def records(self, blob: Blob) -> Iterator[Record | RecordError]:
        source = blob.uri
        names = [c.name for c in self.columns]
        chunks = blob.chunks()
        try:
            for number, line in _lines(chunks, self.config.max_record_bytes):
                if isinstance(line, int):
                    yield RecordError(source, number, f"the line is {line:,} bytes or more, more than "
                                                      f"max_record_bytes ({self.config.max_record_bytes:,})")
                    continue
                if not line.strip():
                    continue
                row = parse_record(line, NO_METADATA, self._options, source, number)
                raw = line.decode("utf-8", errors="backslashreplace")
                if isinstance(row, RecordError):
                    yield row
                    continue
                yield Record([row[name] for name in names], number, raw)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def native_csv(self) -> None:
        return None  # no warehouse COPY reads JSON lines as this reader does


def _lines(chunks: Iterable[bytes], limit: int) -> Iterator[tuple[int, bytes | int]]:
    """(1-based line number, the line without its LF or CRLF) or, for a line over ``limit`` bytes, its size so far;
    a first line's UTF-8 BOM is dropped. Memory holds at most about ``limit`` bytes of one line."""
    number = 0
    pending = b""
    overlong = 0  # bytes of a line being skipped for its length
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                rest = chunk[start:]
                if overlong:
                    overlong += len(rest)
                elif len(pending) + len(rest) > limit:
                    overlong = len(pending) + len(rest)
                    pending = b""
                else:
                    pending += rest
                break
            piece = chunk[start:end]
            number += 1
            if overlong:
                yield number, overlong + len(piece)
                overlong = 0
            else:
                line = pending + piece if pending else piece
                pending = b""
                if line.endswith(b"\r"):
                    line = line[:-1]
                if number == 1 and line.startswith(_BOM):
                    line = line[len(_BOM):]
                if len(line) > limit:
                    yield number, len(line)
                else:
                    yield number, line
            start = end + 1
    if overlong:
        yield number + 1, overlong
    elif pending:
        line = pending[:-1] if pending.endswith(b"\r") else pending
        yield number + 1, line[len(_BOM):] if number == 0 and line.startswith(_BOM) else line


def reader(config: JsonlParserConfig) -> JsonlReader:
    return JsonlReader(config)


def detects(head: bytes) -> bool:
    """An object whose first non-blank byte opens a JSON object, and whose first line is one."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.startswith(b"{"):
        return False
    first, found, _ = text.partition(b"\n")
    if not found:
        return True  # one long line, cut by the sample: its start is still an object's
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:
        return False


def guess(blob: Blob, fixed: Any, *, all_strings: bool = False) -> dict[str, Any]:
    """``in.parser`` for a JSON-lines object: its keys in first-seen order, typed from the first lines' values."""
    from pipeline.formats.guess import guess_json_columns

    documents: list[dict[str, Any]] = []
    read = 0
    chunks = blob.chunks()
    try:
        for _, line in _lines(chunks, GUESS_SAMPLE_BYTES):
            if isinstance(line, int) or not line.strip():
                continue
            read += len(line)
            try:
                document = json.loads(line)
            except ValueError:
                continue  # a bad line says nothing about the columns; the load rejects it
            if isinstance(document, dict):
                documents.append(document)
            if len(documents) >= GUESS_SAMPLE_LINES or read >= GUESS_SAMPLE_BYTES:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    parser: dict[str, Any] = {"type": TYPE, **{k: v for k, v in dict(fixed or {}).items() if k != "columns"}}
    if (fixed or {}).get("columns"):
        parser["columns"] = fixed["columns"]
    else:
        columns = guess_json_columns(documents)
        if all_strings:
            columns = [{"name": c["name"], "type": "string"} for c in columns]
        parser["columns"] = columns
    return parser

