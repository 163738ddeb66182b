"""``parser: {type: csv}``: its config section, and its reader (:mod:`pipeline.formats.csv` plus column types).

Registered in :mod:`pipeline.registry`. The tokenizer is :mod:`pipeline.formats.csv`; this module adds what a
load does with each value (:func:`pipeline.formats.types.normalizer`) and says when the warehouse's own
COPY may read an object's bytes instead (:meth:`CsvReader.native_csv`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError, RecordError
from pipeline.formats.csv import NEWLINES, QUOTES_IN_QUOTED_FIELDS, CsvOptions, read_records
from pipeline.records import Blob, Record
from pipeline.schema import Column

TYPE = "csv"


@dataclass(frozen=True)
class CsvParserConfig(CsvOptions):
    """``in.parser`` for CSV: the reader's options plus what the loader does with a bad record."""

    stop_on_invalid_record: bool = False  # Embulk's default: skip (here: reject) a bad record
    type: str = "csv"


def configure(section: Any, require_parser: bool, columns: Callable[..., tuple[Column, ...]]) -> CsvParserConfig:
    """``in.parser`` of ``type: csv`` (``section``: a config section; ``columns`` reads its ``columns``)."""
    _check_charset(section, section.string("charset", "UTF-8"))
    try:
        config = CsvParserConfig(
            charset=section.string("charset", "UTF-8"),
            newline=section.string("newline", "CRLF", choices=tuple(NEWLINES)),
            delimiter=section.string("delimiter", section.string("field_delimiter", ",")) or ",",
            quote=_quoting_char(section, "quote", '"'),
            escape=_quoting_char(section, "escape", "\\"),
            null_string=section.string("null_string"),
            skip_header_lines=_skip_header_lines(section),
            trim_if_not_quoted=section.boolean("trim_if_not_quoted", False),
            comment_line_marker=section.string("comment_line_marker"),
            allow_extra_columns=section.boolean("allow_extra_columns", False),
            allow_optional_columns=section.boolean("allow_optional_columns", False),
            max_quoted_size_limit=section.integer("max_quoted_size_limit", 131072, minimum=1),
            stop_on_invalid_record=section.boolean("stop_on_invalid_record", False),
            columns=columns(section, require=require_parser),
            quotes_in_quoted_fields=section.string("quotes_in_quoted_fields", QUOTES_IN_QUOTED_FIELDS[0],
                                                   choices=QUOTES_IN_QUOTED_FIELDS),
        )
    except ValueError as error:  # the reader's own checks of delimiter, quote and escape
        raise ConfigError(section.path, str(error)) from None
    section.done(refused={
        "line_delimiter_recognized": "records end at LF, CRLF or CR in any mix (Embulk's default when unset)"})
    return config


def _quoting_char(section: Any, key: str, default: str) -> str | None:
    """Embulk's quote and escape: null disables it; one character; an empty string is obsolete."""
    if section.given_null(key):
        return None
    value = section.string(key, default)
    if value == "":
        if key == "quote":
            section.warn(key, "an empty quote is obsolete; as Embulk does, '\"' is used (write null for no quoting)")
            return '"'
        section.warn(key, "an empty escape is obsolete; as Embulk does, nothing is escaped (write null instead)")
        return None
    if len(value) != 1:
        raise ConfigError(section.at(key), f"accepts only 1 character, got {value!r}")
    return value


def _skip_header_lines(section: Any) -> int:
    """skip_header_lines, or Embulk's older header_line (true: one line), but not both."""
    skip = section.integer("skip_header_lines", 0)
    if section.has("header_line"):
        header_line = section.boolean("header_line", False)
        if skip > 0:
            raise ConfigError(section.at("header_line"), "is invalid if skip_header_lines is set, as in Embulk; "
                                                         "keep skip_header_lines")
        return 1 if header_line else 0
    return skip


def _check_charset(section: Any, charset: str) -> None:
    from pipeline.formats.decode import python_codec

    try:
        python_codec(charset)
    except (ValueError, LookupError):
        raise ConfigError(section.at("charset"), f"unknown charset {charset!r}") from None


class CsvReader:
    """CSV records, each value checked and normalised for its column type."""

    def __init__(self, config: CsvParserConfig):
        from pipeline.formats.types import normalizer

        self.config = config
        self.columns = config.columns
        self.stop_on_invalid_record = config.stop_on_invalid_record
        self._normalizers = [normalizer(c) for c in config.columns]

    def records(self, blob: Blob) -> Iterator[Record | RecordError]:
        source = blob.uri
        columns = self.columns
        normalizers = self._normalizers
        items = read_records(blob.chunks(), self.config, source)
        try:
            for item in items:
                if isinstance(item, RecordError):
                    yield item
                    continue
                values: list[str | None] = []
                bad = None
                for column, convert, value in zip(columns, normalizers, item.values, strict=True):
                    try:
                        values.append(None if value is None else convert(value))
                    except ValueError as error:
                        bad = RecordError(source, item.line, str(error), column=column.name, value=value,
                                          raw=item.raw)
                        break
                yield bad if bad is not None else Record(values, item.line, item.raw)
        finally:
            items.close()  # closes the object's body: a reader stopped early downloads nothing more

    def native_csv(self) -> CsvOptions | None:
        from pipeline.formats.types import postgres_parses_natively

        p = self.config
        native = (
            # COPY takes one single-byte delimiter and quote; without quoting Embulk splits where COPY would not.
            p.quote is not None and len(p.quote.encode()) == 1
            and len(p.delimiter.encode()) == 1
            and p.comment_line_marker is None
            and not p.trim_if_not_quoted
            # Stray-quote mode reads some well-formed RFC 4180 fields otherwise ("a"",b"): our reader only.
            and p.quotes_in_quoted_fields == "ACCEPT_ONLY_RFC4180_ESCAPED"
            and not p.allow_extra_columns
            and not p.allow_optional_columns
            and all(postgres_parses_natively(c) for c in p.columns)
        )
        return p if native else None


def reader(config: CsvParserConfig) -> CsvReader:
    return CsvReader(config)


def guess(blob: Blob, fixed: Any, *, all_strings: bool = False) -> dict[str, Any]:
    """``in.parser`` for ``blob``: Embulk's CSV guess, on a sample that grows until it holds enough records."""
    from pipeline.formats.guess import guess_growing

    def sample(size: int) -> tuple[bytes, bool]:
        data = blob.read(0, min(size, blob.size))
        return data, len(data) >= blob.size

    return guess_growing(sample, fixed=fixed, all_strings=all_strings)
