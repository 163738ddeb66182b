"""parser: {type: parquet}: byte-range reads, lossless types, rejected values by row and column, exactly once."""

from __future__ import annotations

import io
import os
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline.errors import RecordError, SourceError
from pipeline.formats import parquet
from pipeline.records import Record
from pipeline_tests.books import COLUMNS
from pipeline_tests.faults.loads import TARGETS


class _Blob:
    """An object in memory that counts the byte ranges read from it."""

    def __init__(self, data: bytes, uri: str = "s3://b/k.parquet"):
        self.data = data
        self.uri = uri
        self.size = len(data)
        self.ranges: list[tuple[int, int]] = []

    def chunks(self):
        yield self.data

    def read(self, start: int, stop: int) -> bytes:
        self.ranges.append((start, stop))
        return self.data[start:stop]


def _file(table: pa.Table, **options) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, **options)
    return out.getvalue()


def _reader(columns, **keys) -> parquet.ParquetReader:
    config = config_module.parse({"in": {"type": "s3", "bucket": "b", "path_prefix": "p/",
                                         "parser": {"type": "parquet", "columns": columns, **keys}},
                                  "out": {"type": "postgresql", "url": "postgresql://localhost/x", "table": "t"}},
                                 name="t")
    return parquet.reader(config.input.parser)


def test_types_are_mapped_losslessly_or_the_value_is_rejected_naming_row_and_column():
    table = pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "price": pa.array([Decimal("12345678901234.56"), Decimal("0.10"), Decimal("-3.00")], pa.decimal128(16, 2)),
        "whole": pa.array([Decimal("7"), Decimal("8.5"), Decimal("9")], pa.decimal128(5, 1)),
        "at": pa.array([datetime(2026, 12, 1, 1, 2, 3, 456789, tzinfo=UTC)] * 3, pa.timestamp("us", tz="UTC")),
        "wall": pa.array([datetime(2026, 12, 1, 9, 0)] * 3, pa.timestamp("ms")),
        "day": pa.array([date(2026, 12, 1)] * 3, pa.date32()),
        "ns": pa.array([1_000, 1_001, None], pa.timestamp("ns", tz="UTC")),
        "tags": pa.array([{"k": Decimal("1.5"), "n": [1]}] * 3,
                         pa.struct([("k", pa.decimal128(4, 1)), ("n", pa.list_(pa.int32()))])),
        "ratio": pa.array([float("nan"), float("inf"), 0.1], pa.float64()),
        "blob": pa.array([b"ok", b"\xff", b"x"], pa.binary()),
    })
    columns = [{"name": "id", "type": "long"}, {"name": "price", "type": "string"},
               {"name": "whole", "type": "long"},
               {"name": "at", "type": "timestamp"},
               {"name": "wall", "type": "timestamp", "timezone": "Asia/Tokyo"},
               {"name": "day", "type": "timestamp"}, {"name": "ns", "type": "timestamp"},
               {"name": "tags", "type": "json"}, {"name": "ratio", "type": "double"},
               {"name": "blob", "type": "string"}]
    out = list(_reader(columns).records(_Blob(_file(table))))
    assert isinstance(out[0], Record) and out[0].line == 1
    assert out[0].values == ["1", "12345678901234.56", "7", "2026-12-01 01:02:03.456789+00:00",
                             "2026-12-01 09:00:00+09:00", "2026-12-01 00:00:00",
                             "1970-01-01 00:00:00.000001+00:00", '{"k":1.5,"n":[1]}', "NaN", "ok"]
    assert isinstance(out[1], RecordError) and (out[1].position, out[1].column) == (2, "whole")
    assert "not a whole number" in out[1].message and "line 2, column whole" in out[1].describe()
    assert isinstance(out[2], Record) and out[2].values[6] is None and out[2].values[8] == "0.1"
    assert out[2].values[1] == "-3.00"


def test_nanoseconds_the_warehouse_cannot_keep_and_non_utf8_binary_are_errors_not_rounded():
    table = pa.table({"ns": pa.array([1_001], pa.timestamp("ns")), "b": pa.array([b"\xff"], pa.binary())})
    (error,) = _reader([{"name": "ns", "type": "timestamp"}]).records(_Blob(_file(table)))
    assert isinstance(error, RecordError) and error.column == "ns" and "nanoseconds" in error.message
    (error,) = _reader([{"name": "b", "type": "string"}]).records(_Blob(_file(table)))
    assert isinstance(error, RecordError) and "not UTF-8" in error.message


def test_only_the_configured_columns_are_read_row_group_by_row_group():
    wide = pa.table({"keep": pa.array(range(100_000), pa.int64()),
                     "skip": pa.array([os.urandom(100) for _ in range(100_000)], pa.binary())})
    blob = _Blob(_file(wide, row_group_size=20_000, compression="none"))
    records = list(_reader([{"name": "keep", "type": "long"}]).records(blob))
    assert len(records) == 100_000 and records[-1].values == ["99999"] and records[-1].line == 100_000
    read = sum(stop - start for start, stop in blob.ranges)
    assert read < blob.size / 3  # the 10 MB column was never fetched (but for the reads ahead of the other)
    assert len(blob.ranges) < 100  # small reads are served from one read ahead
    assert max(stop - start for start, stop in blob.ranges) <= parquet.read_buffer_bytes(1)


