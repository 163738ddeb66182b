"""Kinesis Data Streams: shards, iterators, checkpoints and throttled reads.

Checkpoints
-----------
A checkpoint is the text stored per shard (in the same transaction as the rows it covers) that
says where the next read starts. It is one of:

``"<sequence number>"``
    Every record up to and including this Kinesis record has been consumed (for a KPL aggregate:
    all of its user records). The next read starts AFTER_SEQUENCE_NUMBER.
``"<sequence number>/<sub-sequence number>"``
    Only the user records ``0..sub`` of this KPL aggregate have been consumed. The next read starts
    AT_SEQUENCE_NUMBER and skips them.
``"at:<ISO 8601 UTC time>"``
    Nothing consumed yet from a reader that started at ``latest``: the start is pinned to the
    server's clock (rounded down to the second), so a later run or a renewed iterator reads what
    arrived since instead of jumping to a new ``latest``. It may take in records from up to a
    second before the start; it never skips one.
``"SHARD_END"``
    A closed shard was read to its end; its children may be read.

Sequence numbers are decimal integers of up to 128 bits: compare them with
:func:`checkpoint_key`, never as text.

The identity of a record (for deterministic UUIDs) is ``<stream name>/<shard id>/<sequence
number>`` for a plain record and ``<stream name>/<shard id>/<sequence number>/<sub-sequence
number>`` for a KPL user record: see :meth:`KinesisRecord.identity`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pipeline.errors import SourceError
from pipeline.sources import kpl

SHARD_END = "SHARD_END"
STARTING_POSITIONS = ("trim_horizon", "latest", "at_timestamp")

MAX_RECORDS_PER_CALL = 10_000  # GetRecords' own limit
GET_RECORDS_PER_SECOND = 5  # per shard, Kinesis' limit
IDLE_POLL_SECONDS = 1.0  # between polls of a shard that is at its tip
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 5.0
MAX_RETRIES = 10

# Errors that say "slow down" or "try again", as opposed to "you asked for the wrong thing".
RETRYABLE_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "KMSThrottlingException",
        "LimitExceededException",
        "ThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
        "InternalServerError",
    }
)

_PLAIN = 1 << 63  # sorts a whole record after each of its KPL sub-records
_AT = "at:"


# --------------------------------------------------------------------------- shards


@dataclass(frozen=True, slots=True)
class Shard:
    shard_id: str
    parent_shard_id: str | None = None
    adjacent_parent_shard_id: str | None = None
    starting_sequence_number: str | None = None
    ending_sequence_number: str | None = None

    @property
    def closed(self) -> bool:
        """A closed shard (split or merged) takes no new records."""
        return self.ending_sequence_number is not None

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(p for p in (self.parent_shard_id, self.adjacent_parent_shard_id) if p)

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Shard:
        numbers = item.get("SequenceNumberRange", {})
        return cls(
            shard_id=item["ShardId"],
            parent_shard_id=item.get("ParentShardId"),
            adjacent_parent_shard_id=item.get("AdjacentParentShardId"),
            starting_sequence_number=numbers.get("StartingSequenceNumber"),
            ending_sequence_number=numbers.get("EndingSequenceNumber"),
        )


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """What DescribeStreamSummary says about a stream, for asset metadata."""

    name: str
    arn: str
    status: str
    open_shard_count: int
    retention_period_hours: int
    encryption_type: str
    key_id: str | None
    stream_mode: str | None
    created: datetime | None

    def as_metadata(self) -> dict[str, str | int]:
        out: dict[str, str | int] = {
            "stream": self.name,
            "status": self.status,
            "open_shards": self.open_shard_count,
            "retention_hours": self.retention_period_hours,
            "encryption": self.encryption_type,
        }
        if self.key_id:
            out["kms_key_id"] = self.key_id
        if self.stream_mode:
            out["stream_mode"] = self.stream_mode
        return out


def stream_name(stream: str) -> str:
    """The name of a stream given by name or by ARN (``arn:aws:kinesis:…:stream/NAME``)."""
    return stream.rsplit("stream/", 1)[-1] if stream.startswith("arn:") else stream


def describe_stream(
    client: Any, stream: str, *, sleep: Callable[[float], None] = time.sleep
) -> StreamSummary:
    """Status, open shard count, retention and encryption of ``stream`` (one DescribeStreamSummary)."""
    response = _call(
        "DescribeStreamSummary",
        client.describe_stream_summary,
        _stream_args(stream),
        where=f"kinesis stream {stream}",
        sleep=sleep,
    )
    summary = response["StreamDescriptionSummary"]
    created = summary.get("StreamCreationTimestamp")
    return StreamSummary(
        name=summary["StreamName"],
        arn=summary["StreamARN"],
        status=summary["StreamStatus"],
        open_shard_count=int(summary.get("OpenShardCount", 0)),
        retention_period_hours=int(summary.get("RetentionPeriodHours", 24)),
        encryption_type=summary.get("EncryptionType") or "NONE",
        key_id=summary.get("KeyId"),
        stream_mode=(summary.get("StreamModeDetails") or {}).get("StreamMode"),
        created=created.astimezone(UTC) if isinstance(created, datetime) else None,
    )


def list_shards(
    client: Any, stream: str, *, page_size: int = 1000, sleep: Callable[[float], None] = time.sleep
) -> list[Shard]:
    """Every shard of ``stream`` that is still within retention, open and closed, ordered by id."""
    shards: list[Shard] = []
    # ListShards refuses the stream name next to a NextToken: the token alone names the stream.
    arguments: dict[str, Any] = {**_stream_args(stream), "MaxResults": page_size}
    while True:
        response = _call(
            "ListShards", client.list_shards, arguments, where=f"kinesis stream {stream}", sleep=sleep
        )
        shards.extend(Shard.from_api(item) for item in response.get("Shards", []))
        token = response.get("NextToken")
        if not token:
            return sorted(shards, key=lambda s: s.shard_id)
        arguments = {"NextToken": token, "MaxResults": page_size}


def checkpoint_key(checkpoint: str) -> tuple[int, int]:
    """Orders sequence-number checkpoints: ``"5/0" < "5/1" < "5" < "6/0"``."""
    sequence, _, sub = checkpoint.partition("/")
    return int(sequence), int(sub) if sub else _PLAIN


def is_finished(shard: Shard, checkpoint: str | None) -> bool:
    """True when a closed ``shard`` has been read to its end."""
    if checkpoint == SHARD_END:
        return True
    if not (shard.closed and checkpoint) or checkpoint.startswith(_AT):
        return False
    return checkpoint_key(checkpoint) >= (int(shard.ending_sequence_number or 0), _PLAIN)


def read_order(shards: Sequence[Shard], checkpoints: Mapping[str, str]) -> list[Shard]:
    """The shards that may be read now, by shard id.

    A shard is left out when it is finished, or when one of its parents is still listed and not
    read to its end: records of one partition key move to the child after a split or merge, so
    reading the child first would load them out of order. A parent absent from the listing has
    aged out of retention and blocks nothing. Once a parent's reader reaches SHARD_END, call
    again with the new checkpoint to get its children.
    """
    by_id = {shard.shard_id: shard for shard in shards}

    def done(shard_id: str) -> bool:
        parent = by_id.get(shard_id)
        return parent is None or is_finished(parent, checkpoints.get(shard_id))

    return [
        shard
        for shard in sorted(shards, key=lambda s: s.shard_id)
        if not is_finished(shard, checkpoints.get(shard.shard_id)) and all(done(p) for p in shard.parents)
    ]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """One user record: a plain Kinesis record, or one record out of a KPL aggregate."""

    shard_id: str
    sequence_number: str
    partition_key: str
    approximate_arrival_timestamp: datetime
    data: bytes
    sub_sequence_number: int | None = None
    # Where the next read starts once this record is consumed (see the module docstring).
    checkpoint: str = ""

    @property
    def position(self) -> str:
        """The sequence number, with ``/<sub-sequence number>`` for a KPL user record."""
        if self.sub_sequence_number is None:
            return self.sequence_number
        return f"{self.sequence_number}/{self.sub_sequence_number}"

    def identity(self, stream: str) -> str:
        """Stable across replays: the name a deterministic UUID is derived from."""
        return identity_prefix(stream, self.shard_id) + self.position

    def metadata(self) -> dict[str, Any]:
        """The ``$`` fields a parser adds to each row of this record."""
        return {
            "$record_timestamp": self.approximate_arrival_timestamp,
            "$shard_id": self.shard_id,
            "$sequence_number": self.position,
            "$partition_key": self.partition_key,
        }


def identity_prefix(stream: str, shard_id: str) -> str:
    """What the identity of every record of a shard starts with (then its position), for hot loops."""
    return f"{stream_name(stream)}/{shard_id}/"


@dataclass(frozen=True, slots=True)
class Page:
    """The user records of one GetRecords response, and its MillisBehindLatest (0: it reached the tip)."""

    records: list[KinesisRecord]
    millis_behind: int | None
    fetched: datetime | None = None  # about when GetRecords answered (our clock)
    full: bool = False  # GetRecords returned as many records as asked for

    @property
    def at_tip(self) -> bool:
        """Everything the shard held when the page was read is in it (or was before it).

        Kinesis says so with MillisBehindLatest 0; a full page is evidence of more to read whatever that
        says (kinesalite reports 0 on every page, and Kinesis rounds to whole milliseconds).
        """
        return self.millis_behind == 0 and not self.full


class CallRateLimiter:
    """Spaces calls at least ``1 / calls_per_second`` apart (Kinesis allows 5 GetRecords a second)."""

    def __init__(
        self,
        calls_per_second: float = GET_RECORDS_PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = 1.0 / calls_per_second
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    def wait(self) -> None:
        """Return when the next call may be made."""
        now = self._clock()
        if self._next is not None and now < self._next:
            self._sleep(self._next - now)
            now = self._clock()
        self._next = now + self.interval


class ShardReader(Iterator[KinesisRecord]):
    """Iterates the records of one shard from a checkpoint; see :func:`read_shard`.

    ``checkpoint`` is the position after every record yielded so far (``SHARD_END`` once a
    closed shard is exhausted): store it with the rows, even when no row came out.
    ``millis_behind`` is the MillisBehindLatest of the last GetRecords call.
    """

    def __init__(
        self,
        client: Any,
        stream: str,
        shard: Shard,
        *,
        after_sequence: str | None,
        starting_position: str = "trim_horizon",
        timestamp: datetime | None = None,
        max_records: int,
        max_bytes: int,
        stop_at_tip: bool,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_retries: int = MAX_RETRIES,
        records_per_call: int = MAX_RECORDS_PER_CALL,
    ):
        if starting_position not in STARTING_POSITIONS:
            raise ValueError(
                f"starting_position must be one of {STARTING_POSITIONS}, not {starting_position!r}"
            )
        if starting_position == "at_timestamp" and timestamp is None:
            raise ValueError("starting_position at_timestamp needs a timestamp")
        self.client = client
        self.stream = stream
        self.shard = shard
        self.starting_position = starting_position
        self.timestamp = timestamp
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.stop_at_tip = stop_at_tip
        self.max_retries = max_retries
        self.records_per_call = min(records_per_call, MAX_RECORDS_PER_CALL)
        self.checkpoint: str | None = after_sequence
        self.millis_behind: int | None = None
        self.page_full = False  # the last GetRecords returned as many records as it asked for
        self.records_read = 0
        self.bytes_read = 0
        self.calls = 0
        self._sleep = sleep
        self._limiter = CallRateLimiter(clock=clock, sleep=sleep)
        self._where = f"{stream_name(stream)}/{shard.shard_id}"
        self._records = self._read()

    @property
    def shard_end(self) -> bool:
        return self.checkpoint == SHARD_END

    def __next__(self) -> KinesisRecord:
        return next(self._records)

    def pages(self) -> Iterator[Page]:
        """The same records a GetRecords page at a time: ``checkpoint`` covers a page once it is yielded.

        For a consumer that hands records to another thread: one hand-off per page instead of one per
        record. Use either this or the reader's own iteration, not both.
        """
        for records, after in self._pages():
            self.checkpoint = after
            yield Page(records, self.millis_behind, datetime.now(UTC), self.page_full)

    def _read(self) -> Iterator[KinesisRecord]:
        for page, after in self._pages():
            for record in page:
                self.checkpoint = record.checkpoint
                yield record
            self.checkpoint = after

    def _pages(self) -> Iterator[tuple[list[KinesisRecord], str | None]]:
        """Each page's user records, and the checkpoint once all of them are consumed.

        Positions that are not a record's own (a pinned ``latest`` start, SHARD_END) are set on
        ``self.checkpoint`` here, between pages.
        """
        if self.shard_end or self.max_records <= 0 or self.max_bytes <= 0:
            return
        iterator, skip = self._new_iterator()
        expired = 0
        while True:
            limit = min(self.records_per_call, self.max_records - self.records_read)
            try:
                response = self._get_records(iterator, limit)
            except _ExpiredIterator:
                expired += 1
                if expired > self.max_retries:
                    raise SourceError(f"{self._where}: every new shard iterator expired before use") from None
                iterator, skip = self._new_iterator()
                continue
            expired = 0
            self.millis_behind = response.get("MillisBehindLatest")
            records = response.get("Records", [])
            self.page_full = len(records) >= limit
            page: list[KinesisRecord] = []
            after = self.checkpoint
            full = False
            for raw in records:
                for record in self._user_records(raw, skip):
                    page.append(record)
                    after = record.checkpoint
                    self.records_read += 1
                    self.bytes_read += len(record.data)
                    if self.records_read >= self.max_records or self.bytes_read >= self.max_bytes:
                        full = True
                        break
                if full:
                    break
                # An aggregate holding no user records still moves the checkpoint past it.
                after = raw["SequenceNumber"]
                skip = None
            if page or after != self.checkpoint:
                yield page, after
            if full:
                return
            next_iterator = response.get("NextShardIterator")
            if next_iterator is None or self._past_end(records):
                self.checkpoint = SHARD_END
                return
            iterator = next_iterator
            if not records and self.millis_behind == 0:
                if self.stop_at_tip:
                    return
                self._sleep(IDLE_POLL_SECONDS)

    def _past_end(self, records: list[dict]) -> bool:
        """A closed shard is exhausted at its ending sequence number, or when empty at the tip."""
        if not self.shard.closed:
            return False
        if not records:
            # Some servers (moto) never return a null NextShardIterator for a closed shard.
            return self.millis_behind == 0
        return int(records[-1]["SequenceNumber"]) >= int(self.shard.ending_sequence_number or 0)

    def _user_records(self, raw: Mapping[str, Any], skip: tuple[int, int] | None) -> Iterator[KinesisRecord]:
        sequence = raw["SequenceNumber"]
        arrival = raw["ApproximateArrivalTimestamp"]
        arrival = arrival.astimezone(UTC) if arrival.tzinfo else arrival.replace(tzinfo=UTC)
        data = raw["Data"]
        users = kpl.deaggregate(data)
        if users is None:
            yield KinesisRecord(
                self.shard.shard_id, sequence, raw["PartitionKey"], arrival, data, None, sequence
            )
            return
        last = len(users) - 1
        skip_below = skip[1] + 1 if skip is not None and skip[0] == int(sequence) else 0
        for sub in range(skip_below, len(users)):
            user = users[sub]
            checkpoint = sequence if sub == last else f"{sequence}/{sub}"
            yield KinesisRecord(
                self.shard.shard_id, sequence, user.partition_key, arrival, user.data, sub, checkpoint
            )

    def _new_iterator(self) -> tuple[str, tuple[int, int] | None]:
        iterator, skip, pinned = _shard_iterator(
            self.client,
            self.stream,
            self.shard,
            self.checkpoint,
            self.starting_position,
            self.timestamp,
            sleep=self._sleep,
            max_retries=self.max_retries,
        )
        self.checkpoint = pinned
        return iterator, skip

    def _get_records(self, iterator: str, limit: int) -> dict:
        def get_records(**arguments: Any) -> dict:
            self._limiter.wait()
            self.calls += 1
            return self.client.get_records(**arguments)

        return _call(
            "GetRecords",
            get_records,
            {"ShardIterator": iterator, "Limit": limit},
            where=self._where,
            sleep=self._sleep,
            max_retries=self.max_retries,
            expired=True,
        )


def read_shard(
    client: Any,
    stream: str,
    shard: Shard,
    *,
    after_sequence: str | None,
    starting_position: str = "trim_horizon",
    timestamp: datetime | None = None,
    max_records: int,
    max_bytes: int,
    stop_at_tip: bool,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    max_retries: int = MAX_RETRIES,
    records_per_call: int = MAX_RECORDS_PER_CALL,
) -> ShardReader:
    """Read ``shard`` from the checkpoint ``after_sequence`` (else ``starting_position``), in order.

    Each record is yielded exactly once across runs that store ``reader.checkpoint`` with the
    rows. At most 5 GetRecords calls a second (``clock`` and ``sleep`` are injectable); throttling
    and server errors are retried with capped exponential backoff and full jitter; an expired
    iterator is renewed from the checkpoint. Stops at a closed shard's end, after ``max_records``
    user records or ``max_bytes`` of data, or, with ``stop_at_tip``, at the first empty response
    that is 0 ms behind the tip. ``records_per_call`` is GetRecords' Limit (at most 10,000).
    """
    return ShardReader(
        client,
        stream,
        shard,
        after_sequence=after_sequence,
        starting_position=starting_position,
        timestamp=timestamp,
        max_records=max_records,
        max_bytes=max_bytes,
        stop_at_tip=stop_at_tip,
        sleep=sleep,
        clock=clock,
        max_retries=max_retries,
        records_per_call=records_per_call,
    )


# --------------------------------------------------------------------------- lag, for sensors


@dataclass(frozen=True, slots=True)
class ShardLag:
    """Whether a shard has records past its checkpoint; ``millis_behind`` when a call was made."""

    has_records: bool
    millis_behind: int | None = None


def stream_tip_lag(
    client: Any,
    stream: str,
    checkpoints: Mapping[str, str],
    *,
    starting_position: str = "trim_horizon",
    timestamp: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, ShardLag]:
    """For each unfinished shard, whether records wait past its checkpoint.

    Costs one ListShards and at most one GetShardIterator and one GetRecords (Limit 1) per shard,
    so a sensor can call it every tick. A shard with no checkpoint that starts at ``latest`` has
    nothing waiting by definition.
    """
    lags: dict[str, ShardLag] = {}
    for shard in list_shards(client, stream, sleep=sleep):
        checkpoint = checkpoints.get(shard.shard_id)
        if is_finished(shard, checkpoint):
            continue
        if checkpoint and "/" in checkpoint and not checkpoint.startswith(_AT):
            lags[shard.shard_id] = ShardLag(True)  # the rest of a KPL aggregate is still to be read
            continue
        if not checkpoint and starting_position == "latest":
            lags[shard.shard_id] = ShardLag(False)
            continue
        iterator, _, _ = _shard_iterator(
            client, stream, shard, checkpoint, starting_position, timestamp, sleep=sleep, max_retries=3
        )
        response = _call(
            "GetRecords",
            client.get_records,
            {"ShardIterator": iterator, "Limit": 1},
            where=f"{stream_name(stream)}/{shard.shard_id}",
            sleep=sleep,
            max_retries=3,
        )
        millis = response.get("MillisBehindLatest")
        lags[shard.shard_id] = ShardLag(bool(response.get("Records")) or bool(millis), millis)
    return lags


# --------------------------------------------------------------------------- retention


PROBE_PAGES = 5  # GetRecords calls a retention probe makes past empty pages before it gives up


@dataclass(frozen=True)
class Retained:
    """Whether a checkpoint's record is still in its shard; if not, the oldest record that is (if any)."""

    checkpoint_retained: bool
    oldest_sequence: str | None = None
    oldest_arrival: datetime | None = None


