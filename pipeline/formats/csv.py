"""Streaming CSV reader with Embulk's parser options and exact physical line numbers.

This is the slow path of a load: the writer streams raw bytes into ``COPY`` first and only when the
server rejects an object does it read the object again here, to find each bad record. So the
reader is exact rather than forgiving, and it streams: memory is bounded by the largest record.

Dialect (Embulk's CsvTokenizer, checked against its source):

- Records are split on LF, CRLF or CR, mixed freely; empty lines and comment lines are skipped.
- A field is quoted only when the quote character opens it (after spaces if
  ``trim_if_not_quoted``); elsewhere a quote is an ordinary character. Inside quotes, a doubled
  quote or ``escape`` + quote/escape stands for the character.
  After the closing quote only spaces may come before the delimiter.
- NULL: with no ``null_string`` an unquoted empty field is NULL and a quoted one never is; with a
  ``null_string`` exactly the fields equal to it are NULL, quoted or not (an unquoted empty field
  is then ''), as Embulk's tokenizer reads them (TestCsvTokenizer.testChangeNullString).
- A quoted value that spans lines holds the ``newline`` option's line break (CRLF by default)
  wherever it spans, as Embulk's tokenizer writes it, whatever the file's own line breaks are.
- After a record with the wrong number of fields, undecodable bytes or a NUL, reading goes on with
  the next record. After a quoting error (an unclosed quote, text after a closing quote, a field
  over ``max_quoted_size_limit``) the record's end is unknown, so reading goes on from the physical
  line after the one where it started, as Embulk does.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from pipeline.errors import RecordError
from pipeline.formats.decode import ASCII_COMPATIBLE_CODECS, UTF8_BOM, python_codec
from pipeline.schema import Column

NEWLINES = {"CRLF": "\r\n", "LF": "\n", "CR": "\r"}
UNCLOSED_QUOTE = "quoted field is not closed before the end of the data"
QUOTES_IN_QUOTED_FIELDS = ("ACCEPT_ONLY_RFC4180_ESCAPED", "ACCEPT_STRAY_QUOTES_ASSUMING_NO_DELIMITERS_IN_FIELDS")


@dataclass(frozen=True)
class CsvOptions:
    """Embulk's ``parser: {type: csv}`` options, with the defaults our configs use."""

    charset: str = "UTF-8"
    newline: str = "CRLF"  # the line break of a quoted value that spans lines; records split on LF, CRLF and CR
    delimiter: str = ","
    quote: str | None = '"'
    escape: str | None = '"'
    null_string: str | None = None
    skip_header_lines: int = 0
    trim_if_not_quoted: bool = False
    comment_line_marker: str | None = None
    allow_extra_columns: bool = False
    allow_optional_columns: bool = False
    max_quoted_size_limit: int = 131072  # characters of one quoted field, as Embulk counts
    columns: tuple[Column, ...] = ()
    # Embulk's quotes_in_quoted_fields: RFC 4180 (a quote inside quotes is doubled), or stray quotes
    # accepted on the assumption that no field holds the delimiter.
    quotes_in_quoted_fields: str = "ACCEPT_ONLY_RFC4180_ESCAPED"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        python_codec(self.charset)
        if self.newline not in NEWLINES:
            raise ValueError(f"newline must be one of CRLF, LF, CR, not {self.newline!r}")
        if not self.delimiter or "\r" in self.delimiter or "\n" in self.delimiter:
            raise ValueError(f"delimiter must be non-empty and without line breaks, not {self.delimiter!r}")
        for name in ("quote", "escape"):
            char = getattr(self, name)
            if char is not None and (len(char) != 1 or char in "\r\n" or self.delimiter.startswith(char)):
                raise ValueError(f"{name} must be null or one character, not the delimiter; not {char!r}")
        if self.skip_header_lines < 0:
            raise ValueError("skip_header_lines must not be negative")
        if self.max_quoted_size_limit < 1:
            raise ValueError("max_quoted_size_limit must be positive")
        if self.comment_line_marker == "":
            raise ValueError("comment_line_marker must not be empty")
        if self.quotes_in_quoted_fields not in QUOTES_IN_QUOTED_FIELDS:
            raise ValueError(f"quotes_in_quoted_fields must be one of {', '.join(QUOTES_IN_QUOTED_FIELDS)}")
        if self.quotes_in_quoted_fields != QUOTES_IN_QUOTED_FIELDS[0] and self.trim_if_not_quoted:
            # As Embulk's CsvTokenizer.Builder refuses it.
            raise ValueError(f"quotes_in_quoted_fields {self.quotes_in_quoted_fields} cannot be used with "
                             "trim_if_not_quoted: true")


