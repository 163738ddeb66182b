"""Helpers for the Dagster layer's tests: pipelines written from the shipped book_order.yml.

Each test gets its own pipeline name, S3 prefix and table, so tests never see each other's
objects, ledger rows or partitions on the shared session stack.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from pipeline.orchestration.factory import DEFAULT_CONFIG_DIR, Pipeline, build_definitions, read_pipeline

HEADER = "order_id,user_id,book_id,book_name,order_cnt,order_amt\n"


def book_order_document(prefix: str, table: str, *, incremental: bool = True, **out: Any) -> dict[str, Any]:
    """The shipped book_order config, pointed at ``prefix`` and ``table``."""
    document = yaml.safe_load((DEFAULT_CONFIG_DIR / "book_order.yml").read_text(encoding="utf-8"))
    document["in"]["path_prefix"] = prefix
    document["in"]["path_match_pattern"] = r"\.csv$"
    if not incremental:
        document["in"]["incremental"] = False
    document["out"]["table"] = f"public.{table}"
    parser = out.pop("parser", {})
    document["in"]["parser"].update(parser)
    document.setdefault("exec", {}).update(out.pop("exec", {}))
    document["out"].update(out)
    return document


def write_pipeline(directory: Path, name: str, document: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def orders_csv(start: int, count: int) -> str:
    return HEADER + "".join(f"o{i:07d},{i % 50 + 1},6,人間失格,{i % 5 + 1},{(i % 5 + 1) * 100}\n"
                            for i in range(start, start + count))


def put_objects(s3: Any, bucket: str, bodies: dict[str, str | bytes], threads: int = 32, **extra: str) -> None:
    """Upload many small objects at once (moto answers requests in parallel)."""

    def put(item: tuple[str, str | bytes]) -> None:
        key, body = item
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body, **extra)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, bodies.items()))


def delete_objects(s3: Any, bucket: str, keys: Iterable[str]) -> None:
    keys = list(keys)
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})


class BookOrder:
    """One test's pipeline: its config directory, prefix, table, Pipeline and Definitions."""

    def __init__(self, directory: Path, name: str, bucket: str, document: dict[str, Any]):
        self.directory = directory
        self.name = name
        self.bucket = bucket
        self.prefix = document["in"]["path_prefix"]
        self.table = document["out"]["table"].split(".")[-1]
        self.path = write_pipeline(directory, name, document)
        self.pipeline: Pipeline = read_pipeline(self.path)
        self.defs: dg.Definitions = build_definitions(directory)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"


@pytest.fixture
def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def book_order(stack: Any, tmp_path: Path, unique: str) -> Callable[..., BookOrder]:
    """Make this test's own book_order pipeline: ``book_order(incremental=False, **out)``.

    ``name`` makes another pipeline in the same config directory, over the same prefix by default.
    """

    def make(*, name: str = unique, **options: Any) -> BookOrder:
        document = book_order_document(f"defs-tests/{unique}/", name, **options)
        return BookOrder(tmp_path / "pipelines", name, stack.bucket, document)

    return make
