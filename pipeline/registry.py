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

Each input (``in.type``) is an :class:`InputKind` in :data:`INPUTS`: whether it reads objects or a stream,
the AWS services it calls, whether the Dagster definitions model it. The engines, ``inspect``, ``security``
and the Dagster layer ask those (:func:`is_stream`, :func:`in_s3`, :func:`notifications`, ...) rather than
test a config's class. A batch source module (``in.type`` of an input whose objects a load reads)
defines ``store(source, client)``: its :class:`pipeline.records.ObjectStore` (``client()`` gives an S3
client, made on first use). A source module other than the built-in S3 and Kinesis inputs (whose sections
``pipeline.config`` reads) also defines ``configure(section, require_parser, parser=..., aws=...)``: the
``in`` section read into its config, ``parser(section, require_parser)`` reading its ``in.parser``,
``aws`` the AWS settings of the standard chain.

Modules are imported on first use, so a run imports only the format it reads (pyarrow only for Parquet).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

PARSERS: dict[str, str] = {
    "csv": "pipeline.formats.csv_parser",
    "jsonl": "pipeline.formats.jsonl",
    "parquet": "pipeline.formats.parquet",
}


@dataclass(frozen=True)
class InputKind:
    """What the rest of the code may ask about an ``in.type``, so that nothing outside here tests a config's class."""

    reads: str  # "objects" (a store lists and reads them; a ledger row each) or "stream" (shards, checkpoints)
    services: tuple[str, ...] = ()  # the AWS services it calls, whose endpoint variables it uses
    dagster: bool = False  # the Dagster definitions model it (objects partitioned by key, a stream by shard)
    store: str | None = None  # objects: the module whose store(source, client) lists and reads them
    configures: str | None = None  # the module reading its own ``in`` section (else pipeline.config does)


INPUTS: dict[str, InputKind] = {
    "s3": InputKind("objects", ("S3", "KMS"), dagster=True, store="pipeline.sources.s3"),
    "kinesis": InputKind("stream", ("KINESIS",), dagster=True),
    "file": InputKind("objects", dagster=True, store="pipeline.sources.files", configures="pipeline.sources.files"),
}
STORES: dict[str, str] = {kind: spec.store for kind, spec in INPUTS.items() if spec.store}
SOURCES: dict[str, str] = {kind: spec.configures for kind, spec in INPUTS.items() if spec.configures}
if TYPE_CHECKING:
    from typing_extensions import TypeIs

    from pipeline.inputs import KinesisInputConfig, NotificationsConfig, S3InputConfig
    from pipeline.sources.files import FileInputConfig

    RegisteredInput = FileInputConfig  # the config classes of SOURCES (a union when there are several)


def input_kind(source: Any) -> InputKind:
    return INPUTS[source.type]


def is_stream(source: Any) -> TypeIs[KinesisInputConfig]:
    """Whether ``source`` reads a stream (shards and sequence numbers) rather than objects."""
    return INPUTS[source.type].reads == "stream"


def in_s3(source: Any) -> TypeIs[S3InputConfig]:
    """Whether ``source`` reads objects in an S3 bucket (listed, read by range, announced by notifications)."""
    spec = INPUTS[source.type]
    return spec.reads == "objects" and "S3" in spec.services


def notifications(source: Any) -> NotificationsConfig | None:
    """The queue of event notifications ``source`` follows, if it names one."""
    return source.notifications if in_s3(source) else None


def in_dagster(source: Any) -> bool:
    return INPUTS[source.type].dagster


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
