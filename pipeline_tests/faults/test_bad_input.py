"""Bad input through the whole engine: a clear error, or every record either loaded or rejected.

The small files live in ``pipeline_tests/corpus/``; the big ones (a 10 MB field, 1 MB JSON records,
deep nesting) are generated here at test time. With ``stop_on_invalid_record: true`` a bad object
is ``exit 1`` with a message naming the object and the line, and nothing of it is committed; with
``false`` the object loads and ``loaded + rejected = records the reader yields``, which the ledger
and the rejected table both confirm.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline.formats.csv import read_records
from pipeline.stream import StreamLoad
from pipeline_tests.books import HEADER
from pipeline_tests.faults.loads import exists, ledger, pipeline_cli, write_config

pytestmark = pytest.mark.stack

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CSV_CORPUS = sorted(p.name for p in CORPUS.glob("*.csv"))


def ten_megabyte_field(quoted: bool) -> bytes:
    field = b"x" * (10 << 20)
    return (HEADER.encode() + b"o1,1,6,title,1,100\n"
            + b"o2,2,6," + (b'"' + field + b'"' if quoted else field) + b",1,100\n" + b"o3,3,6,title,1,100\n")


def object_body(name: str) -> bytes:
    if name.startswith("generated:"):
        return ten_megabyte_field(quoted=not name.endswith("unquoted"))
    return (CORPUS / name).read_bytes()


BAD_RECORDS = {"ragged_rows.csv", "invalid_utf8.csv", "nul_bytes.csv", "unterminated_quote.csv", "bad_values.csv",
               "text_after_quote.csv"}
ALL_CSV = [*CSV_CORPUS, "generated:10mb-field-quoted", "generated:10mb-field-unquoted"]


def reader_count(config, body: bytes, key: str) -> int:
    """How many records (good or bad) our own reader yields for ``body``."""
    options = BatchLoad(config).parser
    return sum(1 for _ in read_records([body], options, key))


def rejected_rows(conn, table: str, source: str) -> int:
    if not exists(conn, f"public.{table}_rejected"):
        return 0
    return conn.execute(f"SELECT count(*) FROM public.{table}_rejected WHERE source = %s", (source,)).fetchone()[0]


@pytest.fixture
def unique() -> str:
    return f"b{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("name", ALL_CSV)
def test_bad_csv_stops_with_a_message_naming_object_and_line_and_commits_nothing(
        stack, s3, hologres, tmp_path, unique, name):
    key = f"{unique}/{name.replace(':', '-')}"
    body = object_body(name)
    s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique,
                               parser={"stop_on_invalid_record": True})
    result = pipeline_cli("run", str(config_path))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == (1 if name in BAD_RECORDS else result.returncode)
    if result.returncode == 0:  # the engine found nothing wrong: then every record the reader sees is loaded
        ((rows, rejected),) = ledger(hologres, unique).values()
        assert rejected == 0 and rows == reader_count(config_module.load(config_path), body, key)
        return
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and f"s3://{stack.bucket}/{key} line " in message, message
    assert len(message) < 1000, "the message must not carry the whole 10 MB field"
    assert ledger(hologres, unique) == {}
    assert not exists(hologres, f"public.{unique}") or \
        hologres.execute(f"SELECT count(*) FROM public.{unique}").fetchone()[0] == 0


@pytest.mark.parametrize("name", ALL_CSV)
def test_bad_csv_with_rejects_adds_up_loaded_plus_rejected_to_what_was_read(
        stack, s3, hologres, tmp_path, unique, name):
    key = f"{unique}/{name.replace(':', '-')}"
    body = object_body(name)
    s3.put_object(Bucket=stack.bucket, Key=key, Body=body)
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique,
                               parser={"stop_on_invalid_record": False})
    result = pipeline_cli("run", str(config_path))
    assert result.returncode == 0, result.stderr
    ((rows, rejected),) = ledger(hologres, unique).values()
    assert rows + rejected == reader_count(config_module.load(config_path), body, key)
    assert hologres.execute(f"SELECT count(*) FROM public.{unique}").fetchone()[0] == rows
    assert rejected_rows(hologres, unique, f"s3://{stack.bucket}/{key}") == rejected
    if name in BAD_RECORDS:
        assert rejected >= 1
    if name == "generated:10mb-field-unquoted":  # a 10 MB string is a valid value: loaded whole, by streaming
        assert (rows, rejected) == (3, 0)
    if name == "generated:10mb-field-quoted":  # quoted, it is over Embulk's max_quoted_size_limit (131072)
        assert (rows, rejected) == (2, 1)
        (error,) = hologres.execute(f"SELECT error FROM public.{unique}_rejected").fetchone()
        assert "max_quoted_size_limit" in error


@pytest.fixture
def stream(stack, kinesis) -> str:
    name = f"bs{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return name


def stream_config(tmp_path: Path, stream: str, stop: bool) -> Any:
    import yaml

    document = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines" / "sensor_data.yml").read_text())
    document["in"]["stream"] = stream
    document["in"]["parser"]["stop_on_invalid_record"] = stop
    document["out"]["table"] = f"sensor_schema.{stream}"
    path = tmp_path / f"{stream}.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def broken_json_records() -> list[bytes]:
    corpus = (CORPUS / "broken_records.jsonl").read_bytes().splitlines()
    deep = b'{"sensorId": 8, "currentTemperature": ' + b"[" * 100_000 + b"]" * 100_000 + b', "status": "OK"}'
    big_ok = json.dumps({"sensorId": 9, "currentTemperature": 1, "status": "OK", "pad": "p" * 1_000_000}).encode()
    big_status = json.dumps({"sensorId": 10, "currentTemperature": 1, "status": "s" * 1_000_000}).encode()
    return [*corpus, deep, big_ok[: 1_000_000], big_ok[:999_000] + b'"}', big_status[:1_000_000]]


def test_broken_json_records_are_rejected_and_add_up_to_what_was_read(stack, kinesis, redshift, tmp_path, stream):
    records = broken_json_records()
    for i, data in enumerate(records):
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey=str(i))
    summary = StreamLoad(config_module.load(stream_config(tmp_path, stream, stop=False))).run()
    assert summary.records == len(records)
    loaded = redshift.execute(f"SELECT count(*) FROM sensor_schema.{stream}").fetchone()[0]
    rejected = redshift.execute(f"SELECT count(*) FROM sensor_schema.{stream}_rejected").fetchone()[0]
    assert loaded == summary.rows and rejected == summary.rejected
    assert loaded + rejected == len(records)
    assert loaded >= 2 and rejected >= 6


def test_broken_json_with_stop_on_invalid_record_names_shard_and_sequence(stack, kinesis, redshift, tmp_path, stream):
    for i, data in enumerate(broken_json_records()[:3]):
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey=str(i))
    result = pipeline_cli("run", str(stream_config(tmp_path, stream, stop=True)))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{stream}/shardId-" in result.stderr and "sequence" in result.stderr


# ------------------------------------------------------------------ property: any bytes through the engine


csvish = st.lists(st.sampled_from([b"o1", b"1", b"x", b",", b'"', b'""', b"\n", b"\r\n", b"\r", b"\x00", b"\xff",
                                   b"\xef\xbb\xbf", b"\xe4\xba\xba", b" ", b"\\", b"-5", b"1e3"]),
                  max_size=60).map(b"".join)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(csvish, st.binary(max_size=200)))
def test_any_bytes_through_the_engine_load_or_reject_every_record_the_reader_yields(
        stack, s3, hologres, tmp_path, body):
    unique = f"p{uuid.uuid4().hex[:10]}"
    key = f"{unique}/any.csv"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=HEADER.encode() + body)
    config = config_module.load(write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique,
                                             parser={"stop_on_invalid_record": False}, threads=1))
    summary = BatchLoad(config).run()
    ((rows, rejected),) = ledger(hologres, unique).values()
    assert (rows, rejected) == (summary.rows, summary.rejected)
    assert rows + rejected == reader_count(config, HEADER.encode() + body, key)
    assert hologres.execute(f"SELECT count(*) FROM public.{unique}").fetchone()[0] == rows
    assert rejected_rows(hologres, unique, f"s3://{stack.bucket}/{key}") == rejected


def test_quotes_the_server_would_read_otherwise_are_read_as_embulk_reads_them(stack, s3, hologres, tmp_path, unique):
    # embulk-util-csv TestCsvTokenizer: spaces after a closing quote are dropped
    # (parseQuotedValueWithSpacesAndTrimmingOption); a quote after spaces, or inside an unquoted field, is data.
    key = f"{unique}/quotes_embulk_reads_its_way.csv"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=object_body("quotes_embulk_reads_its_way.csv"))
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique)
    result = pipeline_cli("run", str(config_path))
    assert result.returncode == 0, result.stderr
    rows = dict(hologres.execute(f"SELECT order_id, book_name FROM public.{unique}").fetchall())
    assert rows == {"o1": "spaced", "o2": '  "kept"', "o3": 'a"b'}
