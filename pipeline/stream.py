"""Kinesis records into a warehouse table in micro-batches, exactly once per record.

A batch reads every readable shard from its checkpoint (parents before children), parses and
filters the records, and commits the rows, the rejected records and the new checkpoints in one
transaction. A crash before the commit leaves the checkpoints where they were, so the same
records are read again and, with deterministic UUIDs, become the same rows.

Where the target has COPY FROM STDIN (PostgreSQL, Hologres) rows go in that way; on Hologres the batch
is a multi-DML transaction. Redshift has no COPY FROM STDIN: the batch is staged to S3 as gzip CSV
(SSE-KMS when configured) and loaded with ``COPY ... FROM 's3://...' IAM_ROLE ...`` in the transaction
that moves the checkpoints; the staged file is deleted once the transaction has ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from pipeline import registry
from pipeline.config import KinesisInputConfig, PipelineConfig
from pipeline.errors import PipelineError, RecordError, SourceError, WarehouseError
from pipeline.progress import Display, Progress
from pipeline.records import RowPath
from pipeline.warehouse import staging, state
from pipeline.warehouse.copy import copy_lines, copy_text_statement, text_values
from pipeline.warehouse.fit import Fitter
from pipeline.warehouse.target import Target

if TYPE_CHECKING:
    from pipeline.sources.kinesis import Page, Shard, ShardReader

log = logging.getLogger(__name__)

FLUSH_BYTES = 4 << 20  # rows go to COPY in pieces of about this size within the batch's transaction
READ_AHEAD_PAGES = 2  # per shard: GetRecords pages read ahead while records are parsed
RUN_BATCH_SECONDS = 30.0  # a run's batch ends by then even if records keep arriving, so the run ends
SEQUENCE_COLUMN = "pl_seq"  # a merge stage's row order: of two records with one key, the later wins
# Without COPY FROM STDIN (Redshift), a batch this small goes in by multi-row INSERT instead of a staged
# object and a COPY FROM S3: in continuous mode most batches are this small, and the S3 round trips are
# most of their commit. A refused row sends the batch the staged way, which names the row.
INSERT_MAX_ROWS = 2000
INSERT_MAX_BYTES = 1 << 20
MAX_REFUSED_RECORDS = 100  # records the warehouse refuses in one batch before the batch fails
TIP_MARGIN = timedelta(seconds=60)  # a page at the tip vouches for records that arrived this long before it
DEFAULT_RETENTION = timedelta(hours=24)  # Kinesis' default, until DescribeStreamSummary has said otherwise


@dataclass
class BatchResult:
    """One committed micro-batch."""

    records: int = 0
    rows: int = 0
    rejected: int = 0
    bytes: int = 0
    seconds: float = 0.0
    shards: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    at_tip: bool = True
    oldest_arrival: datetime | None = None
    verified: dict[str, datetime] = field(default_factory=dict)  # shard -> every record before this is read


@dataclass(frozen=True)
class DataLoss:
    """Records of a shard that expired (Kinesis' retention) before this pipeline read them."""

    shard_id: str
    after: str  # the checkpoint's sequence number: records after it are gone...
    before: str | None  # ...up to this one, the oldest still in the shard (None: none is, or the shard is gone)
    since: datetime | None  # they arrived after this (None: unknown, the checkpoint predates the record)
    until: datetime | None  # and before this
    shard_gone: bool = False

    def describe(self, stream: str) -> str:
        where = f"{stream}/{self.shard_id}"
        upper = f"up to sequence {self.before} (excluded), the oldest still in the shard" if self.before else (
            "to the shard's end (the shard itself has expired)" if self.shard_gone else "to the shard's tip")
        since = self.since.isoformat(timespec="seconds") if self.since else "an unknown time"
        until = self.until.isoformat(timespec="seconds") if self.until else "now"
        return (f"{where}: records after sequence {self.after} {upper} expired before they were read; "
                f"they arrived between {since} and {until}")

    def as_metadata(self) -> dict[str, str]:
        return {"shard": self.shard_id, "after_sequence": self.after, "before_sequence": self.before or "",
                "arrived_after": self.since.isoformat() if self.since else "",
                "arrived_before": self.until.isoformat() if self.until else ""}


class DataLossError(SourceError):
    """Records expired before they were read, and in.on_data_loss is fail; ``losses`` says which."""

    def __init__(self, losses: list[DataLoss], message: str):
        super().__init__(message)
        self.losses = losses


@dataclass
class StreamSummary:
    pipeline: str
    batches: list[BatchResult] = field(default_factory=list)
    seconds: float = 0.0
    data_loss: list[DataLoss] = field(default_factory=list)  # reported and accepted (in.on_data_loss: warn)

    @property
    def records(self) -> int:
        return sum(b.records for b in self.batches)

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.batches)

    @property
    def rejected(self) -> int:
        return sum(b.rejected for b in self.batches)

    @property
    def bytes(self) -> int:
        return sum(b.bytes for b in self.batches)

    def describe(self) -> str:
        if not self.records:
            return f"{self.pipeline}: no new records"
        rate = self.records / self.seconds if self.seconds else 0
        committed = [b for b in self.batches if b.records]
        return (f"{self.pipeline}: read {self.records:,} records in {len(committed)} batch"
                f"{'es' if len(committed) != 1 else ''}, {self.rows:,} rows loaded, {self.rejected:,} rejected, "
                f"{self.bytes / 1e6:.1f} MB in {self.seconds:.2f} s ({rate:,.0f} records/s)")


