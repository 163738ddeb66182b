"""S3 listing and streamed reads against moto, with faults injected through botocore event hooks.

moto never cuts a connection, throttles or refuses a KMS key, so those faults are injected on a
test's own client (``aws.client``), never on the session's shared clients.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from urllib3.exceptions import ProtocolError

from pipeline.errors import SourceError
from pipeline.sources import aws
from pipeline.sources.prefetch import prefetch
from pipeline.sources.s3 import S3Object, describe, list_objects, read_object, read_sample

# ---------------------------------------------------------------- fixtures and fault injection


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"s3-source-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    return name


@pytest.fixture
def reader(stack: Any) -> Any:
    """A client of the test's own, configured from the environment, for hooks to fault."""
    return aws.client("s3")


def put(s3: Any, bucket: str, key: str, body: bytes = b"x", **extra: Any) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)


def listed(s3: Any, bucket: str, key: str) -> S3Object:
    (obj,) = [o for o in list_objects(s3, bucket, key) if o.key == key]
    return obj


class _Raw:
    """The ``raw`` an AWSResponse reads its body from."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def s3_error(status: int, code: str, message: str) -> AWSResponse:
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return AWSResponse(
        "https://fault.invalid/", status, {"Content-Type": "application/xml"}, _Raw(body.encode())
    )


class _CutStream:
    """Delivers ``limit`` bytes of ``body``, then breaks the way a dropped connection does."""

    def __init__(self, body: StreamingBody, limit: int, silent: bool):
        self.body = body
        self.left = limit
        self.silent = silent

    def read(self, amt: int | None = None) -> bytes:
        if self.left <= 0:
            if self.silent:
                return b""  # the server closed early; only the Content-Length tells
            raise ProtocolError("Connection broken: ConnectionResetError(104, 'Connection reset by peer')")
        data = self.body.read(self.left if amt is None else min(amt, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.body.close()


def cut_bodies_after(
    client: Any, limit: int, *, silent: bool = False, when: Callable[[], bool] = lambda: True
):
    """Every GetObject body (while ``when()``) breaks after ``limit`` bytes."""

    def cut(parsed: dict[str, Any], **_: Any) -> None:
        if "Body" in parsed and when():
            parsed["Body"] = StreamingBody(_CutStream(parsed["Body"], limit, silent), parsed["ContentLength"])

    client.meta.events.register("after-call.s3.GetObject", cut)


def record_requests(client: Any, operation: str) -> list[dict[str, str]]:
    """Headers of every HTTP request sent for ``operation``, retries included."""
    sent: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        headers = request.headers.items()
        sent.append({k: v.decode() if isinstance(v, bytes) else v for k, v in headers})

    client.meta.events.register(f"before-send.s3.{operation}", record)
    return sent


def payload(size: int) -> bytes:
    return os.urandom(size)


# ---------------------------------------------------------------- listing


@pytest.mark.stack
def test_listing_pages_through_every_object_under_the_prefix_in_lexical_order(
    s3: Any, bucket: str, reader: Any
) -> None:
    keys = [f"orders/2024-01-{day:02d}.csv" for day in (5, 1, 3, 2, 4, 7, 6)]
    for key in keys:
        put(s3, bucket, key)
    put(s3, bucket, "orders/archive/")  # a folder marker, not an object to load
    put(s3, bucket, "other/2024-01-01.csv")
    pages = record_requests(reader, "ListObjectsV2")

    objects = list(list_objects(reader, bucket, "orders/", page_size=2))

    assert [o.key for o in objects] == sorted(keys)
    assert len(pages) == 4
    assert all(o.bucket == bucket and o.size == 1 and o.etag and '"' not in o.etag for o in objects)
    assert objects[0].uri == f"s3://{bucket}/orders/2024-01-01.csv"


@pytest.mark.stack
def test_start_after_skips_keys_up_to_and_including_the_last_path(s3: Any, bucket: str) -> None:
    for day in range(1, 6):
        put(s3, bucket, f"in/{day}.csv")

    keys = [o.key for o in list_objects(s3, bucket, "in/", start_after="in/3.csv", page_size=1)]

    assert keys == ["in/4.csv", "in/5.csv"]


@pytest.mark.stack
def test_pattern_is_a_regular_expression_searched_in_the_key(s3: Any, bucket: str) -> None:
    for key in ("in/a.csv", "in/a.csv.bak", "in/b.CSV", "in/c.csv", "in/readme.txt"):
        put(s3, bucket, key)

    keys = [o.key for o in list_objects(s3, bucket, "in/", pattern=r"\.csv$", page_size=2)]

    assert keys == ["in/a.csv", "in/c.csv"]


@pytest.mark.stack
def test_limit_caps_the_number_of_matching_objects(s3: Any, bucket: str) -> None:
    for index in range(6):
        put(s3, bucket, f"in/{index}.{'csv' if index % 2 else 'txt'}")

    assert [o.key for o in list_objects(s3, bucket, "in/", limit=4)] == [
        "in/0.txt",
        "in/1.csv",
        "in/2.txt",
        "in/3.csv",
    ]
    assert [o.key for o in list_objects(s3, bucket, "in/", pattern="csv", limit=2, page_size=1)] == [
        "in/1.csv",
        "in/3.csv",
    ]


@pytest.mark.stack
def test_listing_requests_the_next_page_only_when_the_caller_wants_more(
    s3: Any, bucket: str, reader: Any
) -> None:
    for index in range(10):
        put(s3, bucket, f"in/{index}.csv")
    pages = record_requests(reader, "ListObjectsV2")

    first_three = list(itertools.islice(list_objects(reader, bucket, "in/", page_size=2), 3))

    assert [o.key for o in first_three] == ["in/0.csv", "in/1.csv", "in/2.csv"]
    assert len(pages) == 2


@pytest.mark.stack
def test_a_missing_bucket_is_a_source_error_naming_the_bucket(s3: Any) -> None:
    with pytest.raises(SourceError, match="bucket 'no-such-bucket-for-pipeline' does not exist"):
        list(list_objects(s3, "no-such-bucket-for-pipeline", "in/"))


@pytest.mark.stack
def test_access_denied_on_listing_names_the_prefix_and_s3_list_bucket(bucket: str, reader: Any) -> None:
    reader.meta.events.register(
        "before-send.s3.ListObjectsV2", lambda **_: s3_error(403, "AccessDenied", "Access Denied")
    )

    with pytest.raises(SourceError) as raised:
        list(list_objects(reader, bucket, "secret/"))

    assert f"s3://{bucket}/secret/" in str(raised.value)
    assert "s3:ListBucket" in str(raised.value)


@pytest.mark.stack
def test_describe_reports_sse_kms_and_the_key(s3: Any, kms: Any, bucket: str) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    put(s3, bucket, "enc.csv", b"a,b\n", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)

    obj = describe(s3, listed(s3, bucket, "enc.csv"))

    assert (obj.sse, obj.kms_key_id, obj.size) == ("aws:kms", key_id, 4)


# ---------------------------------------------------------------- reading


@pytest.mark.stack
def test_read_object_streams_the_exact_bytes_in_chunks_of_at_most_chunk_size(s3: Any, bucket: str) -> None:
    data = payload(100_000)
    put(s3, bucket, "blob", data)

    chunks = list(read_object(s3, listed(s3, bucket, "blob"), chunk_size=16_384))

    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 16_384
    assert len(chunks) >= 100_000 // 16_384


@pytest.mark.stack
@pytest.mark.parametrize("silent", [False, True], ids=["connection-reset", "early-close"])
def test_a_connection_cut_mid_body_resumes_at_the_exact_offset_of_the_same_version(
    s3: Any, bucket: str, reader: Any, silent: bool
) -> None:
    data = payload(300_000)
    put(s3, bucket, "blob", data)
    obj = listed(s3, bucket, "blob")
    cut_bodies_after(reader, 50_000, silent=silent)
    gets = record_requests(reader, "GetObject")

    received = b"".join(read_object(reader, obj, chunk_size=8_192))

    assert received == data
    assert [get.get("Range") for get in gets] == [None] + [
        f"bytes={n}-" for n in range(50_000, 300_000, 50_000)
    ]
    assert {get["If-Match"] for get in gets} == {f'"{obj.etag}"'}


@pytest.mark.stack
def test_slowdown_on_a_fifth_of_gets_still_reads_the_exact_bytes(s3: Any, bucket: str, reader: Any) -> None:
    data = payload(200_000)
    put(s3, bucket, "blob", data)
    cut_bodies_after(reader, 20_000)
    calls = itertools.count(1)

    def slow_down(**_: Any) -> AWSResponse | None:
        if next(calls) % 5 == 0:
            return s3_error(503, "SlowDown", "Please reduce your request rate.")
        return None

    reader.meta.events.register("before-send.s3.GetObject", slow_down)

    received = b"".join(read_object(reader, listed(s3, bucket, "blob")))

    assert received == data
    assert next(calls) > 10  # about ten resumed reads, two of them refused with SlowDown


@pytest.mark.stack
def test_the_reader_itself_retries_a_5xx_that_botocore_gave_up_on(s3: Any, bucket: str) -> None:
    import boto3
    from botocore.config import Config

    data = payload(50_000)
    put(s3, bucket, "blob", data)
    no_retries = boto3.session.Session().client("s3", config=Config(retries={"total_max_attempts": 1}))
    failures = iter([s3_error(503, "SlowDown", "slow down"), s3_error(500, "InternalError", "oops")])
    no_retries.meta.events.register("before-send.s3.GetObject", lambda **_: next(failures, None))

    assert b"".join(read_object(no_retries, listed(s3, bucket, "blob"))) == data


@pytest.mark.stack
def test_reading_gives_up_after_the_attempts_without_progress(s3: Any, bucket: str, reader: Any) -> None:
    put(s3, bucket, "blob", payload(10_000))
    cut_bodies_after(reader, 0)

    with pytest.raises(SourceError, match=r"s3://.*/blob failed 3 times in a row at byte 0"):
        list(read_object(reader, listed(s3, bucket, "blob"), attempts=3))


@pytest.mark.stack
def test_an_object_replaced_while_being_read_is_a_source_error(s3: Any, bucket: str, reader: Any) -> None:
    put(s3, bucket, "blob", payload(100_000))
    obj = listed(s3, bucket, "blob")
    first_get = iter([True])

    def replace_then_cut() -> bool:
        if next(first_get, False):
            put(s3, bucket, "blob", payload(100_000))
            return True
        return False

    cut_bodies_after(reader, 30_000, when=replace_then_cut)

    with pytest.raises(SourceError, match=r"/blob changed while being read"):
        list(read_object(reader, obj))


@pytest.mark.stack
def test_an_object_replaced_after_listing_is_not_read_under_the_listed_etag(s3: Any, bucket: str) -> None:
    put(s3, bucket, "blob", b"version 1")
    obj = listed(s3, bucket, "blob")
    put(s3, bucket, "blob", b"version 2")

    with pytest.raises(SourceError, match=r"/blob changed since it was listed"):
        list(read_object(s3, obj))


@pytest.mark.stack
def test_an_object_deleted_after_listing_is_a_source_error(s3: Any, bucket: str) -> None:
    put(s3, bucket, "blob")
    obj = listed(s3, bucket, "blob")
    s3.delete_object(Bucket=bucket, Key="blob")

    with pytest.raises(SourceError, match=r"/blob no longer exists"):
        list(read_object(s3, obj))


@pytest.mark.stack
@pytest.mark.parametrize(
    ("status", "code", "message", "advice"),
    [
        (
            403,
            "AccessDenied",
            "User: arn:aws:iam::123456789012:user/loader is not authorized to perform: kms:Decrypt",
            "need kms:Decrypt",
        ),
        (
            400,
            "KMS.DisabledException",
            "arn:aws:kms:ap-northeast-1:123456789012:key is disabled.",
            "disabled",
        ),
        (400, "KMS.NotFoundException", "Invalid keyId", "does not exist"),
        (400, "KMS.KMSInvalidStateException", "key is pending deletion", "pending deletion"),
    ],
)
def test_a_kms_refusal_names_the_key_the_object_and_what_is_needed(
    s3: Any, kms: Any, bucket: str, reader: Any, status: int, code: str, message: str, advice: str
) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    put(s3, bucket, "enc.csv", b"a,b\n", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id)
    reader.meta.events.register("before-send.s3.GetObject", lambda **_: s3_error(status, code, message))

    with pytest.raises(SourceError) as raised:
        list(read_object(reader, listed(s3, bucket, "enc.csv")))

    text = str(raised.value)
    assert key_id in text
    assert f"s3://{bucket}/enc.csv" in text
    assert advice in text


@pytest.mark.stack
def test_read_sample_returns_the_first_bytes_and_whether_that_is_all(s3: Any, bucket: str) -> None:
    data = payload(5_000)
    put(s3, bucket, "blob", data)
    put(s3, bucket, "empty", b"")
    obj = listed(s3, bucket, "blob")

    assert read_sample(s3, obj, 1_000) == (data[:1_000], False)
    assert read_sample(s3, obj, 5_000) == (data, True)
    assert read_sample(s3, obj, 1 << 20) == (data, True)
    assert read_sample(s3, listed(s3, bucket, "empty"), 100) == (b"", True)


# ---------------------------------------------------------------- prefetch


class _CountingSource:
    """A generator of numbered chunks that records how far it got and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None):
        self.count = count
        self.fail_at = fail_at
        self.produced = 0
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        try:
            for index in range(self.count):
                if index == self.fail_at:
                    raise SourceError(f"connection lost at chunk {index}")
                self.produced += 1
                yield str(index).encode()
        finally:
            self.closed.set()