@dataclass(slots=True)
class CsvRecord:
    """One good record: ``values`` aligned to the configured columns (None is NULL)."""

    values: list[str | None]
    line: int  # 1-based physical line where the record starts, counting skipped header lines
    raw: str  # the record's text without its final line break


# (message, index of the field at fault or None, value to show or None)
Problem = tuple[str, int | None, str | None]
# (line, fields, raw, problem): what the tokenizer finds, before fields are matched to columns.
Row = tuple[int, list[str | None], str, Problem | None]


def read_records(
    chunks: Iterable[bytes], options: CsvOptions, source: str
) -> Generator[CsvRecord | RecordError, None, None]:
    """Parse a decompressed byte stream into records, yielding a RecordError for each bad one.

    Errors are yielded, never raised, so the caller decides whether to stop or to reject the record;
    reading goes on with the next record either way.
    """
    names = [column.name for column in options.columns]
    count = len(names)
    allow_optional = options.allow_optional_columns
    allow_extra = options.allow_extra_columns
    for line, fields, raw, problem in iter_rows(chunks, options):
        if problem is not None:
            message, index, value = problem
            column = names[index] if index is not None and index < count else None
            shown = None if value is None else printable(value)
            yield RecordError(source, line, message, column=column, value=shown, raw=printable(raw))
            continue
        size = len(fields)
        if size != count:
            if size < count and allow_optional:
                fields.extend([None] * (count - size))
            elif size > count and allow_extra:
                del fields[count:]
            elif size < count:
                yield RecordError(
                    source, line, f"record has {size} fields but {count} columns are configured; "
                    f"missing from column {names[size]}", column=names[size], raw=raw)
                continue
            else:
                after = f" after the last column {names[-1]}" if names else ""
                yield RecordError(
                    source, line, f"record has {size} fields but {count} columns are configured; "
                    f"extra field {count + 1}{after}", value=fields[count], raw=raw)
                continue
        yield CsvRecord(fields, line, raw)


def iter_rows(chunks: Iterable[bytes], options: CsvOptions) -> Iterator[Row]:
    """Tokenize a byte stream into rows of fields, not yet matched to columns (``guess`` uses this too)."""
    lines = physical_lines(chunks, options.charset)
    skipped = 0
    while skipped < options.skip_header_lines and next(lines, None) is not None:
        skipped += 1
    return rows_from_lines(lines, options, skipped)


class _Undecodable(str):
    """A line with bytes its charset cannot decode; each bad byte b is held as chr(0xDC00 + b)."""


_KEEP_BAD_BYTES = "pipeline.keep-bad-bytes"


def _keep_bad_bytes(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start:error.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), error.end


codecs.register_error(_KEEP_BAD_BYTES, _keep_bad_bytes)
_BAD_CHAR = re.compile("[\udc00-\udcff]")
_UNPRINTABLE = re.compile("[\x00\udc00-\udcff]")


def printable(text: str) -> str:
    """``text`` with NUL and undecodable bytes shown as ``\\xNN``, so PostgreSQL can store it."""
    if not _UNPRINTABLE.search(text):
        return text
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match.group()) & 0xFF:02x}", text)


def physical_lines(chunks: Iterable[bytes], charset: str) -> Iterator[str]:
    """Decoded lines, each with its own line break (LF, CRLF or CR); a leading BOM is dropped."""
    codec = python_codec(charset)
    if codec in ASCII_COMPATIBLE_CODECS:
        return _decoded_lines(_byte_lines(chunks), codec)
    return _wide_lines(chunks, codec)