class StreamLoad:
    """One Kinesis pipeline: ``run`` reads to the tip and exits; ``follow`` keeps going."""

    def __init__(self, config: PipelineConfig, *, kinesis_client=None, s3_client=None,
                 emit: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep):
        if not registry.is_stream(config.input):
            raise PipelineError(f"{config.name}: in.type is {config.input.type}, not kinesis")
        from pipeline.filters import build_filters, output_columns
        from pipeline.formats.json import JsonOptions

        self.config = config
        self.input: KinesisInputConfig = config.input
        self.options = JsonOptions(columns=self.input.parser.columns,
                                   stop_on_invalid_record=self.input.parser.stop_on_invalid_record,
                                   max_record_bytes=self.input.parser.max_record_bytes)
        self.filters = build_filters(list(config.filters))
        self.record_columns = list(self.options.record_columns)
        self.columns = output_columns(self.record_columns, self.filters)
        # Metadata that only drop_fields mentions is never computed (Glue's $record_timestamp, per record).
        needed = {c.name for c in self.columns}
        needed |= {old for f in self.filters for old in getattr(f, "renames", {})}
        kept = tuple(name for name in self.options.default_metadata if name in needed)
        if kept != self.options.default_metadata:
            self.options = dataclasses.replace(self.options, default_metadata=kept)
        # A parsed row to its output values and COPY line (the same path as a batch load's and the preview's);
        # the rows hold no metadata left out above (only drop_fields named it). _prepare adds the table's fit.
        self.path = RowPath(self.options.record_columns, self.filters, noun="record")
        self.target = Target(config.output, self.columns, config.name)
        self.emit = emit or log.info
        self.sleep = sleep
        self._kinesis = kinesis_client
        self._s3 = s3_client
        self._prepared = False
        self._fitter: Fitter | None = None  # what the table's column types refuse, read by _prepare
        self._watch: dict[str, state.Watch] = {}  # per shard: the stream incarnation, and what is known read
        self._stream_created: datetime | None = None
        self._generation = 0  # how many incarnations of the stream came before this one, for this pipeline
        self._retention = DEFAULT_RETENTION
        self._batches = 0
        self._keys: list[str] | None = None
        self._reads: dict[str, _ShardRead] = {}  # readers a batch left unfinished, by shard id
        self._after_commit: list[_ShardRead] = []  # readers caught up at the tip, closed once the batch commits
        self.timestamp = _parse_time(self.input.timestamp) if self.input.timestamp else None

    # ----------------------------------------------------------------- clients

    @property
    def kinesis(self):
        if self._kinesis is None:
            from pipeline.sources.aws import client

            self._kinesis = client("kinesis", **self.input.aws.client_kwargs())
        return self._kinesis

    @property
    def s3(self):
        if self._s3 is None:
            from pipeline.sources.aws import client

            self._s3 = client("s3", **self.input.aws.client_kwargs())
        return self._s3

    # ----------------------------------------------------------------- public

    def checkpoints(self, conn: psycopg.Connection | None = None) -> dict[str, str]:
        if conn is None:
            with self.target.connect(autocommit=True) as own:
                self._prepare(own)
                return self.checkpoints(own)
        out = self.config.output
        self._watch = state.read_watch(conn, out.state, self.config.name, self.input.stream)
        return state.read_checkpoints(conn, out.state, self.config.name, self.input.stream)

    def pending(self, checkpoints: dict[str, str] | None = None) -> dict:
        """Shard id -> ShardLag: a cheap look for records past the checkpoints (for sensors).

        ``checkpoints`` (from :meth:`checkpoints`) lets a sensor key its run by the same state it measured.
        """
        from pipeline.sources.kinesis import stream_tip_lag

        checkpoints = self.checkpoints() if checkpoints is None else checkpoints
        looked = datetime.now(UTC)
        lags = stream_tip_lag(self.kinesis, self.input.stream, checkpoints,
                              starting_position=self.input.starting_position, timestamp=self.timestamp)
        # Nothing past a checkpoint: every record that arrived before now is read. Said in the warehouse now
        # and then, so a stream idle for longer than its retention is not taken for one that lost records.
        idle = {shard: looked - TIP_MARGIN for shard, lag in lags.items()
                if not lag.has_records and shard in checkpoints}
        try:
            self._vouch(idle)
        except (PipelineError, psycopg.Error) as error:  # the look stands; a later one writes it
            log.warning("%s: could not record that shards %s are read to their tip: %s", self.config.name,
                        ", ".join(sorted(idle)), str(error).strip())
        return lags

    def _say_warnings(self) -> None:
        for warning in self.config.warnings:
            self.emit(f"warning: {warning}")

    def run(self, *, max_batches: int | None = None, linger: float = 0.0,
            display: Display | None = None) -> StreamSummary:
        """Read from the checkpoints to the tip of every shard, committing each bounded batch.

        ``max_batches`` bounds the batches that end behind the tip. With ``linger``, a run at the tip goes on
        committing a batch a window while records keep arriving, until a window brings none or ``linger``
        seconds have passed since the run started: a run launched per batch (a Dagster run, a process of its
        own) then serves the traffic that arrives while it runs instead of leaving it for the next launch.
        """
        self._say_warnings()
        started = time.monotonic()
        summary = StreamSummary(self.config.name)
        progress = Progress(self.config.name, display)  # a stream has no total: rows, MB and rate only
        with self.target.connect() as conn, contextlib.closing(progress), contextlib.closing(self):
            self._prepare(conn)
            summary.data_loss = self._check_source(conn)
            behind = 0  # batches that ended behind the tip
            while True:
                now = time.monotonic()
                # Behind the tip a batch fills its budget; caught up, it commits after a window, so a run
                # under steady traffic commits and ends instead of chasing each new record.
                result = self.batch(conn, deadline=now + RUN_BATCH_SECONDS,
                                    caught_up_deadline=now + self.config.exec.window_seconds)
                summary.batches.append(result)
                progress.add(rows=result.rows, nbytes=result.bytes)
                if result.at_tip:
                    if not result.records or time.monotonic() - started >= linger:
                        break
                else:
                    behind += 1
                    if max_batches is not None and behind >= max_batches:
                        break
        summary.seconds = time.monotonic() - started
        return summary

    def follow(self, stop: threading.Event | None = None, *,
               on_batch: Callable[[BatchResult], None] | None = None) -> StreamSummary:
        """Commit a batch every ``exec.window_seconds`` until ``stop`` is set or ``exec.max_runtime``."""
        self._say_warnings()
        stop = stop or threading.Event()
        window = self.config.exec.window_seconds
        deadline = None if self.config.exec.max_runtime is None else time.monotonic() + self.config.exec.max_runtime
        started = time.monotonic()
        summary = StreamSummary(self.config.name)
        with self.target.connect() as conn, contextlib.closing(self):
            self._prepare(conn)
            summary.data_loss = self._check_source(conn)
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                tick = time.monotonic()
                # Caught up, a batch commits as soon as every shard has been parsed up to its tip: a record
                # waits for the next window to start, and then only for its read and the commit.
                result = self.batch(conn, deadline=tick + window, caught_up_deadline=tick)
                if result.records:
                    summary.batches.append(result)
                    self.emit(f"committed {result.records:,} records ({result.rows:,} rows, "
                              f"{result.rejected:,} rejected) in {result.seconds:.2f} s")
                if on_batch is not None:
                    on_batch(result)
                if result.at_tip:
                    stop.wait(max(0.0, window - (time.monotonic() - tick)))
        summary.seconds = time.monotonic() - started
        return summary

    # ----------------------------------------------------------------- one batch

    def _prepare(self, conn: psycopg.Connection) -> None:
        if not self._prepared:
            autocommit = conn.autocommit
            conn.autocommit = True
            try:
                dialect = self.target.prepare(conn)
            finally:
                conn.autocommit = autocommit
            strategy = dialect.strategy(self.config.output.mode, stream=True)
            if not strategy.exact:
                raise WarehouseError(f"{self.config.name}: {strategy.fix}")
            if not dialect.capabilities.copy_from_stdin and (
                    self.config.output.s3_staging is None or not self.config.output.iam_role):
                raise WarehouseError(f"{self.config.name}: {dialect.label} loads from S3 only: set "
                                     "out.s3_staging.bucket and out.iam_role")
            from pipeline.warehouse.fit import column_types

            out = self.config.output
            with conn.cursor() as cur:
                self._fitter = self.target.fitter(column_types(cur, out.schema, out.table))
            conn.commit()
            self.path = RowPath(self.options.record_columns, self.filters, fitter=self._fitter, noun="record")
            self._prepared = True

    def _check_source(self, conn: psycopg.Connection) -> list[DataLoss]:
        """Before reading: is this the stream the checkpoints are of, and did records expire unread?

        A stream deleted and created again under its name numbers its records anew, so the old checkpoints
        would skip them (and their uuids repeat): that stops the run, or with in.on_stream_recreated: restart
        forgets the checkpoints and reads the new stream from its starting position. Records that expired
        before they were read stop the run (in.on_data_loss: fail) or are reported and accepted (warn).
        """
        from pipeline.sources.kinesis import describe_stream

        stream = self.input.stream
        summary = describe_stream(self.kinesis, stream, sleep=self.sleep)
        self._retention = timedelta(hours=summary.retention_period_hours)
        self._stream_created = summary.created
        checkpoints = self.checkpoints(conn)
        conn.commit()
        watch = self._watch
        self._generation = max((w.generation for w in watch.values()), default=0)
        known = sorted({w.stream_created for w in watch.values() if w.stream_created is not None})
        if summary.created is not None and known and not any(
                abs((summary.created - created).total_seconds()) < 0.001 for created in known):
            self._restart(conn, known[-1], bool(checkpoints))
            checkpoints = {}
        losses = self._losses(checkpoints)
        if not losses:
            return []
        report = "; ".join(loss.describe(stream) for loss in losses)
        if self.input.on_data_loss == "fail":
            raise DataLossError(losses, (
                f"{self.config.name}: records expired from Kinesis before they were read (retention "
                f"{summary.retention_period_hours} h): {report}. Nothing was loaded. To accept the loss and go on "
                "from the oldest records still there, set in.on_data_loss: warn; to keep records longer, raise "
                "the stream's retention (IncreaseStreamRetentionPeriod)"))
        log.warning("%s: %s (in.on_data_loss: warn, going on)", self.config.name, report)
        self.emit(f"{self.config.name}: DATA LOSS accepted (in.on_data_loss: warn): {report}")
        # Reported once: the lost span counts as accounted for.
        self._vouch({loss.shard_id: datetime.now(UTC) - self._retention for loss in losses}, force=True)
        return losses

    def _restart(self, conn: psycopg.Connection, old: datetime, had_checkpoints: bool) -> None:
        from pipeline.sources.kinesis import list_shards

        out, stream, dialect = self.config.output, self.input.stream, self.target.dialect
        created = self._stream_created.isoformat() if self._stream_created else "?"
        if self.input.on_stream_recreated == "fail":
            raise SourceError(
                f"{self.config.name}: Kinesis stream {stream} was created again at {created}; the checkpoints are "
                f"of the stream created at {old.isoformat()}, whose records are gone. The new stream numbers its "
                "records anew, so reading on from the old checkpoints would skip records and repeat uuids. To "
                f"read the new stream from its {self.input.starting_position} (the rows already loaded stay), "
                "set in.on_stream_recreated: restart and run again")
        self._generation += 1
        shards = list_shards(self.kinesis, stream, sleep=self.sleep)
        rows = {shard.shard_id: state.Watch(self._stream_created, None, self._generation) for shard in shards}
        with dialect.atomic(conn) as cur:
            dialect.lock_first(cur, state.checkpoint_ident(out.state))
            state.forget_stream(cur, out.state, self.config.name, stream)
            state.write_watch(cur, dialect, out.state, self.config.name, stream, rows)
        self._watch = rows
        self.close()  # readers left at the old stream's positions
        self.emit(f"{self.config.name}: Kinesis stream {stream} was created again at {created}"
                  f"{'; its old checkpoints are forgotten' if had_checkpoints else ''}: reading it from its "
                  f"{self.input.starting_position} (in.on_stream_recreated: restart; incarnation {self._generation})")

    def _losses(self, checkpoints: dict[str, str]) -> list[DataLoss]:
        from pipeline.sources.kinesis import SHARD_END, checkpoint_key, list_shards, probe_retention

        horizon = datetime.now(UTC) - self._retention
        suspect = {}
        for shard_id, checkpoint in checkpoints.items():
            if checkpoint == SHARD_END or checkpoint.startswith("at:"):
                continue  # a shard read to its end, or a `latest` start not yet past any record
            watch = self._watch.get(shard_id)
            verified = watch.verified_through if watch else None
            if verified is not None and verified >= horizon:
                continue  # nothing after the checkpoint can have aged out yet
            suspect[shard_id] = (str(checkpoint_key(checkpoint)[0]), verified)
        if not suspect:
            return []
        shards = {shard.shard_id: shard for shard in list_shards(self.kinesis, self.input.stream, sleep=self.sleep)}
        losses = []
        for shard_id, (sequence, verified) in sorted(suspect.items()):
            shard = shards.get(shard_id)
            if shard is None:
                losses.append(DataLoss(shard_id, sequence, None, verified, horizon, shard_gone=True))
                continue
            retained = probe_retention(self.kinesis, self.input.stream, shard, sequence, sleep=self.sleep)
            if not retained.checkpoint_retained:  # trimmed in order: what came after it may be gone too
                losses.append(DataLoss(shard_id, sequence, retained.oldest_sequence, verified,
                                       retained.oldest_arrival or horizon))
        return losses

    def _vouch(self, verified: dict[str, datetime], *, force: bool = False, conn: psycopg.Connection | None = None
               ) -> None:
        """Record that every record of these shards that arrived before the given times is read.

        Written only when it moves the known time on by a quarter of the retention (or ``force``), so an
        idle stream costs a write now and then, not one per look.
        """
        stale = {shard: when for shard, when in verified.items() if force or self._outdated(shard, when)}
        if not stale:
            return
        if conn is None:
            with self.target.connect() as own:
                self._prepare(own)
                self._vouch(stale, force=True, conn=own)
            return
        rows = self._watch_rows(stale)
        out, dialect = self.config.output, self.target.dialect
        with dialect.atomic(conn) as cur:
            state.write_watch(cur, dialect, out.state, self.config.name, self.input.stream, rows)
        self._watch.update(rows)

    def _stale_watch(self, moved: dict[str, str], verified: dict[str, datetime]) -> dict[str, state.Watch]:
        """Watch rows a batch moving ``moved`` should write: shards without one, or whose known-read time it
        moves on by a quarter of the retention. The rest keep theirs (older is only more cautious)."""
        return self._watch_rows({shard: verified.get(shard) for shard in moved
                                 if self._outdated(shard, verified.get(shard))})

    def _outdated(self, shard: str, when: datetime | None) -> bool:
        """Whether the shard's watch row is missing, of another incarnation, or ``when`` moves its known-read
        time on by more than a quarter of the retention (worth a write)."""
        old = self._watch.get(shard)
        if old is None or old.generation != self._generation:
            return True
        return when is not None and (old.verified_through is None or when - old.verified_through > self._retention / 4)

    def _watch_rows(self, verified: Mapping[str, datetime | None]) -> dict[str, state.Watch]:
        rows = {}
        for shard, when in verified.items():
            old = self._watch.get(shard)
            keep = old.verified_through if old is not None else None
            created = self._stream_created or (old.stream_created if old is not None else None)
            newer = when if when is not None and (keep is None or when > keep) else keep
            rows[shard] = state.Watch(created, newer, self._generation)
        return rows

    def batch(self, conn: psycopg.Connection, *, deadline: float | None = None,
              caught_up_deadline: float | None = None) -> BatchResult:
        """Read at most exec.max_records / exec.max_bytes past the checkpoints, until ``deadline``; commit them.

        ``caught_up_deadline`` ends the batch earlier, once every shard has been parsed up to a page that
        reached its tip.

        Every readable shard is read ahead by its own thread, a page at a time, while the pages already read
        are parsed, taking a page from each shard in turn. A shard stopped early (by the deadline or the budget)
        moves its checkpoint only to the last record parsed; its reader, and the pages it read ahead, carry
        on into the next batch once this one commits, so no page is read twice and reading goes on during
        the commit. Call :meth:`close` after the last batch (``run`` and ``follow`` do).
        """
        from pipeline.sources.kinesis import list_shards, read_order

        started = time.monotonic()
        result = BatchResult()
        stream = self.input.stream
        before = state.read_checkpoints(conn, self.config.output.state, self.config.name, stream)
        conn.commit()  # the read above must not hold a snapshot across the whole read from Kinesis
        positions = dict(before)
        shards = list_shards(self.kinesis, stream, sleep=self.sleep)
        parsed = _Parsed()
        budget = _Budget(self.config.exec.max_records, self.config.exec.max_bytes, deadline, caught_up_deadline)
        visited: set[str] = set()
        carried, self._reads = self._reads, {}
        self._batches += 1
        reads: list[_ShardRead] = []
        try:
            while not budget.spent:
                readable = [s for s in read_order(shards, positions) if s.shard_id not in visited]
                if not readable:
                    break
                # Start with a different shard each batch, so a busy shard cannot starve the others of the window.
                turn = self._batches % len(readable)
                readable = readable[turn:] + readable[:turn]
                for shard in readable:
                    reads.append(self._shard_read(shard, positions.get(shard.shard_id), carried))
                self._parse_in_turn(reads, parsed, budget, result)
                for read in reads:
                    visited.add(read.shard.shard_id)
                    self._settle(read, positions, budget, result)
                reads = []
        except BaseException:
            for read in [*reads, *carried.values()]:
                read.close()
            self.close()
            raise
        for read in carried.values():  # shards no longer readable (finished or gone) or moved by another run
            read.close()
        moved = {shard: pos for shard, pos in positions.items() if before.get(shard) != pos}
        try:
            if not moved:
                self._vouch(result.verified, conn=conn)
                result.seconds = time.monotonic() - started
                return result
            self._commit_refusing(conn, parsed, moved, before, result)
        except BaseException:
            self.close()
            raise
        finally:
            done, self._after_commit = self._after_commit, []
            for read in done:
                read.close()
        result.checkpoints = dict(positions)
        result.rows = len(parsed.lines)
        result.rejected = len(parsed.rejects)
        result.seconds = time.monotonic() - started
        return result

    def close(self) -> None:
        """Stop the read-ahead of shards that a batch left unfinished; the next batch starts afresh."""
        reads, self._reads = self._reads, {}
        for read in reads.values():
            read.close()

    def _shard_read(self, shard: Shard, position: str | None, carried: dict[str, _ShardRead]) -> _ShardRead:
        """The reader the last batch left at ``position``, or a new one from there."""
        from pipeline.sources.kinesis import read_shard
        from pipeline.sources.prefetch import prefetch

        read = carried.pop(shard.shard_id, None)
        if read is not None and read.position == position:
            read.consumed = read.nbytes = 0
            read.reached_tip, read.tip_fetched = False, None
            return read
        if read is not None:
            read.close()
        # The batch budget is kept here; a page is never larger than a batch.
        reader = read_shard(self.kinesis, self.input.stream, shard, after_sequence=position,
                            starting_position=self.input.starting_position, timestamp=self.timestamp,
                            max_records=_UNLIMITED, max_bytes=_UNLIMITED, stop_at_tip=True, sleep=self.sleep,
                            records_per_call=max(1, self.config.exec.max_records))
        return _ShardRead(shard, reader, prefetch(reader.pages(), depth=READ_AHEAD_PAGES), position=position)

    def _parse_in_turn(self, reads: list[_ShardRead], parsed: _Parsed, budget: _Budget,
                       result: BatchResult) -> None:
        """Parse a page of each shard in turn until every reader is done or the budget is spent.

        With records arriving everywhere, every shard gets into every window instead of the first one
        filling it. The budget's caught-up deadline counts once every shard has been parsed up to a
        page that reached its tip.
        """
        from pipeline.formats.json import NO_METADATA, parse_records, row_identity
        from pipeline.sources.kinesis import Page, identity_prefix

        stream = self.input.stream
        encode, options = self.path.encode_fields, self.options
        uses_metadata = options.uses_metadata
        stop_on_invalid = self.input.parser.stop_on_invalid_record
        lines, rejects, origins = parsed.lines, parsed.rejects, parsed.origins
        unfinished = list(reads)

        def all_caught_up() -> bool:  # every shard parsed up to its tip, or read to its end
            return all(r.reached_tip or r.finished for r in reads)

        caught_up = False
        while unfinished and not budget.spent:
            for read in list(unfinished):
                page = read.next_page()
                if page is None:  # at the tip, or at a closed shard's end
                    unfinished.remove(read)
                    caught_up = all_caught_up()
                    continue
                source = f"{stream}/{read.shard.shard_id}"
                prefix = identity_prefix(stream, read.shard.shard_id)
                if self._generation:  # a stream created again numbers its records anew: keep their uuids apart
                    prefix += f"g{self._generation}/"
                records = page.records
                for index, record in enumerate(records):
                    arrival = record.approximate_arrival_timestamp
                    if result.oldest_arrival is None or arrival < result.oldest_arrival:
                        result.oldest_arrival = arrival
                    at = record.position
                    raw = partial(record.data.decode, "utf-8", "replace")
                    for line, row in parse_records(record.data, record.metadata() if uses_metadata else NO_METADATA,
                                                   options, source, at):
                        encoded = row if isinstance(row, RecordError) else encode(
                            row, source, at, row_identity(prefix + at, line), raw)
                        if isinstance(encoded, RecordError):
                            if stop_on_invalid:
                                raise encoded
                            rejects.append(encoded)
                            continue
                        lines.append(encoded[1])
                        origins.append((source, at))
                    read.consumed += 1
                    read.nbytes += len(record.data)
                    read.position = record.checkpoint
                    read.last_arrival = arrival
                    if budget.take(len(record.data), caught_up):
                        rest = records[index + 1:]
                        if rest:
                            read.leftover = Page(rest, page.millis_behind, page.fetched, page.full)
                        elif page.at_tip:
                            read.reached_tip, read.tip_fetched = True, page.fetched
                        return
                if page.at_tip and not read.reached_tip:
                    read.reached_tip = True  # everything this shard held when the page was read is parsed
                    read.tip_fetched = page.fetched
                    caught_up = all_caught_up()
                    if caught_up and budget.close_caught_up():
                        return  # commit now, not after another (empty) GetRecords per shard

    def _settle(self, read: _ShardRead, positions: dict[str, str], budget: _Budget, result: BatchResult) -> None:
        """Count what the batch took from ``read``'s shard, move its checkpoint, and keep its reader if unfinished."""
        from pipeline.sources.kinesis import SHARD_END

        shard_id = read.shard.shard_id
        # Read to its end, the reader's own checkpoint also covers a closed shard's end and empty aggregates.
        position = read.reader.checkpoint if read.finished else read.position
        result.records += read.consumed
        result.bytes += read.nbytes
        result.shards[shard_id] = read.consumed
        if read.finished and position == SHARD_END:
            result.verified[shard_id] = datetime.now(UTC)  # a closed shard read to its end holds nothing more
        elif read.reached_tip and read.tip_fetched is not None:
            result.verified[shard_id] = read.tip_fetched - TIP_MARGIN
        elif read.last_arrival is not None:
            result.verified[shard_id] = read.last_arrival  # what comes after it arrived after it
        if position is not None and position != positions.get(shard_id):
            positions[shard_id] = position
        if read.finished:
            read.close()
            if position != SHARD_END and (read.reader.millis_behind or 0) > 0:
                result.at_tip = False
            return
        if budget.closed_caught_up and read.reached_tip and read.leftover is None:
            # Its read-ahead goes on past the tip, and may end there before the next batch: a reader that
            # ended before new records arrived would leave them for the batch after. The next batch reads
            # afresh from the checkpoint. Closed after the commit: closing waits for the read in progress.
            self._after_commit.append(read)
            return
        self._reads[shard_id] = read
        if not (budget.window_closed and read.reached_tip):
            # Stopped by the budget, or by the window before parsing up to the tip: not caught up yet. (Caught
            # up, what arrived since is past the checkpoint and waits for the next batch or run.)
            result.at_tip = False

    def _commit_refusing(self, conn: psycopg.Connection, parsed: _Parsed, moved: dict[str, str],
                         before: dict[str, str], result: BatchResult) -> None:
        """Commit the batch; a record the warehouse refuses stops the run (naming its shard, sequence number and
        column) or, with stop_on_invalid_record false, becomes a rejected record and the batch commits without it."""
        refused = 0
        insert = True
        while True:
            try:
                self._commit(conn, parsed.lines, parsed.rejects, moved, before, result, insert=insert)
                return
            except _InsertRefused as refusal:
                log.info("%s: the warehouse refused a row of the batch's INSERT (%s); staging the batch to find it",
                         self.config.name, refusal)
                insert = False
            except _RowRefused as refusal:
                source, sequence = parsed.origins[refusal.index]
                error = RecordError(source, sequence, f"the warehouse refused the record: {refusal.reason}",
                                    column=refusal.column, raw=parsed.lines[refusal.index].rstrip("\n"))
                if self.input.parser.stop_on_invalid_record:
                    raise error from None
                refused += 1
                if refused > MAX_REFUSED_RECORDS:
                    raise WarehouseError(f"{self.config.name}: the warehouse refused more than {MAX_REFUSED_RECORDS} "
                                         f"records of one batch; the last: {error}") from None
                log.info("%s; it goes to the rejected records and the batch is committed again", error)
                del parsed.lines[refusal.index]
                del parsed.origins[refusal.index]
                parsed.rejects.append(error)

    def _commit(self, conn: psycopg.Connection, lines: list[str], rejects: list[RecordError],
                moved: dict[str, str], before: dict[str, str], result: BatchResult, *, insert: bool = True) -> None:
        out = self.config.output
        dialect = self.target.dialect
        staged: list[str] = []
        try:
            with dialect.atomic(conn) as cur:
                dialect.lock_first(cur, state.checkpoint_ident(out.state))
                if lines:
                    merge = out.mode == "merge"
                    into = sql.Identifier(f"pl_stage_{self.config.name}"[:60]) if merge else self.target.ident
                    names = [c.name for c in self.columns]
                    if merge:
                        for statement in dialect.merge_stage(into, self.target.ident, names, SEQUENCE_COLUMN):
                            cur.execute(statement)
                        if not dialect.fills_merge_sequence:
                            lines = [f"{line[:-1]}\t{index}\n" for index, line in enumerate(lines)]
                            names = [*names, SEQUENCE_COLUMN]
                    if dialect.capabilities.copy_from_stdin:
                        self._copy_stdin(cur, lines, into, names)
                    elif insert and len(lines) <= INSERT_MAX_ROWS and sum(map(len, lines)) <= INSERT_MAX_BYTES:
                        try:
                            dialect.write_rows(cur, into, names, [text_values(line) for line in lines])
                        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
                            raise _InsertRefused((error.diag.message_primary or str(error)).strip()) from None
                    else:
                        staged.append(self._copy_from_s3(cur, lines, moved, into, names))
                    if merge:
                        for statement in dialect.merge_from_stage(self.target.ident, into, self.target.column_names,
                                                                  self._merge_keys(conn), SEQUENCE_COLUMN):
                            cur.execute(statement)
                        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(into))
                self.target.write_rejects(cur, rejects)
                counts = {shard: result.shards.get(shard, 0) for shard in moved}
                state.write_checkpoints(cur, dialect, out.state, self.config.name, self.input.stream, moved, counts,
                                        expected={shard: before.get(shard) for shard in moved})
                watch = self._stale_watch(moved, result.verified)
                state.write_watch(cur, dialect, out.state, self.config.name, self.input.stream, watch)
            self._watch.update(watch)
        except _StagedRefusal:
            errors = dialect.load_errors(conn)
            conn.rollback()
            first = errors[0] if errors else {}
            line = first.get("line_number")
            if not isinstance(line, int) or not 0 < line <= len(lines):
                raise WarehouseError(f"{self.config.name}: the warehouse refused the staged batch "
                                     f"({first.get('error_message', 'no load error recorded')})") from None
            raise _RowRefused(line - 1, str(first.get("error_message")), first.get("column_name") or None) from None
        except state.CheckpointMoved as error:
            raise PipelineError(f"{self.config.name}: {error}; this batch was not committed, "
                                "the other run's rows stand") from None
        except psycopg.errors.UniqueViolation:
            raise PipelineError(f"{self.config.name}: another run committed the same shards at the same time; "
                                "this batch was not committed") from None
        except psycopg.OperationalError as error:
            raise WarehouseError(f"{self.config.name}: the warehouse connection failed during the commit "
                                 f"({str(error).strip()}); nothing of this batch was committed") from None
        finally:
            if staged:
                staging.delete(self.s3, staged)

    def _merge_keys(self, conn: psycopg.Connection) -> list[str]:
        if self._keys is None:
            self._keys = self.target.merge_keys(conn)
        return self._keys

    def _copy_stdin(self, cur: psycopg.Cursor, lines: list[str], into: sql.Composable, names: list[str]) -> None:
        statement = copy_text_statement(into, names)
        start, size = 0, 0
        for index, line in enumerate(lines):
            size += len(line)
            if size >= FLUSH_BYTES:
                self._copy_chunk(cur, statement, lines, start, index + 1)
                start, size = index + 1, 0
        self._copy_chunk(cur, statement, lines, start, len(lines))

    @staticmethod
    def _copy_chunk(cur: psycopg.Cursor, statement: sql.Composed, lines: list[str], start: int, end: int) -> None:
        try:
            copy_lines(cur, statement, lines[start:end])
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
            where = re.search(r"line (\d+)", getattr(error.diag, "context", None) or "")
            if where is None or not 0 < int(where.group(1)) <= end - start:
                raise
            column = re.search(r"column (\w+)", error.diag.context or "")
            detail = f" ({error.diag.message_detail})" if error.diag.message_detail else ""
            raise _RowRefused(start + int(where.group(1)) - 1, (error.diag.message_primary or str(error)) + detail,
                              column.group(1) if column else None) from None

    def _copy_from_s3(self, cur: psycopg.Cursor, lines: list[str], moved: dict[str, str],
                      into: sql.Composable, names: list[str]) -> str:
        """Stage the batch (the same checkpoints always stage to the same key) and COPY it; its URI."""
        staging_config, iam_role = self.config.output.s3_staging, self.config.output.iam_role
        assert staging_config is not None and iam_role is not None  # _prepare refuses a target without them
        digest = hashlib.sha1(repr(sorted(moved.items())).encode(), usedforsecurity=False).hexdigest()[:20]
        uri = staging.put(self.s3, staging_config, f"{self.config.name}/{digest}.csv.gz", staging.staged_csv(lines))
        try:
            cur.execute(self.target.dialect.copy_from_s3(into, names, uri, iam_role, staging.STAGED_FORMAT))
        except psycopg.errors.InternalError:
            raise _StagedRefusal() from None  # what it refused is readable once the transaction has rolled back
        return uri