def test_column_chunks_are_read_in_2_mib_pieces_within_a_budget_for_all_the_columns():
    assert parquet.read_buffer_bytes(6) == 2 << 20  # book_order: six columns, 2 MiB ranged GETs
    assert parquet.read_buffer_bytes(8) == 3 << 19
    assert parquet.read_buffer_bytes(500) == 1 << 20  # never below 1 MiB


def test_a_column_the_file_lacks_and_a_file_that_is_no_parquet_fail_the_object_naming_it():
    data = _file(pa.table({"a": [1]}))
    with pytest.raises(SourceError, match=r"s3://b/k.parquet: has no column 'b'.*its columns: a"):
        list(_reader([{"name": "b", "type": "long"}]).records(_Blob(data)))
    with pytest.raises(SourceError, match=r"s3://b/k.parquet: not a readable Parquet file"):
        list(_reader([{"name": "a", "type": "long"}]).records(_Blob(b"a,b\n1,2\n" * 10)))


def test_guess_reads_the_schema_from_the_footer():
    table = pa.table({"id": pa.array([1], pa.int32()), "amount": pa.array([Decimal("1.25")], pa.decimal128(9, 2)),
                      "big": pa.array([Decimal("1.25")], pa.decimal128(30, 2)), "ok": [True],
                      "at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
                      "tags": [[1, 2]], "name": pa.array(["a"]).dictionary_encode()})
    data = _file(table)
    assert parquet.detects(data)
    parser = parquet.guess(_Blob(data), {})
    assert parser["type"] == "parquet"
    assert [(c["name"], c["type"]) for c in parser["columns"]] == [
        ("id", "long"), ("amount", "double"), ("big", "string"), ("ok", "boolean"), ("at", "timestamp"),
        ("tags", "json"), ("name", "string")]


# --------------------------------------------------------------------------- on the local stack


def _books(start: int, count: int) -> pa.Table:
    ids = range(start, start + count)
    return pa.table({
        "order_id": [f"o{i:05d}" for i in ids], "user_id": [i % 50 + 1 for i in ids], "book_id": [6] * count,
        "book_name": ["人間失格"] * count, "order_cnt": [i % 5 + 1 for i in ids],
        "order_amt": pa.array([(i % 5 + 1) * 100 for i in ids], pa.int64()),
        "ignored": ["x"] * count,
    })


def _config(path: Path, prefix: str, table: str, target: str) -> Path:
    document = {
        "in": {"type": "s3", "bucket": "{{ env.PIPELINE_BUCKET }}", "path_prefix": prefix,
               "parser": {"type": "parquet", "columns": COLUMNS}},
        "out": {**TARGETS[target], "table": f"public.{table}", "mode": "insert_direct"},
    }
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.stack
@pytest.mark.parametrize("target", ["hologres", "redshift"])
def test_parquet_objects_load_exactly_once_with_bad_values_rejected(stack, s3, hologres, redshift, tmp_path, target):
    conn = hologres if target == "hologres" else redshift
    unique = f"t{uuid.uuid4().hex[:10]}"
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.parquet",
                  Body=_file(_books(0, 3000), row_group_size=1000, compression="zstd"))
    # order_amt as a decimal: 150.5 is no long, so that row is rejected and the others load.
    amounts = _books(5000, 3).set_column(
        5, "order_amt", pa.array([Decimal("100"), Decimal("150.5"), Decimal("300")], pa.decimal128(6, 1)))
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/b.parquet", Body=_file(amounts))
    config = config_module.load(_config(tmp_path / "c.yml", f"{unique}/", unique, target))

    summary = BatchLoad(config).run()
    assert (summary.rows, summary.rejected) == (3002, 1)
    assert BatchLoad(config).run().loaded == []

    expected = sum((i % 5 + 1) * 100 for i in range(3000)) + 400
    assert conn.execute(f"SELECT count(*), sum(order_amt) FROM public.{unique}").fetchone() == (3002, expected)
    assert conn.execute(f"SELECT book_name FROM public.{unique} WHERE order_id = 'o02999'").fetchone() == ("人間失格",)
    (rejected,) = conn.execute(f"SELECT source, line_number, column_name, raw_record FROM public.{unique}_rejected"
                               ).fetchall()
    assert rejected[:3] == (f"s3://{stack.bucket}/{unique}/b.parquet", 2, "order_amt")
    assert '"order_id": "o05001"' in rejected[3]


@pytest.mark.stack
def test_guess_finds_parquet_and_the_guessed_config_loads(stack, s3, hologres):
    from pipeline.commands.guess import guess_config

    unique = f"t{uuid.uuid4().hex[:10]}"
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.parquet", Body=_file(_books(0, 10)))
    raw = {"in": {"type": "s3", "bucket": stack.bucket, "path_prefix": f"{unique}/"},
           "out": {**TARGETS["hologres"], "table": f"public.{unique}", "mode": "insert_direct"}}
    completed = guess_config(config_module.parse(raw, name=unique, require_parser=False), raw)
    assert completed["in"]["parser"]["type"] == "parquet"
    assert [c["name"] for c in completed["in"]["parser"]["columns"]][-1] == "ignored"
    assert BatchLoad(config_module.parse(completed, name=unique)).run().rows == 10
