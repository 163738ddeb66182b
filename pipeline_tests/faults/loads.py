"""What the fault tests share: book_order configs, the source's truth, and the table's state."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline_tests.books import COLUMNS

# What each stand-in needs in `out`: Redshift loads through S3, so it needs staging and a role.
TARGETS: dict[str, dict[str, Any]] = {
    "hologres": {"type": "hologres", "url": "{{ env.HOLOGRES_URL }}"},
    "redshift": {"type": "redshift", "url": "{{ env.REDSHIFT_URL }}",
                 "s3_staging": {"bucket": "{{ env.PIPELINE_BUCKET }}", "prefix": "test-staging/"},
                 "iam_role": "arn:aws:iam::000000000000:role/redshift-copy"},
}


def write_config(path: Path, prefix: str, table: str, *, target: str = "hologres", url: str | None = None,
                 parser: dict | None = None, threads: int = 2, **out: Any) -> Path:
    """A book_order config on the session bucket for a stand-in; no primary key unless given, so a duplicate
    would show."""
    document = {
        "in": {"type": "s3", "bucket": "{{ env.PIPELINE_BUCKET }}", "path_prefix": prefix,
               "parser": {"type": "csv", "charset": "UTF-8", "newline": "LF", "delimiter": ",", "quote": '"',
                          "escape": '"', "skip_header_lines": 1, "columns": COLUMNS, **(parser or {})}},
        "exec": {"max_threads": threads},
        "out": {**TARGETS[target], "table": f"public.{table}", "mode": "insert_direct", **out},
    }
    if url is not None:
        document["out"]["url"] = url
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Truth:
    """What an object holds, computed from its bytes with Python's csv module."""

    rows: int
    amount: int
    order_ids: frozenset[str]


def truth(body: bytes) -> Truth:
    records = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))[1:]
    return Truth(len(records), sum(int(r[5]) for r in records), frozenset(r[0] for r in records))


def pipeline_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def pipeline_popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def exists(conn: Any, qualified: str) -> bool:
    return conn.execute("SELECT to_regclass(%s)", (qualified,)).fetchone()[0] is not None


@contextlib.contextmanager
def one_snapshot(conn: Any) -> Iterator[None]:
    """Reads on an autocommit ``conn`` that see one moment.

    A run killed during its COMMIT may still commit on the server after the kill, between two
    autocommit reads: the ledger read before it and the table read after would disagree.
    """
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def ledger(conn: Any, pipeline: str) -> dict[str, tuple[int, int]]:
    """Object key -> (rows, rejected) committed for ``pipeline``."""
    if not exists(conn, "public.pipeline_object_ledger"):
        return {}
    return {key: (rows, rejected) for key, rows, rejected in conn.execute(
        "SELECT object_key, rows, rejected FROM public.pipeline_object_ledger WHERE pipeline = %s", (pipeline,))}


def table_state(conn: Any, table: str) -> tuple[int, int, int]:
    """(rows, distinct order_id, sum of order_amt) of a test-owned table."""
    if not exists(conn, f"public.{table}"):
        return 0, 0, 0
    rows, distinct, amount = conn.execute(
        f"SELECT count(*), count(DISTINCT order_id), coalesce(sum(order_amt), 0) FROM public.{table}").fetchone()
    return rows, distinct, int(amount)


def upload_books(s3: Any, bucket: str, prefix: str, objects: int, rows: int, seed: int = 0, **extra: Any
                 ) -> dict[str, Truth]:
    """Object key -> Truth of what was uploaded."""
    from pipeline.generate import generate_books

    truths = {}
    for i in range(objects):
        body = b"".join(generate_books(rows, seed=seed * 1000 + i))
        key = f"{prefix}part{i:02d}.csv"
        s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        truths[key] = truth(body)
    return truths


def assert_table_matches_ledger(conn: Any, table: str, pipeline: str, truths: dict[str, Truth]) -> dict:
    """Nothing partial: the table holds exactly the objects the ledger says were loaded."""
    with one_snapshot(conn):
        done = ledger(conn, pipeline)
        rows, distinct, amount = table_state(conn, table)
    assert rows == distinct, "a duplicate order_id"
    assert rows == sum(truths[k].rows for k in done) == sum(r for r, _ in done.values())
    assert amount == sum(truths[k].amount for k in done)
    return done


def assert_exactly_the_source(conn: Any, table: str, pipeline: str, truths: dict[str, Truth]) -> None:
    assert set(assert_table_matches_ledger(conn, table, pipeline, truths)) == set(truths)
    ids = {row[0] for row in conn.execute(f"SELECT order_id FROM public.{table}")}
    assert ids == set().union(*(t.order_ids for t in truths.values()))


def rejected_count(conn: Any, table: str) -> int:
    if not exists(conn, f"public.{table}_rejected"):
        return 0
    return conn.execute(f"SELECT count(*) FROM public.{table}_rejected").fetchone()[0]
