"""The Kinesis source: shards, ordered reads from checkpoints, throttling, KPL aggregates.

Tests that need the real API shapes run against the session stack's moto over HTTP, each on a
stream of its own; moto never throttles, expires iterators or routes records to child shards, so
those faults are injected with botocore event hooks, and resharding with data on both sides is
specified against a small in-memory Kinesis (``FakeKinesis``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import SourceError
from pipeline.sources import kinesis as source
from pipeline.sources.kinesis import (
    SHARD_END,
    CallRateLimiter,
    KinesisRecord,
    Shard,
    checkpoint_key,
    describe_stream,
    list_shards,
    read_order,
    read_shard,
    stream_tip_lag,
)
from pipeline.sources.kpl import MAGIC, UserRecord, aggregate, deaggregate

BIG_SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def reading_options(fake_time: FakeTime | None = None, **overrides: Any) -> dict[str, Any]:
    fake_time = fake_time or FakeTime()
    options = {"max_records": 1_000_000, "max_bytes": 1 << 40, "stop_at_tip": True}
    return {**options, "sleep": fake_time.sleep, "clock": fake_time.clock, **overrides}


def drain(
    client: Any, stream: str, checkpoints: dict[str, str], *, once: bool = False, **overrides: Any
) -> list[KinesisRecord]:
    """Read every shard the way runs do: in read order, until no checkpoint moves (or one pass)."""
    records: list[KinesisRecord] = []
    while True:
        moved = False
        for shard in read_order(list_shards(client, stream), checkpoints):
            reader = read_shard(
                client,
                stream,
                shard,
                after_sequence=checkpoints.get(shard.shard_id),
                **reading_options(**overrides),
            )
            records.extend(reader)
            if reader.checkpoint != checkpoints.get(shard.shard_id):
                checkpoints[shard.shard_id] = reader.checkpoint
                moved = True
        if once or not moved:
            return records


def payloads(records: Iterable[KinesisRecord]) -> list[dict]:
    return [json.loads(r.data) for r in records]


def assert_each_key_in_order(records: Iterable[KinesisRecord]) -> None:
    by_key: dict[str, list[int]] = defaultdict(list)
    for item in payloads(records):
        by_key[item["key"]].append(item["n"])
    for key, numbers in by_key.items():
        assert numbers == sorted(numbers), f"records of partition key {key} out of order"


# -- moto over HTTP ----------------------------------------------------------------------------


@pytest.fixture
def stream(kinesis) -> str:
    """A fresh two-shard stream of the test's own."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.1})
    return name


