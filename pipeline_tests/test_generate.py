"""``pipeline generate``: the book_order CSV and the Kinesis sensor records."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from pipeline.cli import main
from pipeline.errors import SourceError
from pipeline.generate import generate_books, put_sensor_records, sensor_records, write_books
from pipeline.sources import aws

PRICES = {
    "1": ("嫌われる勇気", 500),
    "2": ("ノルウェイの森", 600),
    "3": ("海辺のカフカ", 700),
    "4": ("色彩を持たない多崎つくると彼の巡礼の年", 300),
    "5": ("容疑者Ⅹの献身", 200),
    "6": ("人間失格", 100),
    "7": ("こころ", 350),
    "8": ("天声人语", 550),
    "9": ("幸せになる勇気", 650),
}


def books_csv(rows: int, seed: int | None) -> bytes:
    return b"".join(generate_books(rows, seed))


def data_lines(content: bytes) -> list[bytes]:
    """The rows of a CSV file, without its header."""
    return content.splitlines(keepends=True)[1:]


# ---------------------------------------------------------------- book orders


def test_book_orders_follow_the_tutorial_table() -> None:
    content = books_csv(5_000, seed=1)

    text = content.decode("utf-8")
    assert "\r" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["order_id", "user_id", "book_id", "book_name", "order_cnt", "order_amt"]
    assert len(rows) == 5_001
    for order_id, user_id, book_id, book_name, order_cnt, order_amt in rows[1:]:
        assert str(uuid.UUID(order_id)) == order_id
        assert uuid.UUID(order_id).version == 4
        assert 1 <= int(user_id) <= 50
        assert 1 <= int(order_cnt) <= 5
        assert (book_name, int(order_amt)) == (PRICES[book_id][0], PRICES[book_id][1] * int(order_cnt))
    assert {row[2] for row in rows[1:]} == set(PRICES)
    assert len({row[0] for row in rows[1:]}) == 5_000


def test_book_orders_arrive_in_bounded_chunks() -> None:
    chunk_sizes = [len(chunk) for chunk in generate_books(50_000, seed=1)]

    assert len(chunk_sizes) > 5
    assert max(chunk_sizes) < 1 << 20


def test_the_same_seed_gives_the_same_book_orders_and_another_seed_others() -> None:
    assert books_csv(1_000, seed=7) == books_csv(1_000, seed=7)
    assert books_csv(1_000, seed=7) != books_csv(1_000, seed=8)


def test_zero_rows_is_just_the_header() -> None:
    assert books_csv(0, seed=1) == b"order_id,user_id,book_id,book_name,order_cnt,order_amt\n"


def test_rows_split_over_files_each_with_a_header_and_together_the_same_rows(tmp_path: Path) -> None:
    summary = write_books(1_001, str(tmp_path / "out"), objects=3, seed=5)

    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["book_order_0000.csv", "book_order_0001.csv", "book_order_0002.csv"]
    contents = [f.read_bytes() for f in files]
    assert all(c.startswith(b"order_id,user_id,") for c in contents)
    assert [len(data_lines(c)) for c in contents] == [334, 334, 333]
    assert list(itertools.chain(*map(data_lines, contents))) == data_lines(books_csv(1_001, seed=5))
    assert (summary.rows, len(summary.destinations), summary.bytes) == (1_001, 3, sum(map(len, contents)))


def test_a_file_destination_gets_exactly_that_file_and_gzip_compresses_it(tmp_path: Path) -> None:
    write_books(300, str(tmp_path / "orders.csv"), seed=2)
    write_books(300, str(tmp_path / "orders.csv.gz"), seed=2, gzip=True)

    plain = (tmp_path / "orders.csv").read_bytes()
    assert plain == books_csv(300, seed=2)
    assert gzip.decompress((tmp_path / "orders.csv.gz").read_bytes()) == plain


def test_the_command_prints_to_stdout_and_a_summary_to_stderr(capsysbinary: Any) -> None:
    exit_code = main(["generate", "books", "--rows", "20", "--seed", "3"])

    captured = capsysbinary.readouterr()
    assert exit_code == 0
    assert captured.out == books_csv(20, seed=3)
    assert b"generated 20 book orders" in captured.err


def test_the_command_refuses_sse_kms_without_an_s3_destination(capsys: Any) -> None:
    assert main(["generate", "books", "--rows", "1", "--sse-kms", "alias/x"]) == 1
    assert "--sse-kms needs an s3:// destination" in capsys.readouterr().err


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"generate-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    return name


def s3_body(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.mark.stack
def test_books_upload_to_s3_in_parts_as_plaintext(s3: Any, bucket: str) -> None:
    # About 10 MB: more than one part of a streamed multipart upload.
    write_books(150_000, f"s3://{bucket}/original-data/", seed=11, client=aws.client("s3"))

    head = s3.head_object(Bucket=bucket, Key="original-data/book_order.csv")
    assert head["ETag"].strip('"').endswith("-2")
    assert "ServerSideEncryption" not in head
    assert s3_body(s3, bucket, "original-data/book_order.csv") == books_csv(150_000, seed=11)


@pytest.mark.stack
def test_the_command_uploads_with_sse_kms_under_the_given_key(s3: Any, kms: Any, bucket: str) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]

    exit_code = main(
        [
            "generate",
            "books",
            "--rows",
            "500",
            "--seed",
            "4",
            "--to",
            f"s3://{bucket}/enc/",
            "--sse-kms",
            key_id,
        ]
    )

    assert exit_code == 0
    head = s3.head_object(Bucket=bucket, Key="enc/book_order.csv")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_id)
    assert s3_body(s3, bucket, "enc/book_order.csv") == books_csv(500, seed=4)


@pytest.mark.stack
def test_books_split_over_s3_objects_under_the_prefix(s3: Any, bucket: str) -> None:
    write_books(10, f"s3://{bucket}/in/", objects=4, seed=6, name="orders", client=s3)

    listing = s3.list_objects_v2(Bucket=bucket, Prefix="in/")["Contents"]
    assert [o["Key"] for o in listing] == [f"in/orders_000{i}.csv" for i in range(4)]
    bodies = [s3_body(s3, bucket, o["Key"]) for o in listing]
    assert [len(data_lines(b)) for b in bodies] == [3, 3, 2, 2]


# ---------------------------------------------------------------- sensor records


@pytest.fixture
def stream(kinesis: Any) -> str:
    name = f"sensors-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    return name


def landed_records(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    """Every record in ``stream``, with its partition key, read from every shard."""
    found = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            if not page["Records"]:
                break
            found += [{"key": r["PartitionKey"], **json.loads(r["Data"])} for r in page["Records"]]
            iterator = page.get("NextShardIterator")
    return found


def record_batches(client: Any) -> list[int]:
    """The number of entries in each PutRecords call made with ``client``."""
    sizes: list[int] = []
    client.meta.events.register(
        "before-parameter-build.kinesis.PutRecords", lambda params, **_: sizes.append(len(params["Records"]))
    )
    return sizes


class _Raw:
    """The ``raw`` an AWSResponse reads its body from."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def refuse_entries(client: Any, kinesis: Any, refuse: Callable[[int, int], bool]) -> None:
    """Make ``client``'s Kinesis refuse the entries for which ``refuse(call_number, index)`` is true.

    A stand-in front end: accepted entries are forwarded to moto and stored; refused ones are
    never stored and come back as failed entries, where a partial PutRecords failure puts them.
    """
    calls = itertools.count(1)
    throttled = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}

    def front(request: Any, **_: Any) -> AWSResponse:
        call = next(calls)
        body = json.loads(request.body)
        entries = body["Records"]
        refused = {index for index in range(len(entries)) if refuse(call, index)}
        accepted = [
            {"Data": base64.b64decode(entry["Data"]), "PartitionKey": entry["PartitionKey"]}
            for index, entry in enumerate(entries)
            if index not in refused
        ]
        stored = iter(
            kinesis.put_records(StreamName=body["StreamName"], Records=accepted)["Records"]
            if accepted
            else []
        )
        results = [throttled if index in refused else next(stored) for index in range(len(entries))]
        answer = json.dumps({"FailedRecordCount": len(refused), "Records": results}).encode()
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(answer))

    client.meta.events.register("before-send.kinesis.PutRecords", front)