def _byte_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    unfinished: list[bytes] = []
    for chunk in chunks:
        if not chunk:
            continue
        if unfinished:
            unfinished.append(chunk)
            # A held CR is settled by the next byte: CRLF, or a line break of its own.
            if b"\n" not in chunk and b"\r" not in chunk and not unfinished[-2].endswith(b"\r"):
                continue
            chunk = b"".join(unfinished)
            unfinished = []
        lines = chunk.splitlines(keepends=True)
        # The last piece may be a line not yet ended, or end in a CR whose LF is in the next chunk.
        if not lines[-1].endswith(b"\n"):
            unfinished.append(lines.pop())
        yield from lines
    if unfinished:
        yield b"".join(unfinished)


def _decoded_lines(lines: Iterator[bytes], codec: str) -> Iterator[str]:
    first = next(lines, None)
    if first is None:
        return
    if codec == "utf-8" and first.startswith(UTF8_BOM):
        first = first[len(UTF8_BOM):]
    for line in chain((first,), lines) if first else lines:
        try:
            yield line.decode(codec)
        except UnicodeDecodeError:
            yield _Undecodable(line.decode(codec, _KEEP_BAD_BYTES))


_TEXT_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")


def _wide_lines(chunks: Iterable[bytes], codec: str) -> Iterator[str]:
    # UTF-16/32 bytes of a line break are not the ASCII ones, so decode first and split the text.
    decoder = codecs.getincrementaldecoder(codec)(errors=_KEEP_BAD_BYTES)
    tail = ""
    at_start = True
    for chunk in chain(chunks, [None]):
        final = chunk is None
        text = decoder.decode(b"" if chunk is None else chunk, final=final)
        if at_start and text:
            at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        buffer = tail + text
        end = 0
        for match in _TEXT_LINE.finditer(buffer):
            line = match.group()
            if not final and match.end() == len(buffer) and line.endswith("\r"):
                break  # its LF may come with the next chunk
            end = match.end()
            yield _Undecodable(line) if _BAD_CHAR.search(line) else line
        tail = buffer[end:]
    if tail:
        yield _Undecodable(tail) if _BAD_CHAR.search(tail) else tail


def rows_from_lines(lines: Iterable[str], options: CsvOptions, line_number: int = 0) -> Iterator[Row]:
    """Rows from decoded physical lines (with their line breaks); ``line_number`` lines came before."""
    delimiter = options.delimiter
    quote = options.quote
    null_string = options.null_string
    trim = options.trim_if_not_quoted
    comment = options.comment_line_marker
    parse_quoted = _quoted_parser(options) if quote is not None else None
    rest = iter(lines)
    pending: Iterator[str] = iter(())  # lines read again after a record whose end was not found
    source: Iterator[str] = rest
    while True:
        for line in source:
            line_number += 1
            content = line.rstrip("\r\n")
            if not content or (comment is not None and content.startswith(comment)):
                continue
            if quote is None or quote not in content:
                # str.split's strings, then None for nulls: list[Any], as a cast() per line would cost most of
                # what the split does.
                fields: list[Any] = content.split(delimiter)
                if trim:
                    fields = [field.strip(" ") for field in fields]
                if null_string is None:
                    if "" in fields:
                        fields = [field or None for field in fields]
                elif null_string in fields:
                    fields = [None if field == null_string else field for field in fields]
                if type(line) is _Undecodable or "\x00" in content:
                    yield line_number, fields, content, _content_problem(fields, options.charset)
                else:
                    yield line_number, fields, content, None
                continue
            assert parse_quoted is not None
            fields, consumed, problem = parse_quoted(line, content, source)
            raw = "".join(consumed).rstrip("\r\n")
            if problem is not None:
                yield line_number, fields, raw, problem
                # Where this record really ends is unknown: read on from its second physical line.
                pending = iter(consumed[1:] + list(pending))
                source = chain(pending, rest)
                break
            if "\x00" in raw or any(type(part) is _Undecodable for part in consumed):
                problem = _content_problem(fields, options.charset)
            yield line_number, fields, raw, problem
            line_number += len(consumed) - 1
        else:
            return


def _content_problem(fields: list[str | None], charset: str) -> Problem:
    for index, field in enumerate(fields):
        if field is not None and _BAD_CHAR.search(field):
            return f"bytes that are not valid {charset}", index, field
    for index, field in enumerate(fields):
        if field is not None and "\x00" in field:
            return "a NUL byte, which PostgreSQL text cannot hold", index, field
    return f"bytes that are not valid {charset} or a NUL byte between fields", None, None


