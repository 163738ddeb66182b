"""The seams of the batch path: an object a reader reads, the reader, and the one path every record takes.

::

    object store ──► Blob ──► RecordReader ──► Record ──► RowPath ──► COPY line
    (s3, file)       bytes,    (csv, jsonl,     values in     filters, identity,
                     ranges    parquet)         column order  fit, NUL check

A reader (registered by its ``in.parser.type`` in :mod:`pipeline.registry`) turns one object into
records whose values are already the canonical text of their column type, or into a
:class:`~pipeline.errors.RecordError` for each record it cannot read. :class:`RowPath` is what a
load, and ``pipeline preview``, do with each record from there, so a preview shows exactly what a
load would send or reject.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.errors import RecordError
from pipeline.schema import Column

if TYPE_CHECKING:
    from pipeline.filters import Filter
    from pipeline.formats.csv import CsvOptions
    from pipeline.warehouse.fit import Fitter


@dataclass(slots=True)
class Record:
    """One good record: ``values`` are canonical text (None is NULL), aligned to the reader's columns."""

    values: list[str | None]
    line: int  # 1-based: the physical line where the record starts, or the row's number in a columnar file
    raw: str  # the record as the source holds it, for its rejected row


class Blob(Protocol):
    """One object version, as a reader sees it."""

    @property
    def uri(self) -> str: ...

    @property
    def size(self) -> int: ...

    def chunks(self) -> Iterator[bytes]:
        """The whole object, decompressed (gzip and bzip2 by content), in order."""
        ...

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` to ``stop`` (exclusive) of the object as stored (not decompressed)."""
        ...


class RecordReader(Protocol):
    """An ``in.parser``, compiled: reads any number of objects, one after the other."""

    @property
    def columns(self) -> tuple[Column, ...]: ...

    @property
    def stop_on_invalid_record(self) -> bool: ...

    def records(self, blob: Blob) -> Iterator[Record | RecordError]:
        """Every record of ``blob`` in order; a record it cannot read is yielded as a RecordError, never raised."""
        ...

    def native_csv(self) -> CsvOptions | None:
        """The CSV options under which the warehouse's own COPY reads the object's bytes as this reader does
        (so they may go to it unparsed), or None when only this reader reads them right."""
        ...


class RowPath:
    """From a parsed record to the row a load sends: filters, the row's identity, the table's fit, NUL check.

    Batch loads, stream loads and ``pipeline preview`` all encode their records here. ``fitter`` rejects
    rows the table's column types would refuse; ``sequence`` appends the record's position (the staged
    order a merge keeps); ``noun`` is what a refusal calls the record ("row", or "record" for a stream's).
    """

    def __init__(self, columns: Sequence[Column], filters: Sequence[Filter], *, fitter: Fitter | None = None,
                 sequence: bool = False, noun: str = "row"):
        from pipeline.filters import projector

        self.names = [c.name for c in columns]
        self.project = projector(columns, filters) if filters else None
        self.fitter = fitter if fitter is not None and fitter.checks_anything else None
        self.sequence = sequence
        self.noun = noun

    def encode(self, record: Record, source: str, identity: Callable[[int], str]
               ) -> tuple[Sequence[str | None], str] | RecordError:
        """A reader's record (values in column order): its output values and COPY text line, or its error.

        ``identity(line)`` names the record for ``add_uuid`` (only called when a filter needs it).
        """
        row: Sequence[str | None] = record.values
        if self.project is not None:
            row = self.project(dict(zip(self.names, record.values, strict=True)), identity(record.line))
        return self._finish(row, source, record.line, record.raw)

    def encode_fields(self, fields: dict[str, Any], source: str, position: int | str, identity: str,
                      raw: Callable[[], str]) -> tuple[Sequence[str | None], str] | RecordError:
        """The same for a record parsed into fields by column name (a stream's JSON), named by ``identity``;
        ``raw()`` gives its text for a rejection."""
        row = self.project(fields, identity) if self.project is not None else [fields[n] for n in self.names]
        return self._finish(row, source, position, raw)

    def _finish(self, row: Sequence[Any], source: str, position: int | str, raw: str | Callable[[], str] | None
                ) -> tuple[Sequence[str | None], str] | RecordError:
        from pipeline.warehouse.copy import text_line

        if self.fitter is not None:
            row, refused = self.fitter.judge(row, source, position, None, noun=self.noun)
            if refused is not None:
                refused.raw = _text(raw)
                return refused
        values = [*row, str(position)] if self.sequence else row
        line = text_line(values)
        if "\x00" in line:
            return RecordError(source, position, "NUL byte in the record", raw=_text(raw))
        return row, line


def _text(raw: str | Callable[[], str] | None) -> str | None:
    return raw() if callable(raw) else raw


class StoredObject(Protocol):
    """One object version as a store lists it; the ledger keeps (key, etag)."""

    @property
    def key(self) -> str: ...

    @property
    def etag(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def uri(self) -> str: ...


class ObjectStore(Protocol):
    """Where a batch input's objects are (``in.type`` s3 or file): listed, named, read."""

    @property
    def in_s3(self) -> bool:
        """Whether the objects are S3 objects, which a warehouse's COPY FROM S3 can read itself."""
        ...

    def listed(self, warn: Callable[[str], None]) -> list[Any]:
        """Every object of the input, in key order, after its rules (prefix, pattern, last_path, limit)."""
        ...

    def named(self, key: str) -> Any:
        """The current version of one object of the input, by key; SourceError when it is not one of them."""
        ...

    def first(self) -> Any | None:
        """The first object :meth:`listed` would give, without listing the rest."""
        ...

    def blob(self, obj: Any, counted: Callable[[int], None] | None = None, *, limit: int | None = None) -> Blob:
        """``obj`` for a reader; ``counted(n)`` hears of every ``n`` bytes read from the store. With ``limit``,
        ``chunks()`` stops after about that many bytes and sets the blob's ``cut`` (a preview's sample)."""
        ...
