"""Errors a user can act on.

Anything raised as a :class:`PipelineError` is printed by the command line as one
paragraph with no traceback and a non-zero exit code. Everything else is a bug.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A failure the user can fix: bad config, unreachable service, bad data."""


class ConfigError(PipelineError):
    """The config is invalid; ``path`` is the YAML path of the bad key, e.g. ``in.parser.columns[2].type``."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"config {path}: {message}" if path else f"config: {message}")


class SourceError(PipelineError):
    """Reading the source failed: names the object (or shard) and what went wrong."""


class RecordError(PipelineError):
    """One record cannot be loaded.

    ``source`` is the object key (``s3://bucket/key``) or ``stream/shard``; ``position`` is the
    1-based physical line number of the record's first line, or the Kinesis sequence number.
    """

    def __init__(
        self,
        source: str,
        position: int | str | None,
        message: str,
        *,
        column: str | None = None,
        value: str | None = None,
        raw: str | None = None,
    ):
        self.source = source
        self.position = position
        self.message = message
        self.column = column
        self.value = value
        self.raw = raw
        super().__init__(self.describe())

    def describe(self) -> str:
        where = self.source
        if self.position is not None:
            kind = "line" if isinstance(self.position, int) else "sequence"
            where += f" {kind} {self.position}"
        if self.column is not None:
            where += f", column {self.column}"
        text = f"{where}: {self.message}"
        if self.value is not None:
            shown = self.value if len(self.value) <= 80 else self.value[:77] + "..."
            text += f" (value {shown!r})"
        return text


class WarehouseError(PipelineError):
    """The warehouse refused a connection or a statement."""