QuotedParser = Callable[[str, str, Iterator[str]], tuple[list[str | None], list[str], Problem | None]]


def _quoted_parser(options: CsvOptions) -> QuotedParser:
    delimiter = options.delimiter
    quote = options.quote
    assert quote is not None
    escape = options.escape if options.escape != quote else None
    null_string = options.null_string
    trim = options.trim_if_not_quoted
    limit = options.max_quoted_size_limit
    stray = options.quotes_in_quoted_fields != QUOTES_IN_QUOTED_FIELDS[0]
    # Embulk writes its newline option's line break wherever a quoted value spans lines.
    line_break = NEWLINES[options.newline]
    special = re.compile("[" + re.escape(quote) + (re.escape(escape) if escape else "") + "]")
    too_large = f"quoted field is longer than max_quoted_size_limit ({limit} characters)"

    def parse_quoted(
        line: str, content: str, source: Iterator[str]
    ) -> tuple[list[str | None], list[str], Problem | None]:
        consumed = [line]
        ending = line[len(content):]
        fields: list[str | None] = []
        length = len(content)
        position = 0
        while True:
            if trim:
                while position < length and content[position] == " ":
                    position += 1
            if position < length and content[position] == quote:
                position += 1
                pieces: list[str] = []
                size = 0
                while True:
                    match = special.search(content, position)
                    if match is None:
                        pieces.append(content[position:])
                        pieces.append(line_break if ending else "")
                        size += length - position + len(line_break if ending else "")
                        if size > limit:
                            return fields, consumed, (too_large, len(fields), None)
                        following_line = next(source, None)
                        if following_line is None:
                            return fields, consumed, (UNCLOSED_QUOTE, len(fields), None)
                        line = following_line
                        consumed.append(line)
                        content = line.rstrip("\r\n")
                        ending = line[len(content):]
                        length = len(content)
                        position = 0
                        continue
                    at = match.start()
                    following = content[at + 1] if at + 1 < length else ""
                    if content[at] == quote:
                        # A doubled quote is one quote; in CsvTokenizer's stray-quote mode only when no delimiter
                        # or line end follows the pair, and a quote closes only before the delimiter or line end.
                        if following == quote and not (stray and _ends_field(content, at + 2, delimiter)):
                            pieces.append(content[position:at + 1])
                            size += at + 1 - position
                            position = at + 2
                            continue
                        if stray and not _ends_field(content, at + 1, delimiter):
                            pieces.append(content[position:at + 1])
                            size += at + 1 - position
                            position = at + 1
                            continue
                        pieces.append(content[position:at])
                        size += at - position
                        position = at + 1
                        break
                    if following and following in (quote, escape):
                        pieces.append(content[position:at])
                        pieces.append(following)
                        size += at - position + 1
                        position = at + 2
                    else:
                        pieces.append(content[position:at + 1])
                        size += at + 1 - position
                        position = at + 1
                if size > limit:
                    return fields, consumed, (too_large, len(fields), None)
                quoted_value = "".join(pieces)
                # As Embulk's tokenizer: the null_string is NULL quoted or not.
                fields.append(None if null_string is not None and quoted_value == null_string else quoted_value)
                while position < length and content[position] == " ":
                    position += 1
                if position >= length:
                    return fields, consumed, None
                if content.startswith(delimiter, position):
                    position += len(delimiter)
                    continue
                message = f"unexpected character {content[position]!r} after the closing quote"
                return fields, consumed, (message, len(fields) - 1, fields[-1])
            end = content.find(delimiter, position)
            value = content[position:] if end < 0 else content[position:end]
            if trim:
                value = value.rstrip(" ")
            fields.append(None if (value == "" if null_string is None else value == null_string) else value)
            if end < 0:
                return fields, consumed, None
            position = end + len(delimiter)

    return parse_quoted


def _ends_field(content: str, index: int, delimiter: str) -> bool:
    """Whether a field can end at ``index`` of a line: at its end, or where the delimiter starts."""
    return index >= len(content) or content.startswith(delimiter, index)