def probe_retention(client: Any, stream: str, shard: Shard, sequence: str, *,
                    sleep: Callable[[float], None] = time.sleep) -> Retained:
    """Is the record at ``sequence`` still in ``shard``? Kinesis trims by age, in order: if it is, every record
    after it is too. Costs one GetShardIterator and a GetRecords (Limit 1) or a few past empty pages."""
    where = f"{stream_name(stream)}/{shard.shard_id}"
    arguments: dict[str, Any] = {**_stream_args(stream), "ShardId": shard.shard_id}
    try:
        response = _call("GetShardIterator", client.get_shard_iterator,
                         {**arguments, "ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": sequence},
                         where=where, sleep=sleep, max_retries=3)
    except SourceError as error:
        if "InvalidArgumentException" not in str(error):
            raise
        response = _call("GetShardIterator", client.get_shard_iterator,
                         {**arguments, "ShardIteratorType": "TRIM_HORIZON"}, where=where, sleep=sleep, max_retries=3)
    iterator = response.get("ShardIterator")
    for _ in range(PROBE_PAGES):
        if not iterator:
            break
        page = _call("GetRecords", client.get_records, {"ShardIterator": iterator, "Limit": 1}, where=where,
                     sleep=sleep, max_retries=3)
        records = page.get("Records") or []
        if records:
            first = records[0]
            if first["SequenceNumber"] == sequence:
                return Retained(True)
            arrival = first.get("ApproximateArrivalTimestamp")
            return Retained(False, first["SequenceNumber"],
                            arrival.astimezone(UTC) if isinstance(arrival, datetime) else None)
        if not page.get("MillisBehindLatest"):
            break
        iterator = page.get("NextShardIterator")
    return Retained(False)


