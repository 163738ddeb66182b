"""Rows the warehouse refuses, of every kind, in the S3 and the Kinesis paths (issue 16).

For each kind: with stop_on_invalid_record false the rest loads, the refused rows are in ``_rejected``
with their line or sequence number, column and the server's reason, and a rerun loads nothing new; with
true the run stops naming the row and commits nothing of it.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline.errors import RecordError
from pipeline.stream import StreamLoad
from pipeline_tests.faults.loads import pipeline_cli, write_config

pytestmark = pytest.mark.stack

HEADER = "order_id,user_id,book_id,book_name,order_cnt,order_amt\n"


@dataclass(frozen=True)
class Kind:
    """A refusal: the column type that causes it, good rows, and the bad value in two rows."""

    name: str
    column: str  # the book_order column (S3) whose type refuses
    type: str
    good: str  # a value the type takes
    bad: tuple[str, str]  # two values it refuses
    reason: str  # in the server's words (or ours, for a type we judge before sending)
    target: str = "hologres"
    named_column: bool = True  # whether the server's error names the column
    extra: dict = field(default_factory=dict)


S3_KINDS = [
    Kind("too long", "book_name", "varchar(12)", "Short title", ("A title much too long", "x" * 13),
         "value too long for type character varying(12)"),
    Kind("too long in bytes", "book_name", "varchar(12)", "Short title", ("é" * 7, "漢" * 5),
         "String length exceeds DDL length", target="redshift"),
    Kind("numeric out of range", "order_amt", "numeric(6,2)", "1234", ("12345", "-99999"), "numeric field overflow"),
    Kind("integer out of range", "book_id", "smallint", "6", ("40000", "-32769"), "out of range for type smallint"),
    Kind("not null", "user_id", "bigint NOT NULL", "7", ("", ""), "violates not-null constraint"),
    Kind("bad timestamp", "book_name", "timestamp", "2024-01-02 03:04:05", ("soon", "not a time"),
         "invalid input syntax for type timestamp"),
    Kind("check constraint", "order_cnt", "integer CHECK (order_cnt > 0)", "3", ("0", "-1"),
         "violates check constraint", named_column=False),
    Kind("duplicate key in the object", "order_id", "text", "", ("dup", "dup"),
         "duplicate key value violates unique constraint", named_column=False),
]


def _row(order_id: str, kind: Kind, value: str) -> str:
    values = {"order_id": order_id, "user_id": "7", "book_id": "6", "book_name": "Short title", "order_cnt": "3",
              "order_amt": "100"}
    if kind.name == "bad timestamp":
        values["book_name"] = kind.good
    values[kind.column] = value
    return ",".join(values[c] for c in ("order_id", "user_id", "book_id", "book_name", "order_cnt", "order_amt"))


def s3_body(kind: Kind) -> str:
    """Lines 2, 4 and 6 good; 3 and 5 bad. A duplicate key repeats line 2's key on line 5 only."""
    if kind.name.startswith("duplicate"):
        rows = [_row("a1", kind, "a1"), _row("a2", kind, "a2"), _row("a3", kind, "a3"), _row("a1", kind, "a1"),
                _row("a5", kind, "a5")]
        return HEADER + "\n".join(rows) + "\n"
    rows = [_row("a1", kind, kind.good), _row("a2", kind, kind.bad[0]), _row("a3", kind, kind.good),
            _row("a4", kind, kind.bad[1]), _row("a5", kind, kind.good)]
    return HEADER + "\n".join(rows) + "\n"


def _expected(kind: Kind) -> tuple[set[str], list[int]]:
    if kind.name.startswith("duplicate"):
        return {"a1", "a2", "a3", "a5"}, [5]
    return {"a1", "a3", "a5"}, [3, 5]


def _s3_config(tmp_path: Path, stack, s3, kind: Kind, stop: bool) -> tuple[Path, str]:
    table = f"r{uuid.uuid4().hex[:10]}"
    s3.put_object(Bucket=stack.bucket, Key=f"{table}/orders.csv", Body=s3_body(kind).encode())
    path = write_config(tmp_path / f"{table}.yml", f"{table}/", table, target=kind.target,
                        parser={"stop_on_invalid_record": stop}, primary_key=["order_id"],
                        column_options={kind.column: {"type": kind.type}}, **kind.extra)
    return path, table


def _connection(kind: Kind, hologres, redshift):
    return redshift if kind.target == "redshift" else hologres