_UNLIMITED = 1 << 62


@dataclass(slots=True)
class _ShardRead:
    """One shard's reader, the pages it has read ahead, and how far batches have parsed them."""

    shard: Shard
    reader: ShardReader
    pages: Generator[Page, None, None]  # the prefetch generator over reader.pages()
    position: str | None  # the checkpoint after the last record parsed (where the shard stood, before any)
    leftover: Page | None = None  # the rest of the page a batch stopped in
    consumed: int = 0  # in this batch
    nbytes: int = 0
    reached_tip: bool = False  # in this batch, parsed every record of a page that reached the tip
    finished: bool = False  # the reader ran out: its own checkpoint covers everything it read
    last_arrival: datetime | None = None  # of the last record parsed
    tip_fetched: datetime | None = None  # when the page that reached the tip was read

    def next_page(self) -> Page | None:
        if self.leftover is not None:
            leftover, self.leftover = self.leftover, None
            return leftover
        page = next(self.pages, None)
        if page is None:
            self.finished = True
        return page

    def close(self) -> None:
        self.pages.close()  # stops the prefetch thread


@dataclass(slots=True)
class _Parsed:
    """A batch's rows (COPY text lines) and rejected records."""

    lines: list[str] = field(default_factory=list)
    rejects: list[RecordError] = field(default_factory=list)
    origins: list[tuple[str, str]] = field(default_factory=list)  # per line: (stream/shard, sequence number)


