"""``pipeline generate``: sample data for the two reference pipelines.

``books`` writes the tutorial's ``book_order`` CSV to stdout, a file or S3 (plaintext or
SSE-KMS), streaming in constant memory. ``sensors`` puts the Kinesis Data Generator's sensor
records into a Kinesis stream with PutRecords, retrying the entries Kinesis refused.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import sys
import time
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from pipeline.errors import PipelineError, SourceError

log = logging.getLogger(__name__)

BOOK_ORDER_HEADER = "order_id,user_id,book_id,book_name,order_cnt,order_amt\n"
# (book_id, book_name, price) as in the tutorial.
BOOKS: tuple[tuple[int, str, int], ...] = (
    (1, "嫌われる勇気", 500),
    (2, "ノルウェイの森", 600),
    (3, "海辺のカフカ", 700),
    (4, "色彩を持たない多崎つくると彼の巡礼の年", 300),
    (5, "容疑者Ⅹの献身", 200),
    (6, "人間失格", 100),
    (7, "こころ", 350),
    (8, "天声人语", 550),
    (9, "幸せになる勇気", 650),
)
USER_IDS = range(1, 51)
ORDER_COUNTS = range(1, 6)
SENSOR_IDS = range(0, 101)
SENSOR_TEMPERATURES = range(10, 151)
SENSOR_STATUSES = ("OK", "FAIL", "WARN")

# Every "user_id,...,order_amt" tail a row can have; a row is a uuid and one of these.
_ORDER_TAILS = tuple(
    f"{user},{book},{name},{count},{price * count}\n"
    for user in USER_IDS
    for book, name, price in BOOKS
    for count in ORDER_COUNTS
)
# UUID variant bits (RFC 4122: 10xx) applied to the first hex digit of the fourth group.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_ROWS_PER_CHUNK = 8192
_UPLOAD_PART_BYTES = 8 << 20

# PutRecords limits: 500 entries and 5 MiB (data plus partition keys) per call.
PUT_RECORDS_MAX_ENTRIES = 500
PUT_RECORDS_MAX_BYTES = 5 << 20
PUT_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0
_THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"}
)


# ---------------------------------------------------------------- book orders


def generate_books(rows: int, seed: int | None = None) -> Iterator[bytes]:
    """Yield a ``book_order`` CSV (header, then ``rows`` rows, UTF-8, LF) in chunks of bytes.

    The same ``seed`` yields the same bytes; ``None`` draws a fresh seed.
    """
    return _book_chunks(random.Random(seed), rows)


def _book_chunks(rng: random.Random, rows: int) -> Iterator[bytes]:
    if rows < 0:
        raise ValueError("rows must not be negative")
    yield BOOK_ORDER_HEADER.encode()
    left = rows
    while left > 0:
        count = min(left, _ROWS_PER_CHUNK)
        yield _book_rows(rng, count).encode()
        left -= count


def _book_rows(rng: random.Random, count: int) -> str:
    # 20 random bytes a row (uuid, then the pick of tail) drawn in bulk: fast, and the same rows
    # for a seed however they are split into chunks or files.
    random_bytes = rng.randbytes(20 * count)
    hexes = random_bytes.hex()
    words = array("I", random_bytes)
    if sys.byteorder == "big":
        words.byteswap()  # the same seed gives the same rows on every machine
    tails = _ORDER_TAILS
    kinds = len(tails)
    variant = _VARIANT_DIGIT
    # order_id is formatted as str(uuid.UUID(bytes=..., version=4)) would be.
    return "".join(
        [
            f"{hexes[i : i + 8]}-{hexes[i + 8 : i + 12]}-4{hexes[i + 13 : i + 16]}-"
            f"{variant[hexes[i + 16]]}{hexes[i + 17 : i + 20]}-{hexes[i + 20 : i + 32]},"
            f"{tails[pick % kinds]}"
            for i, pick in zip(range(0, 40 * count, 40), words[4::5], strict=True)
        ]
    )


@dataclass
class GenerateSummary:
    """What a generator wrote: rows, where (file paths or s3:// URIs), bytes and seconds."""

    rows: int = 0
    destinations: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def describe(self, what: str) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        where = self.destinations[0] if len(self.destinations) == 1 else f"{len(self.destinations)} objects"
        return (
            f"generated {self.rows:,} {what} into {where} ({self.bytes:,} bytes) "
            f"in {self.seconds:.2f} s ({rate:,.0f} rows/s)"
        )


def write_books(
    rows: int,
    to: str | None = None,
    *,
    objects: int = 1,
    seed: int | None = None,
    name: str = "book_order",
    sse_kms_key_id: str | None = None,
    gzip: bool = False,
    client: Any = None,
    stdout: IO[bytes] | None = None,
) -> GenerateSummary:
    """Write ``rows`` book orders split over ``objects`` CSV files, each with its header.

    ``to`` is ``None`` (``stdout``), a local path, or ``s3://bucket/prefix``. A destination ending
    in ``.csv`` (or ``.csv.gz``) names the single object itself; otherwise the objects are
    ``<prefix><name>.csv``, or ``<prefix><name>_<index>.csv`` with a zero-padded index when there
    are several (a local directory gets ``/<name>...``). Rows are spread evenly, in order, so one
    seed gives the same rows whatever ``objects`` is.
    """
    if objects < 1:
        raise PipelineError("--objects must be at least 1")
    if rows < 0:
        raise PipelineError("--rows must not be negative")
    is_s3 = to is not None and to.startswith("s3://")
    if sse_kms_key_id and not is_s3:
        raise PipelineError("--sse-kms needs an s3:// destination in --to")
    if to is None and objects > 1:
        raise PipelineError("--objects greater than 1 needs a destination in --to")
    rng = random.Random(seed)
    suffix = ".csv.gz" if gzip else ".csv"
    summary = GenerateSummary()
    started = time.perf_counter()
    for index, destination in enumerate(_destinations(to, name, objects, suffix)):
        count = rows // objects + (1 if index < rows % objects else 0)
        counted = _Counted(_gzipped(_book_chunks(rng, count)) if gzip else _book_chunks(rng, count))
        if destination is None:
            _write_stream(counted, stdout or sys.stdout.buffer)
            summary.destinations.append("stdout")
        elif is_s3:
            content_type = "application/gzip" if gzip else "text/csv; charset=utf-8"
            client = client or _aws_client("s3")
            _upload(client, destination, counted, content_type, sse_kms_key_id)
            summary.destinations.append(destination)
        else:
            parent = os.path.dirname(destination)
            if parent:
                os.makedirs(parent, exist_ok=True)
            with open(destination, "wb") as file:
                _write_stream(counted, file)
            summary.destinations.append(destination)
        summary.rows += count
        summary.bytes += counted.bytes
    summary.seconds = time.perf_counter() - started
    return summary


def _destinations(to: str | None, name: str, objects: int, suffix: str) -> list[str | None]:
    if to is None:
        return [None]
    is_s3 = to.startswith("s3://")
    names_itself = to.endswith((".csv", ".gz")) or (
        not is_s3 and objects == 1 and not os.path.isdir(to) and not to.endswith(os.sep)
    )
    if objects == 1 and names_itself:
        return [to]
    if names_itself:
        raise PipelineError(f"--to {to} names one file, but --objects is {objects}: give a prefix")
    if not is_s3 and not to.endswith(os.sep):
        to += os.sep  # a local destination for generated names is a directory
    if objects == 1:
        return [f"{to}{name}{suffix}"]
    width = max(4, len(str(objects - 1)))
    return [f"{to}{name}_{index:0{width}d}{suffix}" for index in range(objects)]


class _Counted:
    """Passes chunks through, counting their bytes."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = chunks
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.bytes += len(chunk)
            yield chunk


def _gzipped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    compressor = zlib.compressobj(wbits=31)  # 31: gzip framing, as the gzip command writes
    for chunk in chunks:
        compressed = compressor.compress(chunk)
        if compressed:
            yield compressed
    yield compressor.flush()


def _write_stream(chunks: Iterable[bytes], out: IO[bytes]) -> None:
    for chunk in chunks:
        out.write(chunk)
    out.flush()


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of chunks, so uploads pull rows as they are made."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _upload(
    client: Any, uri: str, chunks: Iterable[bytes], content_type: str, sse_kms_key_id: str | None
) -> None:
    from boto3.exceptions import S3UploadFailedError
    from boto3.s3.inject import upload_fileobj
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise PipelineError(f"{uri} is not an s3://bucket/key destination")
    extra: dict[str, str] = {"ContentType": content_type}
    if sse_kms_key_id:
        extra |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": sse_kms_key_id}
    # BufferedReader fills every read, so multipart parts are full-sized, never short.
    body = io.BufferedReader(_ChunkReader(chunks), buffer_size=1 << 20)
    transfer = TransferConfig(
        multipart_threshold=_UPLOAD_PART_BYTES,
        multipart_chunksize=_UPLOAD_PART_BYTES,
        max_concurrency=4,
        max_io_queue=8,
    )
    try:
        upload_fileobj(client, body, bucket, key, ExtraArgs=extra, Config=transfer)  # a botocore client too
    except (S3UploadFailedError, ClientError, BotoCoreError) as error:
        raise PipelineError(f"uploading {uri} failed: {error}") from error


# ---------------------------------------------------------------- sensor records


def sensor_records(count: int, seed: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``count`` records of the Kinesis Data Generator's sensor template."""
    rng = random.Random(seed)
    for _ in range(count):
        yield {
            "sensorId": rng.randint(SENSOR_IDS.start, SENSOR_IDS.stop - 1),
            "currentTemperature": rng.randint(SENSOR_TEMPERATURES.start, SENSOR_TEMPERATURES.stop - 1),
            "status": rng.choice(SENSOR_STATUSES),
        }


def put_sensor_records(
    client: Any,
    stream: str,
    records: int,
    rate: float | None = None,
    seed: int | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    attempts: int = PUT_ATTEMPTS,
) -> int:
    """Put ``records`` sensor records into Kinesis ``stream``; return how many landed.

    Records go in PutRecords batches of at most 500 entries and 5 MiB, partitioned by sensorId.
    Entries Kinesis refuses (throughput exceeded, internal failure) are sent again with capped
    exponential backoff; when ``attempts`` run out, :class:`SourceError` says how many did not
    land. ``rate`` caps records per second. ``on_progress(landed, records)`` follows each batch.
    """
    if records < 0:
        raise PipelineError("--records must not be negative")
    if rate is not None and rate <= 0:
        raise PipelineError("--rate must be positive")
    # With a rate, send about five batches a second so the pace is smooth.
    batch_limit = (
        PUT_RECORDS_MAX_ENTRIES if rate is None else max(1, min(PUT_RECORDS_MAX_ENTRIES, int(rate / 5)))
    )
    started = time.monotonic()
    sent = 0
    landed = 0
    for batch in _sensor_batches(sensor_records(records, seed), batch_limit):
        if rate is not None:
            due = started + sent / rate
            time.sleep(max(0.0, due - time.monotonic()))
        landed_now, failure = _put_with_retries(client, stream, batch, attempts)
        landed += landed_now
        sent += len(batch)
        if on_progress is not None:
            on_progress(landed, records)
        if failure:
            raise SourceError(
                f"{records - landed:,} of {records:,} sensor records did not land in Kinesis stream "
                f"{stream!r}: {len(batch) - landed_now} were refused {attempts} times ({failure})"
            )
    return landed


def _sensor_batches(rows: Iterable[dict[str, Any]], limit: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        data, key = json.dumps(row).encode(), str(row["sensorId"])
        entry = {"Data": data, "PartitionKey": key}
        entry_size = len(data) + len(key.encode())
        if batch and (len(batch) >= limit or size + entry_size > PUT_RECORDS_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


def _put_with_retries(
    client: Any, stream: str, batch: list[dict[str, Any]], attempts: int
) -> tuple[int, str | None]:
    """Return (entries that landed, last failure if some never did)."""
    from botocore.exceptions import BotoCoreError, ClientError

    pending = batch
    landed = 0
    failure = ""
    for attempt in range(1, attempts + 1):
        try:
            response = client.put_records(StreamName=stream, Records=pending)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "ResourceNotFoundException":
                raise SourceError(f"Kinesis stream {stream!r} does not exist ({error})") from error
            if code not in _THROTTLING_CODES and status < 500:
                raise SourceError(f"PutRecords to Kinesis stream {stream!r} failed: {error}") from error
            failure = f"{code}: {error.response.get('Error', {}).get('Message', '')}"
        except BotoCoreError as error:
            failure = f"{type(error).__name__}: {error}"
        else:
            refused = [
                (entry, result)
                for entry, result in zip(pending, response["Records"], strict=True)
                if result.get("ErrorCode")
            ]
            landed += len(pending) - len(refused)
            if not refused:
                return landed, None
            failure = f"{refused[-1][1]['ErrorCode']}: {refused[-1][1].get('ErrorMessage', '')}"
            pending = [entry for entry, _ in refused]
        if attempt < attempts:
            delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            log.info("%d records refused by %s (%s); again in %.2f s", len(pending), stream, failure, delay)
            time.sleep(delay / 2 + random.uniform(0, delay / 2))
    return landed, failure


class _ProgressLine:
    """Progress on stderr: rewritten in place on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, what: str, out: IO[str] | None = None):
        self.what = what
        self.out = out or sys.stderr
        self.in_place = self.out.isatty()
        self.interval = 0.2 if self.in_place else 5.0
        self.started = time.monotonic()
        self.shown = 0.0
        self.open_line = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.shown < self.interval:
            return
        self.shown = now
        rate = done / (now - self.started) if now > self.started else 0.0
        line = f"{done:,}/{total:,} {self.what} ({rate:,.0f}/s)"
        if self.in_place:
            self.out.write("\r" + line + ("\n" if done >= total else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()
        self.open_line = self.in_place and done < total

    def close(self) -> None:
        if self.open_line:  # so an error message starts on a line of its own
            self.out.write("\n")
            self.out.flush()


# ---------------------------------------------------------------- command line

STREAM_VARIABLE = "PIPELINE_STREAM"  # set by `pipeline local up`; pipelines/sensor_data.yml reads it too
DEFAULT_STREAM = "test-streaming-data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    books = kinds.add_parser("books", help="book_order CSV (the S3 to Hologres tutorial's data)")
    books.add_argument("--rows", type=int, default=1000, help="number of orders (default 1000)")
    books.add_argument(
        "--to",
        metavar="PATH|s3://BUCKET/PREFIX",
        help="a file, a directory, or an S3 prefix or key (default: stdout)",
    )
    books.add_argument("--objects", type=int, default=1, help="split the rows over this many files")
    books.add_argument("--sse-kms", metavar="KEY", help="upload with SSE-KMS under this key id, ARN or alias")
    books.add_argument("--seed", type=int, help="random seed; the same seed writes the same data")
    books.add_argument("--name", default="book_order", help="file name stem (default book_order)")
    books.add_argument("--gzip", action="store_true", help="gzip each file (.csv.gz)")
    books.set_defaults(_generate=_run_books)

    sensors = kinds.add_parser("sensors", help="sensor JSON records into a Kinesis stream")
    sensors.add_argument("--stream", help=f"Kinesis stream name (default: ${STREAM_VARIABLE}, else {DEFAULT_STREAM}, "
                                          "as pipelines/sensor_data.yml reads it)")
    sensors.add_argument("--records", type=int, default=100, help="number of records (default 100)")
    sensors.add_argument("--rate", type=float, help="records per second (default: as fast as possible)")
    sensors.add_argument("--seed", type=int, help="random seed; the same seed sends the same records")
    sensors.set_defaults(_generate=_run_sensors)


def run(args: argparse.Namespace) -> int:
    return int(args._generate(args))


def _run_books(args: argparse.Namespace) -> int:
    try:
        summary = write_books(
            args.rows,
            args.to,
            objects=args.objects,
            seed=args.seed,
            name=args.name,
            sse_kms_key_id=args.sse_kms,
            gzip=args.gzip,
        )
    except BrokenPipeError:
        # The reader of stdout (head, less) stopped early: end quietly, as Unix tools do on SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    print(summary.describe("book orders"), file=sys.stderr)
    return 0


def _run_sensors(args: argparse.Namespace) -> int:
    stream = args.stream or os.environ.get(STREAM_VARIABLE) or DEFAULT_STREAM
    started = time.perf_counter()
    progress = _ProgressLine("sensor records")
    try:
        landed = put_sensor_records(
            _aws_client("kinesis"),
            stream,
            args.records,
            rate=args.rate,
            seed=args.seed,
            on_progress=progress,
        )
    finally:
        progress.close()
    seconds = time.perf_counter() - started
    print(f"put {landed:,} sensor records into {stream} in {seconds:.2f} s", file=sys.stderr)
    return 0


def _aws_client(service: str) -> Any:
    from pipeline.sources import aws

    return aws.client(service)
