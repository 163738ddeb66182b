"""Which module implements each config ``type``: a new format is one module and one line here.

A parser module (``in.parser.type``) defines:

- ``configure(section, require_parser, columns)``: the ``in.parser`` section read into a frozen config with
  at least ``type``, ``columns`` and ``stop_on_invalid_record``; ``columns(section, require=...)`` reads the
  section's ``columns`` as every parser lists them; unknown keys are refused (``section.done()``);
- ``reader(config)``: a :class:`pipeline.records.RecordReader` for it;
- ``guess(blob, fixed, all_strings=...)``: the ``in.parser`` mapping for an object (a
  :class:`pipeline.records.Blob`), as ``pipeline guess`` writes it; ``fixed`` is the seed's own
  ``in.parser``, whose keys stay as written;
- optionally ``detects(head)``: whether the first bytes of an object (decompressed) are this format,
  so a seed without ``in.parser.type`` is guessed as the right one (CSV when none says so).

A batch source module (``in.type`` of an input whose objects a load reads) defines ``store(source, client)``:
its :class:`pipeline.records.ObjectStore` (``client()`` gives an S3 client, made on first use). A source
module other than the built-in S3 and Kinesis inputs (whose sections ``pipeline.config`` reads) also
defines ``configure(section, require_parser, parser=..., aws=...)``: the ``in`` section read into its
config, ``parser(section, require_parser)`` reading its ``in.parser``, ``aws`` the AWS settings of the
standard chain.

Modules are imported on first use, so a run imports only the format it reads (pyarrow only for Parquet).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

PARSERS: dict[str, str] = {
    "csv": "pipeline.formats.csv_parser",
    "jsonl": "pipeline.formats.jsonl",
    "parquet": "pipeline.formats.parquet",
}


STORES: dict[str, str] = {
    "s3": "pipeline.sources.s3",
    "file": "pipeline.sources.files",
}
# Inputs whose config section their own module reads.
SOURCES: dict[str, str] = {
    "file": "pipeline.sources.files",
}
if TYPE_CHECKING:
    from pipeline.sources.files import FileInputConfig

    RegisteredInput = FileInputConfig  # the config classes of SOURCES (a union when there are several)


def source_types() -> tuple[str, ...]:
    return tuple(SOURCES)


def source_module(kind: str) -> ModuleType:
    return importlib.import_module(SOURCES[kind])


def store(source: Any, client: Any) -> Any:
    """The :class:`pipeline.records.ObjectStore` of a batch input config, or None for a stream's."""
    name = STORES.get(source.type)
    return None if name is None else importlib.import_module(name).store(source, client)


def parser_types() -> tuple[str, ...]:
    return tuple(PARSERS)


def parser_module(kind: str) -> ModuleType:
    name = PARSERS.get(kind)
    if name is None:
        raise PipelineError(f"no parser of type {kind!r} (known: {', '.join(PARSERS)})")
    return importlib.import_module(name)


def detected_type(head: bytes) -> str:
    """The parser type whose ``detects`` claims an object starting with ``head``; else csv."""
    for kind in PARSERS:
        detects = getattr(parser_module(kind), "detects", None)
        if detects is not None and detects(head):
            return kind
    return "csv"


def reader(parser: Any) -> Any:
    """The :class:`pipeline.records.RecordReader` of a parsed ``in.parser`` config."""
    return parser_module(parser.type).reader(parser)
