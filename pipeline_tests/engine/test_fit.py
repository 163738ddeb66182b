"""What a column's type refuses, judged before sending (pipeline/warehouse/fit.py), without a server."""

from __future__ import annotations

import pytest

from pipeline.warehouse.dialects.redshift import Redshift
from pipeline.warehouse.fit import POSTGRESQL_REFUSALS, ColumnType, Fitter

TYPES = {
    "name": ColumnType("name", "character varying", max_length=5),
    "code": ColumnType("code", "character", max_length=2),
    "small": ColumnType("small", "smallint"),
    "big": ColumnType("big", "bigint"),
    "amount": ColumnType("amount", "numeric", precision=6, scale=2),
    "wide": ColumnType("wide", "numeric", precision=38, scale=10),
    "required": ColumnType("required", "text", nullable=False),
    "free": ColumnType("free", "numeric"),
}


def judge(column: str, value: str | None, *, redshift: bool = False, truncate: bool = False):
    fitter = Fitter([column], TYPES, Redshift.refusals if redshift else POSTGRESQL_REFUSALS, truncate=truncate)
    values = [value]
    refusal = fitter.refusal(values)
    return (refusal[2] if refusal else None), values[0]


@pytest.mark.parametrize(("column", "value"), [
    ("name", "abcde"), ("name", "abc  "), ("name", "abcde   "),  # PostgreSQL cuts excess spaces itself
    ("code", "ab"), ("small", "32767"), ("small", "-32768"), ("small", " 99999"),  # odd text: the server's call
    ("big", "9223372036854775807"), ("amount", "9999.994"), ("amount", "-9999.99"), ("amount", "1e3"),
    ("wide", "1" * 28 + ".5"), ("free", "1e300"), ("required", ""), ("name", None), ("amount", "NaN"),
])
def test_values_the_server_takes_or_must_judge_itself_pass(column: str, value: str | None) -> None:
    assert judge(column, value) == (None, value)


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("name", "abcdef", "value too long for type character varying(5) (6 characters)"),
    ("code", "abc", "value too long for type character(2)"),
    ("small", "32768", 'value "32768" is out of range for type smallint'),
    ("big", "-9223372036854775809", "out of range for type bigint"),
    ("amount", "9999.995", "numeric field overflow"),  # rounds to 10000.00
    ("amount", "1e4", "numeric field overflow"),
    ("wide", "1" * 29, "numeric field overflow"),
    ("amount", "1e999999", "numeric field overflow"),
    ("required", None, 'null value in column "required" violates not-null constraint'),
])
def test_values_the_type_refuses_are_named_with_the_servers_reason(column: str, value: str, reason: str) -> None:
    assert reason in (judge(column, value)[0] or "")


def test_redshift_counts_bytes_and_words_its_refusals_as_its_load_errors() -> None:
    assert judge("name", "ééé", redshift=True)[0] == \
        "String length exceeds DDL length (code 1204: 6 bytes, character varying(5))"
    assert judge("name", "éé", redshift=True) == (None, "éé")
    assert judge("required", None, redshift=True)[0] == "Missing data for not-null field (code 1213)"


def test_truncate_cuts_to_the_length_at_a_character_boundary() -> None:
    assert judge("name", "abcdefgh", truncate=True) == (None, "abcde")
    assert judge("name", "aéééé", redshift=True, truncate=True) == (None, "aéé")  # 5 bytes: a + 2 × 2
    assert judge("required", None, truncate=True)[0] is not None  # truncation never fills a NULL


def test_columns_without_a_type_constraint_cost_nothing() -> None:
    assert not Fitter(["free", "other"], TYPES, POSTGRESQL_REFUSALS).checks_anything