@pytest.mark.parametrize("kind", S3_KINDS, ids=[k.name for k in S3_KINDS])
def test_a_refused_row_of_an_object_is_rejected_and_the_rest_loads(stack, s3, hologres, redshift, tmp_path,
                                                                    kind: Kind):
    path, table = _s3_config(tmp_path, stack, s3, kind, stop=False)
    conn = _connection(kind, hologres, redshift)
    loaded, lines = _expected(kind)

    summary = BatchLoad(config_module.load(path)).run()

    assert summary.rows == len(loaded) and summary.rejected == len(lines)
    assert {r[0] for r in conn.execute(f"SELECT order_id FROM public.{table}")} == loaded
    rejected = conn.execute(f"SELECT source, line_number, column_name, error FROM public.{table}_rejected "
                            "ORDER BY line_number").fetchall()
    assert [r[1] for r in rejected] == lines
    assert all(r[0] == f"s3://{stack.bucket}/{table}/orders.csv" for r in rejected)
    assert all(kind.reason in r[3] and "refuse" in r[3] for r in rejected), rejected
    if kind.named_column:
        assert all(r[2] == kind.column for r in rejected), rejected
    assert not BatchLoad(config_module.load(path)).run().loaded


@pytest.mark.parametrize("kind", S3_KINDS, ids=[k.name for k in S3_KINDS])
def test_with_stop_on_invalid_record_a_refused_row_stops_the_load_naming_it(stack, s3, hologres, redshift,
                                                                            tmp_path, kind: Kind):
    path, table = _s3_config(tmp_path, stack, s3, kind, stop=True)
    conn = _connection(kind, hologres, redshift)

    with pytest.raises(RecordError) as raised:
        BatchLoad(config_module.load(path)).run()

    assert raised.value.source == f"s3://{stack.bucket}/{table}/orders.csv"
    assert raised.value.position == _expected(kind)[1][0]
    assert kind.reason in str(raised.value)
    if kind.named_column:
        assert raised.value.column == kind.column
    assert conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM public.pipeline_object_ledger WHERE pipeline = %s",
                        (table,)).fetchone()[0] == 0


def test_the_command_stops_with_one_paragraph_naming_object_line_column_and_reason(stack, s3, tmp_path):
    path, table = _s3_config(tmp_path, stack, s3, S3_KINDS[0], stop=True)

    result = pipeline_cli("run", str(path))

    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"s3://{stack.bucket}/{table}/orders.csv line 3, column book_name" in result.stderr
    assert "value too long for type character varying(12)" in result.stderr


def test_truncate_columns_cuts_over_long_strings_to_the_column_instead(stack, s3, hologres, redshift, tmp_path):
    for kind in S3_KINDS[:2]:
        path, table = _s3_config(tmp_path, stack, s3, dataclasses.replace(kind, extra={"truncate_columns": True}),
                                 stop=True)
        conn = _connection(kind, hologres, redshift)

        summary = BatchLoad(config_module.load(path)).run()

        assert summary.rows == 5 and summary.rejected == 0
        names = dict(conn.execute(f"SELECT order_id, book_name FROM public.{table}").fetchall())
        if kind.target == "redshift":  # 12 bytes at a character boundary
            assert names["a2"] == "é" * 6 and names["a4"] == "漢" * 4
        else:
            assert names["a2"] == "A title much" and names["a4"] == "x" * 12


# ----------------------------------------------------------------- Kinesis


@dataclass(frozen=True)
class StreamKind:
    name: str
    column: str  # the output column
    type: str
    records: tuple[dict, dict]  # two records it refuses
    reason: str
    target: str = "redshift"
    named_column: bool = True
    good_status: str = "OK"


STREAM_KINDS = [
    StreamKind("too long", "status", "varchar(16)", ({"status": "x" * 17}, {"status": "é" * 9}),
               "String length exceeds DDL length"),
    StreamKind("numeric out of range", "currenttemperature", "numeric(4,1)",
               ({"currentTemperature": 123456}, {"currentTemperature": -1000}), "Numeric data overflow"),
    StreamKind("integer out of range", "sensorid", "smallint", ({"sensorId": 40000}, {"sensorId": -40000}),
               "Overflow"),
    StreamKind("not null", "status", "varchar(16) NOT NULL", ({"status": None}, {"status": None}),
               "Missing data for not-null field"),
    StreamKind("bad timestamp", "status", "timestamp", ({"status": "soon"}, {"status": "never"}),
               "timestamp", good_status="2024-01-02 03:04:05"),
    StreamKind("check constraint", "currenttemperature", "bigint CHECK (currenttemperature < 1000)",
               ({"currentTemperature": 5000}, {"currentTemperature": 1000}), "violates check constraint",
               target="hologres", named_column=False),
    StreamKind("duplicate key in the batch", "sensorid", "bigint", ({"sensorId": 1}, {"sensorId": 2}),
               "duplicate key value violates unique constraint", target="hologres", named_column=False),
]