def _prefetch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "prefetch"]


def test_prefetch_yields_every_chunk_in_order() -> None:
    assert list(prefetch(_CountingSource(100), depth=3)) == [str(i).encode() for i in range(100)]
    assert _prefetch_threads() == []


def test_prefetch_reads_ahead_by_at_most_depth_while_the_consumer_is_busy() -> None:
    source = _CountingSource(100)
    chunks = prefetch(source, depth=4)

    next(chunks)
    deadline = time.monotonic() + 5
    while source.produced < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)

    # One handed over, four queued, one more read and waiting for room.
    assert source.produced == 6
    chunks.close()


def test_a_producer_error_is_raised_in_the_consumer_after_the_chunks_before_it() -> None:
    received = []

    with pytest.raises(SourceError, match="connection lost at chunk 5"):
        for chunk in prefetch(_CountingSource(10, fail_at=5), depth=2):
            received.append(chunk)

    assert received == [str(i).encode() for i in range(5)]
    assert _prefetch_threads() == []


def test_a_consumer_that_stops_early_stops_the_producer_and_closes_the_source() -> None:
    source = _CountingSource(10_000)
    chunks = prefetch(source, depth=4)

    assert [next(chunks), next(chunks)] == [b"0", b"1"]
    chunks.close()

    assert source.closed.is_set()
    assert source.produced <= 2 + 4 + 1
    assert _prefetch_threads() == []


def test_prefetch_overlaps_reading_with_consuming() -> None:
    def slow_reads() -> Iterator[bytes]:
        for _ in range(10):
            time.sleep(0.05)
            yield b"chunk"

    started = time.monotonic()
    for _chunk in prefetch(slow_reads()):
        time.sleep(0.05)  # the consumer's own work, e.g. COPY into the warehouse

    # In turn this takes a second; overlapped, a little over half of that.
    assert time.monotonic() - started < 0.85