def sensor_payloads(rows: list[dict[str, Any]]) -> Counter[tuple[int, int, str]]:
    return Counter((r["sensorId"], r["currentTemperature"], r["status"]) for r in rows)


@pytest.mark.stack
def test_sensor_records_land_in_batches_of_at_most_500_with_the_template_fields(
    kinesis: Any, stream: str
) -> None:
    client = aws.client("kinesis")
    batches = record_batches(client)

    landed = put_sensor_records(client, stream, 1_200, seed=1)

    records = landed_records(kinesis, stream)
    assert landed == len(records) == 1_200
    assert batches == [500, 500, 200]
    for record in records:
        assert set(record) == {"key", "sensorId", "currentTemperature", "status"}
        assert 0 <= record["sensorId"] <= 100
        assert 10 <= record["currentTemperature"] <= 150
        assert record["status"] in ("OK", "FAIL", "WARN")
        assert record["key"] == str(record["sensorId"])
    assert {r["status"] for r in records} == {"OK", "FAIL", "WARN"}


@pytest.mark.stack
def test_entries_kinesis_refuses_are_sent_again_until_exactly_all_land(kinesis: Any, stream: str) -> None:
    client = aws.client("kinesis")
    # Each batch's first two calls lose every third entry to throttling.
    refuse_entries(client, kinesis, lambda call, index: call % 3 != 0 and index % 3 == 0)

    landed = put_sensor_records(client, stream, 700, seed=2)

    records = landed_records(kinesis, stream)
    assert landed == len(records) == 700
    assert sensor_payloads(records) == sensor_payloads(list(sensor_records(700, seed=2)))