def _stream_config(tmp_path: Path, kinesis, kind: StreamKind, stop: bool) -> tuple[Path, str]:
    stream = f"s{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    root = Path(__file__).resolve().parents[2]
    document = yaml.safe_load((root / "pipelines" / "sensor_data.yml").read_text())
    document["in"]["stream"] = stream
    document["in"]["parser"]["stop_on_invalid_record"] = stop
    out = document["out"]
    out["column_options"][kind.column] = {"type": kind.type}
    if kind.target == "hologres":
        document["out"] = {"type": "hologres", "url": "{{ env.HOLOGRES_URL }}", "table": f"public.{stream}",
                           "mode": "append", "column_options": out["column_options"],
                           "primary_key": ["sensorid"] if kind.name.startswith("duplicate") else ["uuid"]}
    else:
        out["table"] = f"sensor_schema.{stream}"
    path = tmp_path / f"{stream}.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path, stream


def _stream_records(kind: StreamKind) -> list[dict]:
    good = [{"sensorId": 10 + i, "currentTemperature": 20 + i, "status": kind.good_status} for i in range(5)]
    bad = [{"sensorId": 50 + i, "currentTemperature": 30, "status": kind.good_status, **r}
           for i, r in enumerate(kind.records)]
    if kind.name.startswith("duplicate"):
        bad = [{**good[0], "currentTemperature": 99}, {**good[1], "currentTemperature": 99}]
    return [good[0], good[1], bad[0], good[2], bad[1], good[3], good[4]]


def _put(kinesis, stream: str, records: list[dict]) -> list[str]:
    sequences = []
    for record in records:  # one at a time: the order (and so which duplicate comes second) is the put order
        sequences.append(kinesis.put_record(StreamName=stream, Data=json.dumps(record).encode(),
                                            PartitionKey="k")["SequenceNumber"])
    return sequences


def _table(kind: StreamKind, stream: str) -> str:
    return f"public.{stream}" if kind.target == "hologres" else f"sensor_schema.{stream}"


@pytest.mark.parametrize("kind", STREAM_KINDS, ids=[k.name for k in STREAM_KINDS])
def test_a_refused_record_is_rejected_with_its_sequence_number_and_the_batch_commits(
        stack, kinesis, hologres, redshift, tmp_path, kind: StreamKind):
    path, stream = _stream_config(tmp_path, kinesis, kind, stop=False)
    conn = _connection(kind, hologres, redshift)
    sequences = _put(kinesis, stream, _stream_records(kind))

    summary = StreamLoad(config_module.load(path)).run()

    assert summary.records == 7 and summary.rows == 5 and summary.rejected == 2
    assert conn.execute(f"SELECT count(*) FROM {_table(kind, stream)}").fetchone()[0] == 5
    rejected = conn.execute(f"SELECT source, sequence_number, column_name, error FROM {_table(kind, stream)}_rejected"
                            ).fetchall()
    assert sorted(r[1] for r in rejected) == sorted([sequences[2], sequences[4]])
    assert all(r[0] == f"{stream}/shardId-000000000000" for r in rejected)
    assert all(kind.reason in r[3] and "refuse" in r[3] for r in rejected), rejected
    if kind.named_column:
        assert all(r[2] == kind.column for r in rejected), rejected
    assert StreamLoad(config_module.load(path)).run().records == 0


@pytest.mark.parametrize("kind", STREAM_KINDS, ids=[k.name for k in STREAM_KINDS])
def test_with_stop_on_invalid_record_a_refused_record_stops_the_stream_before_its_batch(
        stack, kinesis, hologres, redshift, tmp_path, kind: StreamKind):
    path, stream = _stream_config(tmp_path, kinesis, kind, stop=True)
    conn = _connection(kind, hologres, redshift)
    sequences = _put(kinesis, stream, _stream_records(kind))

    with pytest.raises(RecordError) as raised:
        StreamLoad(config_module.load(path)).run()

    assert raised.value.source == f"{stream}/shardId-000000000000" and raised.value.position == sequences[2]
    assert kind.reason in str(raised.value)
    if kind.named_column:
        assert raised.value.column == kind.column
    schema = "public" if kind.target == "hologres" else "sensor_schema"
    assert conn.execute(f"SELECT count(*) FROM {schema}.pipeline_shard_checkpoint WHERE stream = %s",
                        (stream,)).fetchone()[0] == 0
    assert conn.execute(f"SELECT count(*) FROM {_table(kind, stream)}").fetchone()[0] == 0
