"""``pipeline run --follow`` for S3: load each object seconds after it lands, from the bucket's notifications.

The pipeline names the SQS queue its bucket notifies (``in.notifications.queue``). The loop:

1. **Sweep** at the start and every ``in.notifications.sweep_interval``: one ordinary run (list the
   prefix, load what the ledger lacks). It picks up every object whose notification was lost, sent
   before the queue existed, or deleted unread.
2. **Receive** with SQS long polling (the call returns as soon as a message arrives), then take what
   else is waiting, so a burst is one batch.
3. **Load** the announced objects of this pipeline (prefix, path_match_pattern and Embulk's listing
   rules) by name, with the ledger deciding: an object version loaded before loads nothing, so a
   duplicate or late notification costs one HeadObject.
4. **Delete** a message only after the run that covered its objects committed (the ledger now holds
   their current versions). A failed load leaves its messages in the queue: they come back after
   their visibility timeout, and a queue's redrive policy moves one that keeps failing aside.

Messages that name nothing to load (S3's test event, other buckets, ObjectRemoved, keys outside the
pipeline) are deleted with a line saying why; a message that is not an S3 notification is left for the
queue's redrive policy and said once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline import registry
from pipeline.batch import BatchLoad, RunSummary
from pipeline.config import PipelineConfig, S3InputConfig
from pipeline.errors import PipelineError, SourceError
from pipeline.progress import Display
from pipeline.sources.sqs import Message, Queue

log = logging.getLogger(__name__)

BURST_MESSAGES = 100  # taken without waiting once the first message of a burst arrived
LONG_POLL_SECONDS = 20  # SQS's longest wait
FAILURE_PAUSE_SECONDS = 5.0  # after a failed load or receive, before the next receive


@dataclass
class FollowSummary:
    pipeline: str
    runs: list[RunSummary] = field(default_factory=list)
    messages: int = 0
    deleted: int = 0
    failures: int = 0
    seconds: float = 0.0

    @property
    def objects(self) -> int:
        return sum(len(run.loaded) for run in self.runs)

    @property
    def rows(self) -> int:
        return sum(run.rows for run in self.runs)

    def describe(self) -> str:
        text = (f"{self.pipeline}: followed for {self.seconds:.0f} s: {self.objects:,} object(s) loaded "
                f"({self.rows:,} rows) in {len(self.runs):,} run(s), {self.messages:,} notification(s) received, "
                f"{self.deleted:,} deleted")
        return text + (f"; {self.failures:,} load(s) failed and were left in the queue" if self.failures else "")


class ObjectFollow:
    """Load the objects an S3 pipeline's notifications announce, until stopped."""

    def __init__(self, config: PipelineConfig, *, s3_client: Any = None, sqs_client: Any = None,
                 emit: Callable[[str], None] | None = None, display: Display | None = None,
                 on_run: Callable[[RunSummary], None] | None = None, poll_seconds: float = LONG_POLL_SECONDS):
        source = config.input
        if not registry.in_s3(source) or source.notifications is None:
            raise PipelineError(f"{config.name}: --follow for S3 needs in.notifications.queue: the SQS queue "
                                "the bucket sends its s3:ObjectCreated:* events to (see `pipeline policy "
                                "notification CONFIG`)")
        if config.output.mode in ("replace", "truncate_insert"):
            raise PipelineError(f"{config.name}: out.mode {config.output.mode} rebuilds the table from every "
                                "object on each run, so it cannot load objects one by one as they land; use "
                                "insert_direct, append or merge with --follow")
        self.config = config
        self.source: S3InputConfig = source
        self.emit = emit or log.info
        self.display = display
        self.on_run = on_run
        # The longest a receive waits (SQS long polling ends at once when a message arrives); a stop set from
        # another thread is seen after at most this long.
        self.poll_seconds = poll_seconds
        self._s3 = s3_client
        self._sqs = sqs_client
        self._unrecognised: set[str] = set()

    def _load(self) -> BatchLoad:
        load = BatchLoad(self.config, s3_client=self._s3, emit=self.emit, display=self.display)
        self._s3 = load.s3  # one client for every run
        return load

    def queue(self) -> Queue:
        if self._sqs is None:
            from pipeline.sources.aws import client

            self._sqs = client("sqs", **self.source.aws.client_kwargs())
        assert self.source.notifications is not None
        return Queue(self._sqs, self.source.notifications.queue, self.source.bucket)

    def follow(self, stop: threading.Event | None = None) -> FollowSummary:
        stop = stop or threading.Event()
        limit = self.config.exec.max_runtime
        started = time.monotonic()
        deadline = None if limit is None else started + limit
        assert self.source.notifications is not None
        interval = self.source.notifications.sweep_interval
        summary = FollowSummary(self.config.name)
        queue = self.queue()
        _ = queue.url  # a missing queue or a refused GetQueueUrl stops here, before any load
        next_sweep = time.monotonic()
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            now = time.monotonic()
            if now >= next_sweep:
                self.emit(f"{self.config.name}: sweeping {self.source.uri} for objects without a notification")
                self._run(summary, None)
                next_sweep = time.monotonic() + interval
                continue
            wait = min(self.poll_seconds, next_sweep - now, *(() if deadline is None else (deadline - now,)))
            try:
                messages = queue.receive(wait)
                if messages:
                    messages += list(queue.drain(BURST_MESSAGES - len(messages)))
            except SourceError as error:
                summary.failures += 1
                self.emit(f"error: {error}")
                stop.wait(FAILURE_PAUSE_SECONDS)
                continue
            if stop.is_set() and not messages:
                break
            summary.messages += len(messages)
            self._handle(queue, messages, summary, stop)
        summary.seconds = time.monotonic() - started
        return summary

    def _handle(self, queue: Queue, messages: list[Message], summary: FollowSummary, stop: threading.Event) -> None:
        done: list[Message] = []  # nothing (more) to load for these
        loading: list[Message] = []
        for message in messages:
            if message.unrecognised:
                if message.message_id not in self._unrecognised:
                    self._unrecognised.add(message.message_id)
                    self.emit(f"warning: SQS message {message.message_id} in {queue.name} is {message.ignored}; "
                              "left in the queue for its redrive policy")
                continue
            keys = [a.key for a in message.announced if self.source.covers(a.key)]
            if keys:
                loading.append(message)
            else:
                if message.announced:
                    message.ignored = "about objects outside " + self.source.uri
                log.info("SQS message %s: nothing to load (%s)", message.message_id, message.ignored)
                done.append(message)
        keys = list(dict.fromkeys(a.key for m in loading for a in m.announced if self.source.covers(a.key)))
        if keys:
            from pipeline.sources.s3 import S3Object, acceptor, describe, missing

            present, gone = [], set()
            accept = acceptor(self.source, lambda text: self.emit(f"warning: {text}"))
            for key in keys:
                try:
                    obj = describe(self._load_client(), S3Object(self.source.bucket, key, 0, "",
                                                                 datetime.fromtimestamp(0, UTC)))
                except SourceError as error:
                    if missing(error):
                        gone.add(key)  # deleted since it was announced: nothing to load
                        continue
                    summary.failures += 1
                    self.emit(f"error: {error}")
                    return  # its messages stay in the queue
                if accept(obj):
                    present.append(obj)
                else:
                    gone.add(key)
            for key in sorted(gone):
                self.emit(f"s3://{self.source.bucket}/{key}: announced, but gone or passed over (empty, "
                          "archived or outside the listing rules): nothing to load")
            if present and self._run(summary, present) is None:
                return  # the load failed: its messages stay in the queue
            done += loading
        if done:
            summary.deleted += len(done) - len(queue.delete(done))

    def _load_client(self) -> Any:
        if self._s3 is None:
            self._load()
        return self._s3

    def _run(self, summary: FollowSummary, objects: list[Any] | None) -> RunSummary | None:
        try:
            run = self._load().run(objects=objects)
        except PipelineError as error:
            summary.failures += 1
            self.emit(f"error: {error}")
            return None
        summary.runs.append(run)
        if run.loaded:
            self.emit(run.describe())
        if self.on_run is not None:
            self.on_run(run)
        return run