# --------------------------------------------------------------------------- calls


class _ExpiredIterator(Exception):
    """The shard iterator is older than five minutes (or was otherwise invalidated)."""


def _stream_args(stream: str) -> dict[str, str]:
    return {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}


def _server_time(response: Mapping[str, Any]) -> datetime:
    """The server's clock from the HTTP Date header (whole seconds, so never later than the call)."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date).astimezone(UTC)
    except (TypeError, ValueError):
        return datetime.now(UTC).replace(microsecond=0)


def backoff_seconds(attempt: int) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)], so retrying readers spread out."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def _shard_iterator(
    client: Any,
    stream: str,
    shard: Shard,
    checkpoint: str | None,
    starting_position: str,
    timestamp: datetime | None,
    *,
    sleep: Callable[[float], None],
    max_retries: int,
) -> tuple[str, tuple[int, int] | None, str | None]:
    """A shard iterator at ``checkpoint``, else at the starting position.

    Also returns the KPL user records to skip (sequence, last sub-sequence consumed) and the
    checkpoint to keep: a ``latest`` start is pinned to the server's time, so a renewed iterator
    or the next run does not jump over what arrived in between.
    """
    arguments: dict[str, Any] = {**_stream_args(stream), "ShardId": shard.shard_id}
    skip = None
    if checkpoint and checkpoint.startswith(_AT):
        arguments.update(
            ShardIteratorType="AT_TIMESTAMP", Timestamp=datetime.fromisoformat(checkpoint[len(_AT) :])
        )
    elif checkpoint:
        sequence, sub = checkpoint_key(checkpoint)
        if sub == _PLAIN:
            arguments.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(sequence))
        else:
            arguments.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=str(sequence))
            skip = (sequence, sub)
    elif starting_position == "trim_horizon":
        arguments.update(ShardIteratorType="TRIM_HORIZON")
    elif starting_position == "at_timestamp":
        arguments.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=timestamp)
    else:
        arguments.update(ShardIteratorType="LATEST")
    where = f"{stream_name(stream)}/{shard.shard_id}"
    response = _call(
        "GetShardIterator",
        client.get_shard_iterator,
        arguments,
        where=where,
        sleep=sleep,
        max_retries=max_retries,
    )
    if arguments["ShardIteratorType"] == "LATEST":
        checkpoint = _AT + _server_time(response).isoformat()
    return response["ShardIterator"], skip, checkpoint


def _call(
    name: str,
    operation: Callable[..., dict],
    arguments: Mapping[str, Any],
    *,
    where: str,
    sleep: Callable[[float], None],
    max_retries: int = MAX_RETRIES,
    expired: bool = False,
) -> dict:
    """Call a Kinesis operation, retrying throttling and server errors; any other failure is a SourceError."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

    attempt = 0
    while True:
        try:
            return operation(**arguments)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if expired and code == "ExpiredIteratorException":
                raise _ExpiredIterator() from None
            if (code in RETRYABLE_ERRORS or status >= 500) and attempt < max_retries:
                sleep(backoff_seconds(attempt))
                attempt += 1
                continue
            message = error.response.get("Error", {}).get("Message", "") or str(error)
            raise SourceError(f"{where}: {name} failed: {code}: {message}") from None
        except (ConnectionError, HTTPClientError) as error:
            if attempt < max_retries:
                sleep(backoff_seconds(attempt))
                attempt += 1
                continue
            raise SourceError(f"{where}: {name} failed: {error}") from None
        except BotoCoreError as error:
            raise SourceError(f"{where}: {name} failed: {error}") from None