@pytest.mark.stack
def test_entries_refused_every_time_are_a_source_error_saying_how_many_did_not_land(
    kinesis: Any, stream: str
) -> None:
    client = aws.client("kinesis")
    refuse_entries(client, kinesis, lambda call, index: index < 10)

    with pytest.raises(
        SourceError, match=r"10 of 50 sensor records did not land in Kinesis stream"
    ) as raised:
        put_sensor_records(client, stream, 50, seed=3, attempts=2)

    assert "ProvisionedThroughputExceededException" in str(raised.value)
    assert len(landed_records(kinesis, stream)) == 40


@pytest.mark.stack
def test_a_rate_spreads_the_records_over_time(stream: str) -> None:
    import time

    client = aws.client("kinesis")
    batches = record_batches(client)
    started = time.monotonic()

    put_sensor_records(client, stream, 50, rate=100, seed=4)

    assert time.monotonic() - started >= 0.35
    assert max(batches) <= 20


@pytest.mark.stack
def test_the_sensors_command_puts_the_records_and_reports_them(
    kinesis: Any, stream: str, capsys: Any
) -> None:
    exit_code = main(["generate", "sensors", "--stream", stream, "--records", "30", "--seed", "5"])

    assert exit_code == 0
    assert len(landed_records(kinesis, stream)) == 30
    assert f"put 30 sensor records into {stream}" in capsys.readouterr().err


@pytest.mark.stack
def test_without_stream_the_sensors_command_uses_the_stream_the_pipeline_reads(
    kinesis: Any, stream: str, capsys: Any, monkeypatch: Any
) -> None:
    # As the issue's `pipeline generate sensors --records 2500`: the local stack sets PIPELINE_STREAM.
    monkeypatch.setenv("PIPELINE_STREAM", stream)

    exit_code = main(["generate", "sensors", "--records", "20"])

    assert exit_code == 0
    assert len(landed_records(kinesis, stream)) == 20
    assert f"put 20 sensor records into {stream}" in capsys.readouterr().err


@pytest.mark.stack
def test_a_missing_stream_is_a_source_error_naming_it(stack: Any) -> None:
    with pytest.raises(SourceError, match="Kinesis stream 'no-such-stream' does not exist"):
        put_sensor_records(aws.client("kinesis"), "no-such-stream", 5)
