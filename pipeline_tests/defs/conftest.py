"""Helpers for the Dagster layer's tests: pipelines written from the shipped book_order.yml.

Each test gets its own pipeline name, S3 prefix and table, so tests never see each other's
objects, ledger rows or partitions on the shared session stack.
"""

from __future__ import annotations

import json
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


class SensorStream:
    """One test's stream pipeline: its own Kinesis stream, table, config directory and Definitions."""

    def __init__(self, directory: Path, kinesis: Any, **changes: Any):
        self.name = f"s{uuid.uuid4().hex[:10]}"
        self.kinesis = kinesis
        kinesis.create_stream(StreamName=self.name, ShardCount=2)
        kinesis.get_waiter("stream_exists").wait(StreamName=self.name, WaiterConfig={"Delay": 0.2})
        document = yaml.safe_load((DEFAULT_CONFIG_DIR / "sensor_data.yml").read_text(encoding="utf-8"))
        document["in"]["stream"] = self.name
        document["out"]["table"] = f"sensor_schema.{self.name}"
        for dotted, value in changes.items():
            section, key = dotted.split("__")
            document[section][key] = value
        self.directory = directory
        write_pipeline(directory, self.name, document)
        self.defs = build_definitions(directory)

    def put(self, count: int, offset: int = 0) -> None:
        entries = [{"Data": json.dumps({"sensorId": (i + offset) % 101, "currentTemperature": 10 + i % 141,
                                        "status": "OK", "$record_timestamp": "2024-01-01T00:00:00Z"}).encode(),
                    "PartitionKey": str(i)} for i in range(count)]
        for start in range(0, len(entries), 500):
            response = self.kinesis.put_records(StreamName=self.name, Records=entries[start:start + 500])
            assert response["FailedRecordCount"] == 0

    def tick(self, instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
        sensor = self.defs.resolve_sensor_def(f"{self.name}_sensor")
        with dg.build_sensor_context(resources=self.defs.resources, instance=instance) as context:
            return sensor(context)

    def materialize(self, instance: dg.DagsterInstance, tags: dict[str, str] | None = None
                    ) -> dg.ExecuteInProcessResult:
        table = next(a for a in self.defs.assets if isinstance(a, dg.AssetsDefinition)
                     and dg.AssetKey(self.name) in a.keys)
        return dg.materialize([table], resources=self.defs.resources,
                              instance=instance, raise_on_error=False, tags=tags)

    def launched_by_sensor(self, instance: dg.DagsterInstance, run_key: str) -> dg.ExecuteInProcessResult:
        """A run as the sensor launches it: tagged with its run key and the sensor's name."""
        return self.materialize(instance, tags={"dagster/run_key": run_key,
                                                "dagster/sensor_name": f"{self.name}_sensor"})


@pytest.fixture
def sensor_stream(stack: Any, kinesis: Any, tmp_path: Path) -> Any:
    def make(**changes: Any) -> SensorStream:
        return SensorStream(tmp_path / "pipelines", kinesis, **changes)

    return make
