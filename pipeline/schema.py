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
    # Timestamps: the zone of a value that names none (Embulk's timezone / default_timezone), and the
    # date of a value whose format has none (date / default_date, YYYY-MM-DD).
    timezone: str = "UTC"
    date: str = "1970-01-01"

    def to_config(self) -> dict:
        out: dict = {"name": self.name, "type": self.type}
        if self.format:
            out["format"] = self.format
        if self.timezone != "UTC":
            out["timezone"] = self.timezone
        if self.date != "1970-01-01":
            out["date"] = self.date
        return out
