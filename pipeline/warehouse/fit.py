"""What the warehouse would refuse of a row, judged from the table's own column types before the row is sent.

A COPY stops at the first row the server refuses and takes its transaction with it, so every refused row
found by the server costs a reload of the batch. The refusals that follow from a column's declared type
alone (a string longer than the column, a NULL in a NOT NULL column, an integer or decimal out of range)
are found here instead, per row, while the rows are written: a batch with many of them loads in one pass.

The judgement is conservative: a row is refused here only when the server would certainly refuse it. What
depends on more than the type (check constraints, keys already in the table, a string the column's type
parses) is still left to the server, whose error names the row.

With ``truncate`` (``out.truncate_columns``, Redshift's TRUNCATECOLUMNS) an over-long string is cut to the
column's length instead, at a character boundary, in the unit the target counts (characters, or UTF-8
bytes on Redshift).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

import psycopg

from pipeline.errors import RecordError

__all__ = ["ColumnType", "Fitter", "column_types"]


@dataclass(frozen=True)
class ColumnType:
    """A column as information_schema.columns describes it."""

    name: str
    data_type: str
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True

    @property
    def shown(self) -> str:
        if self.max_length is not None:
            return f"{self.data_type}({self.max_length})"
        if self.data_type == "numeric" and self.precision is not None:
            return f"numeric({self.precision},{self.scale or 0})"
        return self.data_type


def column_types(cur: psycopg.Cursor, schema: str, table: str) -> dict[str, ColumnType]:
    """The table's columns in their order, with their types (empty when there is no such table)."""
    cur.execute(
        "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale, is_nullable "
        "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table))
    return {name: ColumnType(name, data_type, length, precision, scale, nullable == "YES")
            for name, data_type, length, precision, scale, nullable in cur.fetchall()}


@dataclass(frozen=True)
class Refusals:
    """How a target words each refusal (its own messages, so a rejected record reads as the server's would)."""

    too_long: str  # {type}, {size}, {unit}
    not_null: str  # {column}
    integer_range: str  # {type}, {value}
    numeric_overflow: str  # {type}
    length_unit: str = "characters"  # how the target counts a string's length: "characters" or "bytes"


POSTGRESQL_REFUSALS = Refusals(
    too_long="value too long for type {type} ({size} {unit})",
    not_null='null value in column "{column}" violates not-null constraint',
    integer_range='value "{value}" is out of range for type {type}',
    numeric_overflow="numeric field overflow: a field of type {type} must round to an absolute value "
                     "below 10^{digits}",
)

_INTEGER = re.compile(r"[+-]?[0-9]+\Z")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_INTEGER_BITS = {"smallint": 16, "integer": 32, "bigint": 64}
_STRING_TYPES = ("character varying", "character")

Check = Callable[[Sequence, int], "str | None"]  # a list where it may cut


class Fitter:
    """Checks (and with ``truncate`` cuts) rows of ``names`` for a table of ``types``."""

    def __init__(self, names: Sequence[str], types: Mapping[str, ColumnType], refusals: Refusals, *,
                 truncate: bool = False):
        self.refusals = refusals
        self.truncate = truncate
        self.truncated = 0
        self._checks: list[tuple[int, str, Check]] = []
        for index, name in enumerate(names):
            column = types.get(name)
            if column is None:
                continue
            for check in self._compile(column):
                self._checks.append((index, name, check))

    @property
    def checks_anything(self) -> bool:
        return bool(self._checks)

    def judge(self, values: Sequence, source: str, position: int | str, raw: str | None, *, noun: str = "row"
              ) -> tuple[Sequence, RecordError | None]:
        """``values`` as they go to the server (over-long strings cut, with ``truncate``), and the error naming
        ``source`` at ``position`` when the server would refuse them."""
        if self.truncate:
            values = list(values)  # cut in place
        refusal = self.refusal(values)
        if refusal is None:
            return values, None
        index, column, reason = refusal
        return values, RecordError(source, position, f"the warehouse would refuse the {noun}: {reason}",
                                   column=column, value=values[index], raw=raw)

    def refusal(self, values: Sequence) -> tuple[int, str, str] | None:
        """(index, column, reason) of the first value the server would refuse, else None.

        With ``truncate``, over-long strings in ``values`` (then a list) are cut in place.
        """
        for index, name, check in self._checks:
            reason = check(values, index)
            if reason is not None:
                return index, name, reason
        return None

    # ----------------------------------------------------------------- one check per constraint

    def _compile(self, column: ColumnType) -> list[Check]:
        checks: list[Check] = []
        if not column.nullable:
            checks.append(self._not_null(column))
        if column.data_type in _STRING_TYPES and column.max_length is not None:
            checks.append(self._length(column))
        elif column.data_type in _INTEGER_BITS:
            checks.append(self._integer(column))
        elif column.data_type == "numeric" and column.precision is not None:
            checks.append(self._numeric(column))
        return checks

    def _not_null(self, column: ColumnType) -> Check:
        reason = self.refusals.not_null.format(column=column.name)

        def check(values: Sequence, index: int) -> str | None:
            return reason if values[index] is None else None

        return check

    def _length(self, column: ColumnType) -> Check:
        limit = column.max_length
        assert limit is not None
        in_bytes = self.refusals.length_unit == "bytes"
        template, shown, unit = self.refusals.too_long, column.shown, self.refusals.length_unit

        def check(values: Sequence, index: int) -> str | None:
            value = values[index]
            if value is None or len(value) <= (limit // 4 if in_bytes else limit):
                return None  # a character is at most 4 UTF-8 bytes
            size = len(value.encode("utf-8")) if in_bytes else len(value)
            if size <= limit:
                return None
            if self.truncate:
                assert isinstance(values, list)  # judge() copies values to a list to cut them in place
                values[index] = _cut(value, limit, in_bytes)
                self.truncated += 1
                return None
            # PostgreSQL keeps a value whose excess is only spaces, cutting them: the server decides that one.
            excess = value.encode("utf-8")[limit:] if in_bytes else value[limit:]
            if not excess.strip(b" " if in_bytes else " "):
                return None
            return template.format(type=shown, size=size, unit=unit)

        return check

    def _integer(self, column: ColumnType) -> Check:
        bound = 1 << (_INTEGER_BITS[column.data_type] - 1)
        template = self.refusals.integer_range

        def check(values: Sequence, index: int) -> str | None:
            value = values[index]
            if value is None or len(value) < 5 or not _INTEGER.match(value):
                return None  # short ones fit every integer type; other text is the server's to judge
            number = int(value)
            if -bound <= number < bound:
                return None
            return template.format(type=column.data_type, value=value)

        return check

    def _numeric(self, column: ColumnType) -> Check:
        precision, scale = column.precision or 0, column.scale or 0
        ceiling = Decimal(10) ** (precision - scale)
        quantum = Decimal(1).scaleb(-scale)
        reason = self.refusals.numeric_overflow.format(type=column.shown, digits=precision - scale)
        # Digits enough for any value that fits; one that needs more is out of range.
        context = Context(prec=precision + 8, Emax=999_999, Emin=-999_999)

        def check(values: Sequence, index: int) -> str | None:
            value = values[index]
            if value is None or not _DECIMAL.match(value):
                return None
            try:
                rounded = abs(Decimal(value)).quantize(quantum, rounding=ROUND_HALF_UP, context=context)
            except InvalidOperation:  # more digits than the decimal context holds: far out of range
                return reason
            return reason if rounded >= ceiling else None

        return check


def _cut(value: str, limit: int, in_bytes: bool) -> str:
    if not in_bytes:
        return value[:limit]
    return value.encode("utf-8")[:limit].decode("utf-8", "ignore")
