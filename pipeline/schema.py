"""Column types shared by parsers, filters and writers (Embulk's vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass

COLUMN_TYPES = ("boolean", "long", "double", "string", "timestamp", "json")


@dataclass(frozen=True)
class Column:
    """One column of a record: Embulk's ``{name, type, format}``.

    ``format`` is a strftime pattern for ``timestamp`` columns (Embulk's Ruby-style
    ``%Y-%m-%d %H:%M:%S``), ``None`` for the others.
    """

    name: str
    type: str = "string"
    format: str | None = None

    def to_config(self) -> dict:
        out: dict = {"name": self.name, "type": self.type}
        if self.format:
            out["format"] = self.format
        return out