class _RowRefused(Exception):
    """The warehouse refused the batch's line ``index``."""

    def __init__(self, index: int, reason: str, column: str | None):
        super().__init__(reason)
        self.index, self.reason, self.column = index, reason, column


class _InsertRefused(Exception):
    """A multi-row INSERT was refused: which row, the statement does not say."""


class _StagedRefusal(Exception):
    """Redshift refused the staged batch; its load errors say which line, after the rollback."""


@dataclass(slots=True)
class _Budget:
    """What a batch may still take: records, bytes and time."""

    records: int
    nbytes: int
    deadline: float | None
    caught_up_deadline: float | None = None  # applies once every shard has been parsed up to its tip
    spent: bool = False
    window_closed: bool = False  # spent by a deadline, not by records or bytes
    closed_caught_up: bool = False  # ended as soon as every shard was parsed to its tip

    def close_caught_up(self) -> bool:
        """With every shard parsed to its tip: close the window if the caught-up deadline has passed."""
        if self.caught_up_deadline is not None and time.monotonic() >= self.caught_up_deadline:
            self.spent = self.window_closed = self.closed_caught_up = True
        return self.spent

    def take(self, nbytes: int, caught_up: bool = False) -> bool:
        """Count one record of ``nbytes`` (``caught_up``: every shard parsed to its tip); True once spent."""
        self.records -= 1
        self.nbytes -= nbytes
        if self.records <= 0 or self.nbytes <= 0:
            self.spent = True
            return True
        now = time.monotonic()
        if (self.deadline is not None and now >= self.deadline) or (
                caught_up and self.caught_up_deadline is not None and now >= self.caught_up_deadline):
            self.spent = self.window_closed = True
        return self.spent


def _parse_time(text: str) -> datetime:
    from datetime import UTC

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PipelineError(f"in.timestamp {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