@pytest.fixture
def kinesis_without_retries(stack) -> Any:
    """A client of the test's own (hooks stay local) on which botocore retries nothing itself."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "kinesis",
        endpoint_url=stack.aws_endpoint,
        region_name=stack.region,
        aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"total_max_attempts": 1}),
    )


def put_sensor_records(kinesis: Any, stream: str, count: int, start: int = 0) -> list[dict]:
    items = [{"n": n, "key": f"sensor-{n % 7}"} for n in range(start, start + count)]
    for start_of_batch in range(0, len(items), 100):
        batch = items[start_of_batch : start_of_batch + 100]
        kinesis.put_records(
            StreamName=stream,
            Records=[{"Data": json.dumps(item).encode(), "PartitionKey": item["key"]} for item in batch],
        )
    return items


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self.data


def error_response(code: str, message: str, status: int = 400) -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "Content-Length": str(len(body))}
    return AWSResponse("https://kinesis.test/", status, headers, _Body(body))


def test_every_record_of_two_shards_is_read_exactly_once_and_in_order_per_partition_key(kinesis, stream):
    sent = put_sensor_records(kinesis, stream, 500)

    records = drain(kinesis, stream, {})

    assert sorted(payloads(records), key=lambda i: i["n"]) == sent
    assert {r.shard_id for r in records} == {"shardId-000000000000", "shardId-000000000001"}
    assert_each_key_in_order(records)


def test_records_carry_shard_sequence_partition_key_and_utc_arrival_time(kinesis, stream):
    before = datetime.now(UTC) - timedelta(seconds=5)
    kinesis.put_record(StreamName=stream, Data=b'{"n": 1}', PartitionKey="sensor-1")

    (record,) = drain(kinesis, stream, {})

    assert record.data == b'{"n": 1}'
    assert record.partition_key == "sensor-1"
    assert record.sub_sequence_number is None
    assert record.checkpoint == record.sequence_number == record.position
    assert record.approximate_arrival_timestamp.tzinfo == UTC
    assert before <= record.approximate_arrival_timestamp <= datetime.now(UTC) + timedelta(seconds=5)
    assert record.identity(stream) == f"{stream}/{record.shard_id}/{record.sequence_number}"
    assert record.metadata() == {
        "$record_timestamp": record.approximate_arrival_timestamp,
        "$shard_id": record.shard_id,
        "$sequence_number": record.sequence_number,
        "$partition_key": "sensor-1",
    }


def test_a_read_resumed_from_the_checkpoints_gets_the_rest_without_duplicates(kinesis, stream):
    sent = put_sensor_records(kinesis, stream, 300)
    checkpoints: dict[str, str] = {}

    first = drain(kinesis, stream, checkpoints, once=True, max_records=60)
    after_first = dict(checkpoints)
    rest = drain(kinesis, stream, checkpoints)

    assert len(first) == 120
    assert after_first == {r.shard_id: r.checkpoint for r in first}  # the last record of each shard
    assert sorted(payloads(first + rest), key=lambda i: i["n"]) == sent
    assert drain(kinesis, stream, checkpoints) == []


def test_max_records_and_max_bytes_end_a_read_at_a_record_boundary(kinesis, stream):
    put_sensor_records(kinesis, stream, 100)
    (shard, _) = list_shards(kinesis, stream)

    by_count = read_shard(kinesis, stream, shard, after_sequence=None, **reading_options(max_records=7))
    by_bytes = read_shard(kinesis, stream, shard, after_sequence=None, **reading_options(max_bytes=50))

    assert len(list(by_count)) == 7
    assert by_count.checkpoint is not None and by_count.records_read == 7
    records = list(by_bytes)
    assert sum(len(r.data) for r in records[:-1]) < 50 <= sum(len(r.data) for r in records)


def test_after_a_split_the_child_shards_wait_until_the_parent_is_read_to_its_end(kinesis, stream):
    sent = put_sensor_records(kinesis, stream, 100)
    kinesis.split_shard(
        StreamName=stream, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**126)
    )
    sent += put_sensor_records(kinesis, stream, 100, start=100)
    checkpoints: dict[str, str] = {}

    shards = {s.shard_id: s for s in list_shards(kinesis, stream)}
    first_ready = [s.shard_id for s in read_order(list(shards.values()), checkpoints)]
    records = drain(kinesis, stream, checkpoints)

    assert shards["shardId-000000000000"].closed
    assert shards["shardId-000000000002"].parent_shard_id == "shardId-000000000000"
    assert first_ready == ["shardId-000000000000", "shardId-000000000001"]
    assert checkpoints["shardId-000000000000"] == SHARD_END
    assert [s.shard_id for s in read_order(list(shards.values()), checkpoints)] == [
        "shardId-000000000001",
        "shardId-000000000002",
        "shardId-000000000003",
    ]
    assert sorted(payloads(records), key=lambda i: i["n"]) == sent
    assert_each_key_in_order(records)


def test_throttled_get_records_calls_back_off_and_every_record_arrives_once(
    kinesis, kinesis_without_retries, stream, monkeypatch
):
    backoffs = record_backoffs(monkeypatch)
    sent = put_sensor_records(kinesis, stream, 200)
    calls = itertools.count(1)
    throttled: list[int] = []

    def throttle_every_third_call(**_: Any) -> AWSResponse | None:
        number = next(calls)
        if number % 3:
            return None
        throttled.append(number)
        return error_response("ProvisionedThroughputExceededException", "Rate exceeded for shard")

    kinesis_without_retries.meta.events.register("before-send.kinesis.GetRecords", throttle_every_third_call)

    records = drain(kinesis_without_retries, stream, {}, records_per_call=9)

    assert len(throttled) >= 10
    assert sorted(payloads(records), key=lambda i: i["n"]) == sent
    assert backoffs == [0] * len(throttled)  # each throttled call backed off once, then succeeded


def test_an_expired_iterator_is_renewed_after_the_last_record_read(kinesis, kinesis_without_retries, stream):
    put_sensor_records(kinesis, stream, 200)
    (shard, _) = list_shards(kinesis, stream)
    expected = [r.data for r in read_shard(kinesis, stream, shard, after_sequence=None, **reading_options())]
    calls = itertools.count(1)
    iterator_requests: list[dict] = []

    def expire_the_third_call(**_: Any) -> AWSResponse | None:
        if next(calls) == 3:
            return error_response("ExpiredIteratorException", "Iterator expired")
        return None

    def remember(params: dict, **_: Any) -> None:
        iterator_requests.append(dict(params))

    kinesis_without_retries.meta.events.register("before-send.kinesis.GetRecords", expire_the_third_call)
    kinesis_without_retries.meta.events.register("before-parameter-build.kinesis.GetShardIterator", remember)

    reader = read_shard(
        kinesis_without_retries, stream, shard, after_sequence=None, records_per_call=10, **reading_options()
    )
    records = list(reader)

    assert [r.data for r in records] == expected
    assert [p["ShardIteratorType"] for p in iterator_requests] == ["TRIM_HORIZON", "AFTER_SEQUENCE_NUMBER"]
    assert iterator_requests[1]["StartingSequenceNumber"] == records[19].sequence_number


def test_kpl_aggregates_are_read_as_their_user_records_with_sub_sequence_checkpoints(kinesis, stream):
    users = [UserRecord(f"sensor-{n % 3}", json.dumps({"n": n, "key": "k"}).encode()) for n in range(5)]
    for data, key in [
        (aggregate(users[:3]), "aggregate"),
        (aggregate(users[3:]), "aggregate"),
        (b'{"n": 5, "key": "k"}', "plain"),
    ]:
        kinesis.put_record(StreamName=stream, Data=data, PartitionKey=key, ExplicitHashKey="0")
    shard = list_shards(kinesis, stream)[0]

    first = read_shard(kinesis, stream, shard, after_sequence=None, **reading_options(max_records=2))
    first_records = list(first)
    rest = list(read_shard(kinesis, stream, shard, after_sequence=first.checkpoint, **reading_options()))
    records = first_records + rest

    assert [item["n"] for item in payloads(records)] == [0, 1, 2, 3, 4, 5]
    assert [r.partition_key for r in records] == [
        "sensor-0",
        "sensor-1",
        "sensor-2",
        "sensor-0",
        "sensor-1",
        "plain",
    ]
    aggregate_one = records[0].sequence_number
    assert [r.position for r in records[:3]] == [
        f"{aggregate_one}/0",
        f"{aggregate_one}/1",
        f"{aggregate_one}/2",
    ]
    # The last user record of an aggregate checkpoints the whole Kinesis record.
    assert [r.checkpoint for r in records[:3]] == [f"{aggregate_one}/0", f"{aggregate_one}/1", aggregate_one]
    assert first.checkpoint == f"{aggregate_one}/1"
    assert records[0].identity(stream) == f"{stream}/{shard.shard_id}/{aggregate_one}/0"


def test_stream_tip_lag_says_which_shards_have_records_past_their_checkpoints(kinesis, stream):
    assert stream_tip_lag(kinesis, stream, {}) == {
        "shardId-000000000000": source.ShardLag(False, 0),
        "shardId-000000000001": source.ShardLag(False, 0),
    }
    put_sensor_records(kinesis, stream, 50)
    checkpoints: dict[str, str] = {}

    before = stream_tip_lag(kinesis, stream, checkpoints)
    drain(kinesis, stream, checkpoints)
    caught_up = stream_tip_lag(kinesis, stream, checkpoints)

    assert all(lag.has_records for lag in before.values())
    assert not any(lag.has_records for lag in caught_up.values())
    put_sensor_records(kinesis, stream, 1)
    assert sum(lag.has_records for lag in stream_tip_lag(kinesis, stream, checkpoints).values()) == 1


def test_a_reader_started_at_latest_pins_its_start_so_the_next_run_misses_nothing(kinesis, stream):
    put_sensor_records(kinesis, stream, 20)  # before the start: not wanted
    time.sleep(1.1)  # the start is pinned to the server's clock in whole seconds
    checkpoints: dict[str, str] = {}

    nothing = drain(kinesis, stream, checkpoints, starting_position="latest")
    pinned = dict(checkpoints)
    after_start = put_sensor_records(kinesis, stream, 30, start=100)
    later = drain(kinesis, stream, checkpoints, starting_position="latest")

    assert nothing == []
    assert all(value.startswith("at:") for value in pinned.values()) and len(pinned) == 2
    assert sorted(payloads(later), key=lambda i: i["n"]) == after_start


def test_a_reader_can_start_at_a_timestamp(kinesis, stream):
    put_sensor_records(kinesis, stream, 10)
    time.sleep(0.05)
    start = datetime.now(UTC)
    time.sleep(0.05)
    wanted = put_sensor_records(kinesis, stream, 10, start=10)

    records = drain(kinesis, stream, {}, starting_position="at_timestamp", timestamp=start)

    assert sorted(payloads(records), key=lambda i: i["n"]) == wanted


def test_describe_stream_gives_status_shards_retention_and_encryption(kinesis, stream):
    plain = describe_stream(kinesis, stream)
    kinesis.start_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    encrypted = describe_stream(kinesis, stream)

    assert (plain.name, plain.status, plain.open_shard_count) == (stream, "ACTIVE", 2)
    assert plain.retention_period_hours == 24
    assert plain.encryption_type == "NONE" and plain.key_id is None
    assert plain.arn.endswith(f":stream/{stream}")
    assert (encrypted.encryption_type, encrypted.key_id) == ("KMS", "alias/aws/kinesis")
    assert encrypted.as_metadata()["kms_key_id"] == "alias/aws/kinesis"
    assert describe_stream(kinesis, plain.arn).name == stream


def test_a_missing_stream_is_a_source_error_naming_it(kinesis):
    with pytest.raises(
        SourceError, match="kinesis stream no-such-stream: ListShards failed: ResourceNotFound"
    ):
        list_shards(kinesis, "no-such-stream")


# -- reading order after resharding ------------------------------------------------------------


def shard(shard_id: str, *parents: str, ending: int | None = None) -> Shard:
    return Shard(
        shard_id,
        parents[0] if parents else None,
        parents[1] if len(parents) > 1 else None,
        "1",
        None if ending is None else str(ending),
    )


SPLIT = [shard("s0", ending=100), shard("s1"), shard("s2", "s0"), shard("s3", "s0")]
MERGE = [shard("s0", ending=100), shard("s1", ending=200), shard("s2", "s0", "s1")]


@pytest.mark.parametrize(
    ("shards", "checkpoints", "ready"),
    [
        (SPLIT, {}, ["s0", "s1"]),
        (SPLIT, {"s0": "99"}, ["s0", "s1"]),
        (SPLIT, {"s0": "100/3"}, ["s0", "s1"]),
        (SPLIT, {"s0": "100"}, ["s1", "s2", "s3"]),
        (SPLIT, {"s0": SHARD_END, "s2": "7"}, ["s1", "s2", "s3"]),
        (SPLIT[1:], {}, ["s1", "s2", "s3"]),  # the parent aged out of retention
        (MERGE, {"s0": SHARD_END}, ["s1"]),
        (MERGE, {"s0": SHARD_END, "s1": "200"}, ["s2"]),
        (MERGE, {"s0": SHARD_END, "s1": SHARD_END, "s2": SHARD_END}, []),
    ],
)
def test_a_child_shard_is_read_only_after_its_parents_are_read_to_their_end(shards, checkpoints, ready):
    assert [s.shard_id for s in read_order(shards, checkpoints)] == ready


@pytest.mark.parametrize(
    "ordered",
    [
        ["5/0", "5/1", "5/12", "5", "6/0", "6"],
        ["9", "10", "99999999999999999999999999999999999999/0", "100000000000000000000000000000000000000"],
    ],
)
def test_checkpoints_order_by_sequence_then_sub_sequence_not_as_text(ordered):
    assert sorted(reversed(ordered), key=checkpoint_key) == ordered


class FakeKinesis:
    """An in-memory Kinesis with resharding: shard iterators are ``<shard>:<index>``."""

    def __init__(self, shards: dict[Shard, list[tuple[str, bytes]]], clock: FakeTime | None = None):
        self.shards = {s.shard_id: s for s in shards}
        self.records: dict[str, list[dict]] = {}
        self.call_times: list[float] = []
        self.clock = clock
        sequence = itertools.count(BIG_SEQUENCE, 7)
        for item, records in shards.items():
            self.records[item.shard_id] = [
                {
                    "SequenceNumber": str(next(sequence)),
                    "PartitionKey": key,
                    "Data": data,
                    "ApproximateArrivalTimestamp": datetime(2024, 1, 1, tzinfo=UTC),
                }
                for key, data in records
            ]

    def list_shards(self, **_: Any) -> dict:
        return {"Shards": [self._describe(s) for s in self.shards.values()]}

    def _describe(self, item: Shard) -> dict:
        numbers = {"StartingSequenceNumber": "0"}
        if item.closed:  # past the last record, as Kinesis may say: the end shows as a null iterator
            numbers["EndingSequenceNumber"] = str(int(self.records[item.shard_id][-1]["SequenceNumber"]) + 1)
        described = {"ShardId": item.shard_id, "SequenceNumberRange": numbers}
        if item.parent_shard_id:
            described["ParentShardId"] = item.parent_shard_id
        return described

    def get_shard_iterator(self, ShardId: str, ShardIteratorType: str, StartingSequenceNumber: str = "", **_):
        numbers = [int(r["SequenceNumber"]) for r in self.records[ShardId]]
        index = {
            "TRIM_HORIZON": lambda: 0,
            "LATEST": lambda: len(numbers),
            "AT_SEQUENCE_NUMBER": lambda: numbers.index(int(StartingSequenceNumber)),
            "AFTER_SEQUENCE_NUMBER": lambda: numbers.index(int(StartingSequenceNumber)) + 1,
        }[ShardIteratorType]()
        return {"ShardIterator": f"{ShardId}:{index}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict:
        if self.clock:
            self.call_times.append(self.clock.now)
        shard_id, index = ShardIterator.rsplit(":", 1)
        records = self.records[shard_id]
        start = int(index)
        end = min(start + Limit, len(records))
        at_end = end == len(records)
        return {
            "Records": records[start:end],
            "MillisBehindLatest": 0 if at_end else 1000,
            "NextShardIterator": None if at_end and self.shards[shard_id].closed else f"{shard_id}:{end}",
        }


def sensor(n: int, key: str) -> tuple[str, bytes]:
    return key, json.dumps({"n": n, "key": key}).encode()


def test_after_a_split_every_partition_key_is_read_in_order_across_parent_and_children():
    # s0 was split into s2 and s3 after record 3; s1 was merged with nothing and stays open.
    fake = FakeKinesis(
        {
            shard("s0", ending=0): [sensor(0, "a"), sensor(1, "b"), sensor(2, "a"), sensor(3, "b")],
            shard("s1"): [sensor(4, "c")],
            shard("s2", "s0"): [sensor(5, "a"), sensor(7, "a")],
            shard("s3", "s0"): [sensor(6, "b")],
        }
    )
    checkpoints: dict[str, str] = {}

    records = drain(fake, "sensors", checkpoints)

    assert sorted(item["n"] for item in payloads(records)) == list(range(8))
    assert_each_key_in_order(records)
    assert checkpoints["s0"] == SHARD_END
    assert [r.shard_id for r in records if r.shard_id != "s1"] == ["s0"] * 4 + ["s2", "s2", "s3"]


def test_a_closed_shard_ends_at_a_null_next_iterator_and_stays_finished():
    fake = FakeKinesis({shard("s0", ending=0): [sensor(n, "a") for n in range(5)]})
    (closed,) = list_shards(fake, "sensors")

    reader = read_shard(fake, "sensors", closed, after_sequence=None, **reading_options(stop_at_tip=False))
    records = list(reader)
    again = read_shard(fake, "sensors", closed, after_sequence=reader.checkpoint, **reading_options())

    assert len(records) == 5
    assert reader.shard_end and reader.checkpoint == SHARD_END
    assert list(again) == [] and again.calls == 0


@given(
    records_per_call=st.integers(1, 6),
    max_records=st.integers(1, 14),
    closed=st.booleans(),
)
def test_reading_by_pages_gives_the_same_records_and_checkpoints_as_reading_record_by_record(
    records_per_call, max_records, closed
):
    # Plain records and KPL aggregates (one empty), pages of a few Kinesis records, a limit that may stop mid-aggregate.
    users = [UserRecord(f"k{n}", json.dumps({"n": n, "key": "k"}).encode()) for n in range(12)]
    data = [users[0].data, aggregate(users[1:4]), aggregate([]), users[4].data, aggregate(users[5:9]),
            users[9].data, aggregate(users[10:])]
    fake = FakeKinesis({shard("s0", ending=0 if closed else None): [("p", item) for item in data]})
    (only,) = list_shards(fake, "sensors")
    options = reading_options(max_records=max_records, records_per_call=records_per_call)

    by_record = read_shard(fake, "sensors", only, after_sequence=None, **options)
    expected = [record.position for record in by_record]
    everything = [r.position for r in read_shard(fake, "sensors", only, after_sequence=None, **reading_options())]
    by_page = read_shard(fake, "sensors", only, after_sequence=None, **options)
    got: list[str] = []
    for page in by_page.pages():
        got.extend(record.position for record in page.records)
        # Once a page is yielded its checkpoint covers it: reading on from there gets exactly the rest.
        rest = read_shard(fake, "sensors", only, after_sequence=by_page.checkpoint, **reading_options())
        assert [r.position for r in rest] == everything[len(got):]

    assert got == expected == everything[:max_records]
    assert by_page.checkpoint == by_record.checkpoint
    assert by_page.records_read == by_record.records_read == min(max_records, 12)


def test_get_records_calls_on_a_shard_never_exceed_five_a_second():
    fake_time = FakeTime()
    fake = FakeKinesis({shard("s0"): [sensor(n, "a") for n in range(30)]}, clock=fake_time)
    (only,) = list_shards(fake, "sensors")

    reader = read_shard(
        fake, "sensors", only, after_sequence=None, records_per_call=1, **reading_options(fake_time)
    )
    records = list(reader)

    assert len(records) == 30 and len(fake.call_times) == 31  # the last call finds the tip
    for first, sixth in itertools.pairwise(fake.call_times[::5]):
        assert sixth - first >= 1.0 - 1e-9
    assert fake.call_times[-1] - fake.call_times[0] == pytest.approx(30 * 0.2)


def test_the_rate_limiter_waits_only_as_long_as_needed():
    fake_time = FakeTime()
    limiter = CallRateLimiter(5, clock=fake_time.clock, sleep=fake_time.sleep)

    limiter.wait()
    fake_time.now += 0.05  # the call took 50 ms
    limiter.wait()
    fake_time.now += 1.0  # a slow consumer: no wait at all
    limiter.wait()

    assert fake_time.sleeps == [pytest.approx(0.15)]


def test_an_open_shard_at_its_tip_is_polled_again_when_not_stopping_at_the_tip():
    fake_time = FakeTime()
    fake = FakeKinesis({shard("s0"): [sensor(n, "a") for n in range(3)]}, clock=fake_time)
    (only,) = list_shards(fake, "sensors")
    late_record = {**fake.records["s0"][-1], "SequenceNumber": str(BIG_SEQUENCE + 1000)}

    def sleep(seconds: float) -> None:
        fake_time.sleep(seconds)
        if seconds == source.IDLE_POLL_SECONDS:  # a record arrives while the reader idles at the tip
            fake.records["s0"].append(late_record)

    reader = read_shard(
        fake, "sensors", only, after_sequence=None, **reading_options(stop_at_tip=False, sleep=sleep)
    )
    records = [next(reader) for _ in range(4)]

    assert records[3].sequence_number == late_record["SequenceNumber"]
    assert fake_time.sleeps.count(source.IDLE_POLL_SECONDS) == 1
    assert len(fake.call_times) == 3  # a batch, an empty poll at the tip, the late record


def record_backoffs(monkeypatch) -> list[int]:
    """The attempt numbers the reader backs off for, in order."""
    attempts: list[int] = []
    real = source.backoff_seconds

    def backoff_seconds(attempt: int) -> float:
        attempts.append(attempt)
        return real(attempt)

    monkeypatch.setattr(source, "backoff_seconds", backoff_seconds)
    return attempts


class AlwaysFailing:
    """A Kinesis whose GetRecords always fails with ``code``."""

    def __init__(self, code: str, status: int = 400):
        self.code, self.status = code, status
        self.calls = 0

    def get_shard_iterator(self, **_: Any) -> dict:
        return {"ShardIterator": "s0:0"}

    def get_records(self, **_: Any) -> dict:
        self.calls += 1
        error = {
            "Error": {"Code": self.code, "Message": "no"},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        raise ClientError(error, "GetRecords")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("KMSThrottlingException", 400),
        ("LimitExceededException", 400),
        ("InternalFailure", 500),
        ("SomethingNew", 503),
    ],
)
def test_throttling_and_server_errors_are_retried_with_growing_backoff_then_named(code, status, monkeypatch):
    backoffs = record_backoffs(monkeypatch)
    failing = AlwaysFailing(code, status)

    with pytest.raises(SourceError) as caught:
        list(
            read_shard(
                failing, "sensors", shard("s0"), after_sequence=None, max_retries=6, **reading_options()
            )
        )

    assert str(caught.value) == f"sensors/s0: GetRecords failed: {code}: no"
    assert failing.calls == 7
    assert backoffs == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "KMSAccessDeniedException", "ResourceNotFoundException"]
)
def test_an_error_that_retrying_cannot_fix_is_a_source_error_at_once(code, monkeypatch):
    backoffs = record_backoffs(monkeypatch)
    failing = AlwaysFailing(code)

    with pytest.raises(SourceError, match=f"sensors/s0: GetRecords failed: {code}"):
        list(read_shard(failing, "sensors", shard("s0"), after_sequence=None, **reading_options()))

    assert failing.calls == 1
    assert backoffs == []


def test_backoff_grows_exponentially_up_to_its_cap():
    random.seed(3)
    draws = {attempt: [source.backoff_seconds(attempt) for _ in range(200)] for attempt in range(12)}

    for attempt, values in draws.items():
        ceiling = min(source.BACKOFF_CAP_SECONDS, source.BACKOFF_BASE_SECONDS * 2**attempt)
        assert all(0 <= v <= ceiling for v in values)
        assert max(values) > ceiling * 0.8  # jitter spreads over the whole range


def test_list_shards_pages_with_the_next_token_alone_as_kinesis_requires():
    import boto3

    client = boto3.client(
        "kinesis", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    page = {
        "SequenceNumberRange": {"StartingSequenceNumber": "1"},
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "1"},
    }
    with Stubber(client) as stub:
        stub.add_response(
            "list_shards",
            {"Shards": [{"ShardId": "shardId-000000000001", **page}], "NextToken": "page-2"},
            {"StreamName": "sensors", "MaxResults": 1},
        )
        stub.add_response(
            "list_shards",
            {"Shards": [{"ShardId": "shardId-000000000000", **page}]},
            {"NextToken": "page-2", "MaxResults": 1},
        )
        shards = list_shards(client, "sensors", page_size=1)

    assert [s.shard_id for s in shards] == ["shardId-000000000000", "shardId-000000000001"]


# -- KPL aggregation ---------------------------------------------------------------------------


def test_an_aggregate_is_magic_then_protobuf_then_its_md5():
    # From the format: partition_key_table = ["pk"], records = [{partition_key_index: 0, data: "hi"}]
    message = bytes([0x0A, 2]) + b"pk" + bytes([0x1A, 6, 0x08, 0x00, 0x1A, 2]) + b"hi"
    expected = MAGIC + message + hashlib.md5(message).digest()

    assert aggregate([("pk", b"hi")]) == expected
    assert deaggregate(expected) == [UserRecord("pk", b"hi")]


def test_unknown_fields_and_tags_in_an_aggregate_are_skipped():
    tag = bytes([0x22, 4, 0x0A, 2]) + b"ab"  # tags = [{key: "ab"}]
    record = bytes([0x08, 0x00, 0x1A, 2]) + b"hi" + tag + bytes([0x2D, 1, 2, 3, 4])  # and a fixed32 field 5
    message = bytes([0x0A, 2]) + b"pk" + bytes([0x1A, len(record)]) + record + bytes([0x20, 0x96, 0x01])
    data = MAGIC + message + hashlib.md5(message).digest()

    assert deaggregate(data) == [UserRecord("pk", b"hi")]


@pytest.mark.parametrize(
    "data",
    [
        b'{"sensorId": 1}',
        MAGIC + b"\x0a\x02pk" + b"\x00" * 16,  # the digest does not match
        MAGIC[:3] + b"\x0a" + aggregate([("pk", b"hi")])[4:],  # the magic does not match
        MAGIC + b"\x0a\x09pk" + hashlib.md5(b"\x0a\x09pk").digest(),  # a key runs past the end
        MAGIC + b"\x1a\x02\x08\x05" + hashlib.md5(b"\x1a\x02\x08\x05").digest(),  # no data, index past table
        b"",
    ],
)
def test_anything_but_a_well_formed_aggregate_is_a_plain_record(data):
    assert deaggregate(data) is None


user_records = st.lists(
    st.builds(
        UserRecord,
        st.text(min_size=1, max_size=20),
        st.binary(max_size=300),
        st.none() | st.integers(0, 2**128 - 1).map(str),
    ),
    max_size=20,
)


@given(user_records)
def test_aggregate_then_deaggregate_gives_back_every_user_record_in_order(records):
    assert deaggregate(aggregate(records)) == records


@given(st.binary(max_size=2000))
def test_deaggregating_any_bytes_gives_user_records_or_none(data):
    result = deaggregate(MAGIC + data + hashlib.md5(data).digest())

    assert result is None or all(isinstance(r, UserRecord) for r in result)
