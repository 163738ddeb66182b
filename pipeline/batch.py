"""S3 objects into a warehouse table, exactly once per object version, on the target's own rules.

Each object is read as a stream. When the server can parse the CSV itself (the usual case) its bytes go
straight to the server: ``COPY ... (FORMAT csv)`` from STDIN, or, on Redshift, ``COPY ... FROM S3`` of the
object itself through a one-entry manifest. If the server refuses any of it, that attempt is rolled back
and the object is read again through our own reader, which names the bad line and column and either
stops or sends the record to ``<table>_rejected``, as the config asks. A row the warehouse still refuses
is located and the object's load runs again without it (or stops, naming it).

How the ledger row (pipeline, key, ETag) commits with the rows is the dialect's strategy for the mode
(``Dialect.strategy``; docs/targets.md): one transaction per object, one publish transaction, an
idempotent upsert followed by the ledger row (Hologres' fixed copy), or a table swap settled from a
pending ledger (Hologres' replace).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from pipeline.config import PipelineConfig
from pipeline.errors import PipelineError, RecordError, WarehouseError
from pipeline.progress import Display, Lines, Progress
from pipeline.warehouse import staging, state
from pipeline.warehouse.connection import describe_target
from pipeline.warehouse.copy import copy_bytes, copy_csv_statement, copy_lines, copy_text_statement
from pipeline.warehouse.fit import Fitter
from pipeline.warehouse.target import REJECTED_COLUMNS, Target

log = logging.getLogger(__name__)

CHUNK_LINES_BYTES = 1 << 20  # the checked path sends validated rows in COPYs of about this size
STAGED_PART_BYTES = 32 << 20  # on Redshift, the checked path stages parts of about this size
REJECT_BATCH = 1000
MAX_REFUSED_ROWS = 20  # rows the warehouse refuses in one object before the object fails
RETRIES = 5  # serialization conflicts (Redshift error 1023) before giving up
SEQUENCE_COLUMN = "pl_seq"  # the staged order of rows, so a merge keeps the last row of a key
STALE_STAGE_SECONDS = 6 * 3600  # a stage table older than this is an interrupted run's, not a live one's


@dataclass
class ObjectResult:
    key: str
    etag: str
    rows: int = 0
    rejected: int = 0
    bytes: int = 0
    seconds: float = 0.0
    parsed: int = 0
    path: str = "fast"  # fast: the server parsed the CSV; checked: our reader did
    skipped: bool = False
    writers: int = 1  # COPY writers its pages were dealt to (exec.min_output_tasks)


@dataclass
class RunSummary:
    pipeline: str
    mode: str
    results: list[ObjectResult] = field(default_factory=list)
    up_to_date: int = 0
    seconds: float = 0.0

    @property
    def loaded(self) -> list[ObjectResult]:
        return [r for r in self.results if not r.skipped]

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.loaded)

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.loaded)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.loaded)

    def describe(self) -> str:
        if not self.loaded:
            return (f"{self.pipeline}: nothing new to load "
                    f"({self.up_to_date} object{'s' if self.up_to_date != 1 else ''} already loaded)")
        rate = self.rows / self.seconds if self.seconds > 0 else 0
        return (f"{self.pipeline}: loaded {len(self.loaded)} object{'s' if len(self.loaded) != 1 else ''}, "
                f"{self.rows:,} rows, {self.rejected:,} rejected, {_mb(self.bytes)} in {self.seconds:.2f} s "
                f"({rate:,.0f} rows/s; mode {self.mode}; {self.up_to_date} already loaded)")


class _Background:
    """``work()`` on a daemon thread; ``result()`` waits for it and returns its value or raises its error.

    A daemon, so a run that fails before asking (the warehouse refused) does not wait for a long listing.
    """

    def __init__(self, work: Callable[[], object]):
        self._value: object = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = work()
            except BaseException as error:  # handed to result()
                self._error = error

        self._thread = threading.Thread(target=run, name="listing", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


class FastPathRefused(Exception):
    """The server refused the object's bytes as they are: read it again with row checks."""


class _PartsCommitted(Exception):
    """An interrupted scattered load committed parts of the object: only the rest may be sent."""


class RowRefused(Exception):
    """The warehouse refused one row our reader passed; ``error`` names it."""

    def __init__(self, error: RecordError):
        super().__init__(str(error))
        self.error = error


def _connection_lost(error: BaseException) -> bool:
    """A connection that dropped, or could not be made: no statement's fault, so running it again may work."""
    if isinstance(error, WarehouseError):
        return str(error).startswith("cannot connect")
    if isinstance(error, psycopg.errors.QueryCanceled) or not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate or ""
    return state == "" or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f} MB"


class BatchLoad:
    """One run of an S3 pipeline: plan what is new, load it in the configured mode."""

    def __init__(self, config: PipelineConfig, *, s3_client=None, emit: Callable[[str], None] | None = None,
                 display: Display | None = None):
        from pipeline import registry

        store = registry.store(config.input, lambda: self.s3)
        if store is None:
            raise PipelineError(f"{config.name}: in.type is {config.input.type}, a stream, not objects")
        if config.input.parser is None:
            raise PipelineError(f"{config.name}: in.parser is missing; run `pipeline guess` first")
        self.config = config
        self.input: Any = config.input
        self.store = store
        self.parser = config.input.parser
        self.reader = registry.reader(self.parser)
        # The CSV options the warehouse's COPY reads the objects' bytes with, when it reads them as the reader does.
        self.native = self.reader.native_csv()
        self.emit = emit or log.info
        # Where progress goes: a bar on a terminal, Dagster's run log, or (default) a line every 5 s via emit.
        self.display = display or Lines(self.emit, 5.0)
        self._s3 = s3_client
        from pipeline.filters import build_filters, output_columns

        self.filters = build_filters(list(config.filters))
        self.target = Target(config.output, output_columns(self.parser.columns, self.filters), config.name)
        # When the run started, then a random part: stage tables are named after it (see _stage_name).
        self.run_id = f"{int(time.time())}_{uuid.uuid4().hex[:8]}"
        self.fast_path = self._fast_path_possible()
        # (schema, table) -> its column types, read outside the load transactions (see warehouse/fit.py).
        self._types: dict[tuple[str, str], dict] = {}
        self._idle: list[psycopg.Connection] = []  # connections between two transactions (see _connection)
        self._idle_lock = threading.Lock()
        self._at_once = 1  # objects loading side by side in this run (they share exec.min_output_tasks)
        self._keyed = True  # the target has a primary key (read when an object is large enough to scatter)
        self._single_writer_said = False

    @property
    def dialect(self):
        return self.target.dialect

    # ----------------------------------------------------------------- public

    @property
    def s3(self):
        if self._s3 is None:
            from pipeline.sources.aws import client

            self._s3 = client("s3", **self.input.aws.client_kwargs())
        return self._s3

    def listed_objects(self) -> list:
        return self.store.listed(lambda message: self.emit(f"warning: {message}"))

    def _named(self, key: str):
        return self.store.named(key)

    def run(self, keys: Sequence[str] | None = None, *, objects: Sequence[Any] | None = None) -> RunSummary:
        """Load every object that is new or changed (or only ``keys``), in the configured mode.

        ``objects``: S3Objects already described (HeadObject), loaded as named keys without a second look.
        """
        if objects is not None:
            keys = [obj.key for obj in objects]
        started = time.monotonic()
        for warning in self.config.warnings:
            self.emit(f"warning: {warning}")
        out = self.config.output
        mode = out.mode
        # Named keys cost one HeadObject each: a one-object run (a Dagster partition) must not list the prefix.
        # The listing runs while the warehouse is prepared: both are mostly waiting on the network.
        listing = _Background(lambda: self.listed_objects() if keys is None else list(objects) if objects is not None
                              else [self._named(key) for key in dict.fromkeys(keys)])
        conn = self.target.connect(autocommit=True)  # kept for the first object's transaction (see _connection)
        try:
            dialect = self.target.prepare(conn)
            listed = listing.result()
            strategy = dialect.strategy(mode)
            if not strategy.exact:
                raise WarehouseError(f"{self.config.name}: {strategy.fix}")
            if not dialect.capabilities.copy_from_stdin:
                self._staging()  # fail before reading anything when Redshift's S3 staging is not configured
            if mode == "replace":
                self._settle_pending(conn)
            if self.target.column_types is not None:  # prepare() read them
                self._types[(out.schema, out.table)] = self.target.column_types
            else:
                self._read_types(conn, out.schema, out.table)
            from pipeline.warehouse.scatter import SCATTER_BYTES_PER_WRITER

            if any(o.size >= 2 * SCATTER_BYTES_PER_WRITER for o in listed):  # only then can pages scatter
                self._keyed = bool(dialect.primary_key(conn, out.schema, out.table))
            named = None if keys is None or mode in ("replace", "truncate_insert") else [o.key for o in listed]
            loaded = state.loaded_objects(conn, out.state, self.config.name, named)
            conn.autocommit = False
        except BaseException:
            conn.close()
            raise
        self._idle.append(conn)
        try:
            return self._load(listed, loaded, keys, dialect, strategy, started)
        finally:
            while self._idle:
                self._idle.pop().close()

    def _load(self, objects: list, loaded: dict[str, set[str]], keys: Sequence[str] | None, dialect, strategy,
              started: float) -> RunSummary:
        out = self.config.output
        mode = out.mode
        summary = RunSummary(self.config.name, mode)
        if mode in ("replace", "truncate_insert"):
            # These modes rebuild the table from every object, so any change means a full reload.
            current = {(o.key, o.etag) for o in objects}
            previous = {(k, e) for k, etags in loaded.items() for e in etags}
            todo = objects if current != previous or keys is not None else []
        else:
            todo = [o for o in objects if o.etag not in loaded.get(o.key, ())]
        summary.up_to_date = len(objects) - len(todo)
        self._at_once = min(self.config.exec.max_threads, max(len(todo), 1))
        if todo:
            self.emit(f"{self.config.name}: {len(todo)} object(s) to load, {_mb(sum(o.size for o in todo))}, "
                      f"mode {mode}, into {out.qualified_table} at {describe_target(out.conninfo)} "
                      f"({dialect.describe()}: {strategy.name})")
            progress = Progress(self.config.name, self.display, total_objects=len(todo),
                                total_bytes=sum(o.size for o in todo))
            try:
                if mode == "merge" and dialect.upsert_copy_options("update") is not None:
                    summary.results = self._each_upserted(todo, progress)
                elif mode in ("insert_direct", "append", "merge"):
                    summary.results = self._each_in_own_transaction(todo, progress)
                else:
                    summary.results = self._staged(todo, progress, mode)
            finally:
                progress.close()
        summary.seconds = time.monotonic() - started
        return summary

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A connection for one object's transaction: an idle one of this run's when there is one.

        It goes back for the next object only when its transaction ended cleanly; else it is closed.
        """
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.target.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        with self._idle_lock:
            self._idle.append(conn)

    def _read_types(self, conn: psycopg.Connection, schema: str, table: str) -> None:
        from pipeline.warehouse.fit import column_types

        with conn.cursor() as cur:
            self._types[(schema, table)] = column_types(cur, schema, table)

    # ----------------------------------------------------------------- one object, with its retries

    def _attempts(self, obj, attempt: Callable[[str, dict[int, RecordError]], ObjectResult]) -> ObjectResult:
        """Run ``attempt(path, refused)`` until it loads the object.

        A refused fast path is followed by the checked path; a row the warehouse refuses is rejected (or,
        with stop_on_invalid_record, stops the load) and the object is loaded again without it; a
        serialization conflict is retried. Every failed attempt was rolled back, or is idempotent.
        """
        path = "fast" if self.fast_path else "checked"
        refused: dict[int, RecordError] = {}
        conflicts = 0
        while True:
            try:
                return attempt(path, refused)
            except FastPathRefused as error:
                log.info("%s: the server refused the fast path (%s); reading it with row checks",
                         obj.uri, _first_line(error))
                path = "checked"
            except RowRefused as refusal:
                if self.parser.stop_on_invalid_record:
                    raise refusal.error from None
                if len(refused) >= MAX_REFUSED_ROWS:
                    raise WarehouseError(
                        f"the warehouse refused more than {MAX_REFUSED_ROWS} rows of {obj.uri}; "
                        f"the last: {refusal.error}") from None
                line = refusal.error.position
                if not isinstance(line, int) or line in refused:
                    raise refusal.error from None
                refused[line] = refusal.error
                path = "checked"
            except (psycopg.Error, WarehouseError) as error:
                wait = self._retry_wait(error, conflicts)
                if wait is None:
                    raise
                conflicts += 1
                self.emit(f"{obj.uri}: {_first_line(error)}; nothing of it was committed, "
                          f"running its transaction again in {wait:.1f} s (retry {conflicts})")
                time.sleep(wait)

    def _retry_wait(self, error: BaseException, failures: int) -> float | None:
        """Seconds to wait before running a failed object transaction again, or None to give up.

        A serialization conflict is always retried (RETRIES times, briefly). A lost or refused connection is
        retried only with Embulk's out.retry_limit / retry_wait / max_retry_wait, as Embulk's JDBC outputs
        retry the errors they deem retryable: retry_wait, doubling, at most max_retry_wait.
        """
        out = self.config.output
        if isinstance(error, psycopg.Error) and self.dialect.retryable(error):
            limit = RETRIES if out.retry_limit is None else out.retry_limit
            if failures >= limit:
                return None
            if out.retry_limit is None:
                return min(2.0, 0.1 * 2 ** (failures + 1))
        elif out.retry_limit is None or failures >= out.retry_limit or not _connection_lost(error):
            return None
        return min(out.retry_wait_ms * 2 ** failures, out.max_retry_wait_ms) / 1000

    # ----------------------------------------------------------------- modes

    def _each_in_own_transaction(self, objects: list, progress: Progress) -> list[ObjectResult]:
        """insert_direct, append, and merge where the target merges in SQL: one transaction per object."""
        out = self.config.output
        merge = out.mode == "merge"
        keys: list[str] = []
        if merge:
            with self.target.connect(autocommit=True) as conn:
                keys = self.target.merge_keys(conn)

        def load_one(obj) -> ObjectResult:
            writers = self._writer_count(obj, out.mode, primary_key=self._keyed)

            def attempt(path: str, refused: dict[int, RecordError]) -> ObjectResult:
                if path == "fast" and writers > 1:
                    return self._scattered(obj, writers, progress)
                try:
                    return single(path, refused)
                except _PartsCommitted:
                    if path != "fast" or merge:
                        raise WarehouseError(
                            f"{self._source(obj)}: an interrupted load with several writers committed part of "
                            f"this object ({state.PART_TABLE} says which bytes), and this load "
                            f"({'mode merge' if merge else 'the server refused the rest as CSV'}) cannot send "
                            "only the rest: load it again as before (mode insert_direct or append, the same "
                            f"table), or delete the object's rows and its {state.PART_TABLE} rows to start over"
                        ) from None
                    return self._scattered(obj, writers, progress)  # the parts say what is left to send

            def single(path: str, refused: dict[int, RecordError]) -> ObjectResult:
                with self._connection() as conn, self._staged_files() as files, self._named_refusals(conn):
                    with self.dialect.atomic(conn) as cur:
                        self.dialect.lock_first(cur, state.ledger_ident(out.state))
                        if not state.claim_object(cur, self.dialect, out.state, self.config.name, obj.key, obj.etag):
                            return ObjectResult(obj.key, obj.etag, skipped=True)
                        if self.dialect.capabilities.copy_from_stdin and state.has_parts(
                                cur, out.state, self.config.name, obj.key, obj.etag):
                            raise _PartsCommitted()
                        if merge:
                            result = self._merge_object(cur, obj, keys, progress, refused, files)
                        else:
                            result = self._write_object(cur, obj, self.target.ident, self.target.rejected_ident,
                                                        progress, path, refused, files)
                        state.complete_object(cur, out.state, self.config.name, obj.key, obj.etag,
                                              rows=result.rows, rejected=result.rejected, nbytes=result.bytes)
                    return result

            return self._load_and_log(obj, attempt, progress)

        return self._parallel(objects, load_one)

    def _writer_count(self, obj, mode: str, *, primary_key: bool) -> int:
        """COPY writers for ``obj`` (exec.min_output_tasks; see warehouse/scatter.py), 1 where they cannot help."""
        from pipeline.warehouse.scatter import writers_for

        if not self.fast_path or not self.dialect.capabilities.copy_from_stdin:
            return 1
        writers = writers_for(obj.size, self.config.exec.min_output_tasks, self._at_once)
        if writers > 1:
            reason = self.dialect.single_writer(mode, primary_key=primary_key)
            if reason is not None:
                if not self._single_writer_said:
                    self._single_writer_said = True
                    message = f"{self.config.name}: one COPY writer per object: {reason}"
                    if self.config.exec.min_output_tasks is not None:  # asked for: say why not, where the user looks
                        self.emit(f"exec.min_output_tasks: {message}")
                    else:
                        log.info(message)
                return 1
        return writers

    def _scattered(self, obj, writers: int, progress: Progress) -> ObjectResult:
        """insert_direct and append with the object's pages dealt to ``writers`` COPYs, exactly once.

        The claim on the object's ledger row is held (uncommitted) while the writers load, so a concurrent
        run waits. Once every writer's COPY has ended, each commits with its part (the byte ranges it
        holds), then the ledger row commits with the totals. A run that stops in between leaves parts
        whose rows are in; the next one sends only the ranges no part holds.
        """
        from pipeline.warehouse.scatter import scatter, unsent

        out = self.config.output
        with (self.target.connect() as conn, contextlib.ExitStack() as connections,
              self.dialect.atomic(conn) as cur):
            self.dialect.lock_first(cur, state.ledger_ident(out.state))
            if not state.claim_object(cur, self.dialect, out.state, self.config.name, obj.key, obj.etag):
                return ObjectResult(obj.key, obj.etag, skipped=True)
            conns = [connections.enter_context(self.target.connect()) for _ in range(writers)]
            # Read apart from the claim's transaction: on Hologres a read there would lock the part table.
            done = state.read_parts(conns[0], out.state, self.config.name, obj.key, obj.etag)
            conns[0].commit()
            if done:
                self.emit(f"{self._source(obj)}: {sum(p.rows for p in done):,} rows were committed by an "
                          f"interrupted load; sending the rest")
            size = [0]
            pages = unsent(self._body(obj, progress), [r for p in done for r in p.ranges], size)
            try:
                loaded = scatter(conns, self._fast_statement(self.target.ident), pages)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError, UnicodeError, ValueError) as error:
                raise FastPathRefused(_first_line(error)) from None
            for writer in loaded:
                if writer.ranges:
                    with writer.conn.cursor() as part_cur:
                        state.write_part(part_cur, out.state, self.config.name, obj.key, obj.etag,
                                         writer.part_id, writer.part)
                writer.conn.commit()
            rows = sum(w.rows for w in loaded) + sum(p.rows for p in done)
            state.complete_object(cur, out.state, self.config.name, obj.key, obj.etag, rows=rows, rejected=0,
                                  nbytes=size[0])
            # With the ledger row, so parts never outlive it (every writer has committed: no lock is waited for).
            state.forget_parts(cur, out.state, self.config.name, obj.key, obj.etag)
        return ObjectResult(obj.key, obj.etag, rows=rows, parsed=rows, bytes=size[0], writers=writers)

    def _scattered_into_stage(self, obj, writers: int, stage: sql.Identifier, progress: Progress) -> ObjectResult:
        """Staged modes: the pages dealt to ``writers`` COPYs into the run's stage, committed when all ended.

        Nothing is published before every object is staged, so no part is recorded; a commit that fails
        after others succeeded leaves part of the object in the stage, and the run stops (dropping it).
        """
        from pipeline.warehouse.scatter import scatter, unsent

        with contextlib.ExitStack() as connections:
            conns = [connections.enter_context(self.target.connect()) for _ in range(writers)]
            size = [0]
            try:
                loaded = scatter(conns, self._fast_statement(stage), unsent(self._body(obj, progress), (), size))
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError, UnicodeError, ValueError) as error:
                raise FastPathRefused(_first_line(error)) from None
            for index, writer in enumerate(loaded):
                try:
                    writer.conn.commit()
                except psycopg.Error as error:
                    if index == 0:
                        raise
                    raise WarehouseError(
                        f"{self._source(obj)}: {index} of its {writers} writers committed into this run's stage "
                        f"and the next failed ({_first_line(error)}); the run stops and drops its stage, so "
                        "nothing of it is published: run it again") from None
            rows = sum(w.rows for w in loaded)
        return ObjectResult(obj.key, obj.etag, rows=rows, parsed=rows, bytes=size[0], writers=writers)

    def _each_upserted(self, objects: list, progress: Progress) -> list[ObjectResult]:
        """merge on a target with an idempotent upsert COPY (Hologres' fixed copy): rows, then the ledger row.

        Fixed copy joins no transaction, so it is not atomic; a crash before the ledger row makes the next
        run load the object again, and the upsert on the primary key makes that exact. The object's
        rejected records and its ledger row then commit together.
        """
        out = self.config.output
        with self.target.connect(autocommit=True) as conn:
            keys = self.target.merge_keys(conn)
            primary = self.dialect.primary_key(conn, out.schema, out.table)
        if sorted(keys) != sorted(primary):
            raise WarehouseError(
                f"{self.config.name}: mode merge on {self.dialect.label} upserts on the table's primary key "
                f"({', '.join(primary) or 'none'}), not on out.merge_keys ({', '.join(keys)}): make them the same")
        upsert = self.dialect.upsert_copy_options("update")

        def load_one(obj) -> ObjectResult:
            def attempt(path: str, refused: dict[int, RecordError]) -> ObjectResult:
                with self.target.connect(autocommit=True) as conn, conn.cursor() as cur:
                    if obj.etag in state.loaded_objects(conn, out.state, self.config.name, [obj.key]).get(obj.key,
                                                                                                         ()):
                        return ObjectResult(obj.key, obj.etag, skipped=True)
                    rejects: list[RecordError] = []
                    result = self._write_object(cur, obj, self.target.ident, self.target.rejected_ident, progress,
                                                path, refused, None, upsert=upsert, deferred=rejects)
                    with self._together(conn) as tx:
                        tx.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND source = %s").format(
                            self.target.rejected_ident), (self.config.name, self._source(obj)))
                        self.target.write_rejects(tx, rejects)
                        state.record_object(tx, self.dialect, out.state, self.config.name, obj.key, obj.etag,
                                            rows=result.rows, rejected=result.rejected, nbytes=result.bytes)
                    return result

            return self._load_and_log(obj, attempt, progress)

        return self._parallel(objects, load_one)

    def _load_and_log(self, obj, attempt: Callable[[str, dict[int, RecordError]], ObjectResult],
                      progress: Progress) -> ObjectResult:
        started = time.monotonic()
        result = self._attempts(obj, attempt)
        if not result.skipped:
            result.seconds = time.monotonic() - started
            progress.add(objects=1, rows=result.rows)
            self._log_object(result)
        return result

    @contextlib.contextmanager
    def _together(self, conn: psycopg.Connection) -> Iterator[psycopg.Cursor]:
        """Several DML statements in one transaction where the server can; else one after another."""
        if self.dialect.atomic_dml:
            with self.dialect.atomic(conn) as cur:
                yield cur
        else:
            with conn.cursor() as cur:
                yield cur

    def _merge_object(self, cur: psycopg.Cursor, obj, keys: list[str], progress: Progress,
                      refused: dict[int, RecordError], files: list[str]) -> ObjectResult:
        """Stage the object with its row order, then upsert it with the dialect's merge (the stream's too)."""
        stage = sql.Identifier(f"pl_merge_{self.run_id}_{uuid.uuid4().hex[:8]}")
        columns = self.target.column_names
        for statement in self.dialect.merge_stage(stage, self.target.ident, columns, SEQUENCE_COLUMN):
            cur.execute(statement)
        # The staged order must be the file's: with a sequence column the server fills, the fast path keeps it.
        path = "fast" if self.fast_path and self.dialect.fills_merge_sequence else "checked"
        result = self._write_object(cur, obj, stage, self.target.rejected_ident, progress, path, refused, files,
                                    sequence=not self.dialect.fills_merge_sequence)
        for statement in self.dialect.merge_from_stage(self.target.ident, stage, columns, keys, SEQUENCE_COLUMN):
            cur.execute(statement)
        cur.execute(sql.SQL("DROP TABLE {}").format(stage))
        return result

    def _staged(self, objects: list, progress: Progress, mode: str) -> list[ObjectResult]:
        """insert, truncate_insert and replace: load everything aside, then publish."""
        out = self.config.output
        name = self._stage_name("new" if mode == "replace" else "stage", self.run_id)
        stage = sql.Identifier(out.schema, name)
        stage_rejected = sql.Identifier(out.schema, f"{name}_rej")
        with self.target.connect(autocommit=True) as conn, conn.cursor() as cur:
            self._drop_leftovers(cur)
            if mode == "replace":
                statements = self.target.create_statements(table=name, if_not_exists=False)
            else:
                statements = [self.dialect.stage_like(out.schema, name, self.target.ident, self.target.columns,
                                                      out.column_options)]
            with conn.transaction():
                for statement in statements:
                    cur.execute(statement)
                cur.execute(self.dialect.rejected_table(out.schema, f"{name}_rej"))
            self._read_types(conn, out.schema, name)  # replace builds the table anew, from the config's DDL
        try:
            def load_one(obj) -> ObjectResult:
                # A replace builds the table with the config's key; the other stages have none.
                writers = self._writer_count(obj, mode, primary_key=mode == "replace" and bool(out.primary_key))

                def attempt(path: str, refused: dict[int, RecordError]) -> ObjectResult:
                    if path == "fast" and writers > 1:
                        return self._scattered_into_stage(obj, writers, stage, progress)
                    with (self.target.connect() as conn, self._staged_files() as files, self._named_refusals(conn),
                          self.dialect.atomic(conn) as cur):
                        return self._write_object(cur, obj, stage, stage_rejected, progress, path, refused, files,
                                                  types_of=(out.schema, name))

                return self._load_and_log(obj, attempt, progress)

            results = self._parallel(objects, load_one)
            if mode == "replace" and not self.dialect.capabilities.ddl_with_dml:
                self._swap_in(stage, stage_rejected, results)
            else:
                self._publish(stage, stage_rejected, results, mode)
            return results
        except BaseException:
            self._drop_quietly([stage, stage_rejected])
            raise

    def _publish(self, stage: sql.Identifier, stage_rejected: sql.Identifier, results: list[ObjectResult],
                 mode: str) -> None:
        """The staged rows, rejected records and ledger rows in one transaction (DDL in it where allowed)."""
        out = self.config.output
        cols = sql.SQL(", ").join(map(sql.Identifier, self.target.column_names))
        rejected_cols = sql.SQL(", ").join(map(sql.Identifier, REJECTED_COLUMNS))
        with self.target.connect() as conn:
            with self.dialect.atomic(conn) as cur:
                self.dialect.lock_first(cur, state.ledger_ident(out.state))
                if mode in ("replace", "truncate_insert"):
                    state.forget_pipeline(cur, out.state, self.config.name)
                # Claims first: a run that published the same objects meanwhile stops this one before any row.
                self._claim_all(cur, results)
                if mode == "truncate_insert":
                    cur.execute(self.dialect.truncate(self.target.ident))
                if mode == "replace":  # here DDL may share the transaction
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.target.ident))
                    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(stage, sql.Identifier(out.table)))
                else:
                    cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                        self.target.ident, cols, cols, stage))
                # Name the columns: a stage table has no DEFAULT now() for rejected_at.
                cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                    self.target.rejected_ident, rejected_cols, rejected_cols, stage_rejected))
            with conn.transaction(), conn.cursor() as cur:  # DDL apart (Hologres keeps it out of DML)
                if mode != "replace":
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage_rejected))

    def _swap_in(self, stage: sql.Identifier, stage_rejected: sql.Identifier, results: list[ObjectResult]) -> None:
        """replace where DDL and DML never share a transaction (Hologres).

        The run's ledger rows go in first, pending; one DDL-only transaction swaps the new table in and
        writes the run id into its comment; then the pending rows settle with the rejected records. If
        the run stops between the swap and the settling, the next run reads the comment and settles.
        """
        out = self.config.output
        with self.target.connect() as conn:
            with self._together(conn) as cur:
                state.write_pending(cur, out.state, self.config.name, self.run_id, results)
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.target.ident))
                cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(stage, sql.Identifier(out.table)))
                cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
                    self.target.ident, sql.Literal(self._run_comment(self.run_id))))
            self._settle(conn, self.run_id, swapped=True)

    def _run_comment(self, run_id: str) -> str:
        return f"loaded by pipeline {self.config.name}, replace run {run_id}"

    def _settle(self, conn: psycopg.Connection, run_id: str, *, swapped: bool) -> None:
        out = self.config.output
        name = f"{self._stage_name('new', run_id)}_rej"
        stage_rejected = sql.Identifier(out.schema, name)
        with conn.cursor() as probe:
            probe.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                          (out.schema, name))
            has_rejected = probe.fetchone() is not None
        conn.commit()
        rejected_cols = sql.SQL(", ").join(map(sql.Identifier, REJECTED_COLUMNS))
        with self._together(conn) as cur:
            if swapped and has_rejected:
                cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                    self.target.rejected_ident, rejected_cols, rejected_cols, stage_rejected))
            state.settle_pending(cur, out.state, self.config.name, run_id, swapped=swapped)
        if not conn.autocommit:
            conn.commit()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage_rejected))

    def _settle_pending(self, conn: psycopg.Connection) -> None:
        """A replace run that stopped after writing its pending ledger rows: settle it from the table comment."""
        out = self.config.output
        runs = state.pending_runs(conn, out.state, self.config.name)
        if not runs:
            return
        row = conn.execute("SELECT obj_description(%s::regclass, 'pg_class')",
                           (self.target.ident.as_string(conn),)).fetchone()
        comment = row[0] if row else None
        for run_id in runs:
            swapped = comment == self._run_comment(run_id)
            log.warning("%s: settling replace run %s, which stopped %s its table swap", self.config.name, run_id,
                        "after" if swapped else "before")
            self._settle(conn, run_id, swapped=swapped)

    def _claim_all(self, cur: psycopg.Cursor, results: list[ObjectResult]) -> None:
        out = self.config.output
        for result in results:
            if not state.claim_object(cur, self.dialect, out.state, self.config.name, result.key, result.etag):
                raise WarehouseError(f"{self.input.object_uri(result.key)} (ETag {result.etag}) was "
                                     "loaded by another run meanwhile; nothing from this run was committed")
            state.complete_object(cur, out.state, self.config.name, result.key, result.etag,
                                  rows=result.rows, rejected=result.rejected, nbytes=result.bytes)

    def _stage_name(self, kind: str, run_id: str) -> str:
        # Within PostgreSQL's 63 bytes with "_rej" added: 28 + 8 + 1 + 10 + 1 + 8 + 4.
        return f"{self.config.output.table[:28]}_pl_{kind}_{run_id}"

    def _drop_leftovers(self, cur: psycopg.Cursor) -> None:
        """Stage tables of an interrupted run of this table hold nothing committed: drop them.

        A stage younger than STALE_STAGE_SECONDS may belong to a run still under way (two runs at once)
        and is left alone; its name says when its run started.
        """
        out = self.config.output
        prefix = out.table[:28]
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND (table_name LIKE %s OR table_name LIKE %s)",
                    (out.schema, f"{prefix}\\_pl\\_stage\\_%", f"{prefix}\\_pl\\_new\\_%"))
        now = time.time()
        for (name,) in cur.fetchall():
            started = re.match(r".*_pl_(?:stage|new)_(\d+)_", name)
            if started is not None and now - int(started.group(1)) < STALE_STAGE_SECONDS:
                continue
            log.warning("dropping %s.%s, left by an interrupted run (it held nothing committed)", out.schema, name)
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(out.schema, name)))

    def _drop_quietly(self, tables: list[sql.Identifier]) -> None:
        try:
            with self.target.connect(autocommit=True) as conn, conn.cursor() as cur:
                for table in tables:
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        except PipelineError:
            log.warning("could not drop the staging tables of run %s; the next run drops them", self.run_id)

    def _parallel(self, objects: list, load_one: Callable) -> list[ObjectResult]:
        load_one = self._naming_lost_connections(load_one)
        threads = min(self.config.exec.max_threads, len(objects))
        if threads <= 1:
            return [load_one(obj) for obj in objects]
        with ThreadPoolExecutor(threads, thread_name_prefix="load") as pool:
            futures = [pool.submit(load_one, obj) for obj in objects]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            failed = [f for f in futures if f.done() and not f.cancelled() and f.exception()]
            if failed:
                wait(futures)  # let loads already under way finish or fail before reporting
                raise failed[0].exception()  # type: ignore[misc]
            return [f.result() for f in futures]

    def _naming_lost_connections(self, load_one: Callable) -> Callable:
        """A connection lost mid-object (restart, failover, network) is a user error naming the object."""

        def guarded(obj) -> ObjectResult:
            try:
                return load_one(obj)
            except psycopg.OperationalError as error:
                raise WarehouseError(
                    f"the warehouse connection was lost while loading {obj.uri} "
                    f"({_first_line(error)}); nothing of this object was committed, a re-run loads it") from None
            except WarehouseError as error:
                if not str(error).startswith("cannot connect"):
                    raise
                # The warehouse went away between two objects: name the one that was next.
                raise WarehouseError(
                    f"the warehouse connection was lost before loading {obj.uri} "
                    f"({error}); nothing of this object was committed, a re-run loads it") from None

        return guarded

    def _log_object(self, result: ObjectResult) -> None:
        writers = f" by {result.writers} COPY writers" if result.writers > 1 else ""
        self.emit(f"loaded {self.input.object_uri(result.key)}: {result.rows:,} rows, "
                  f"{result.rejected:,} rejected, {_mb(result.bytes)} in {result.seconds:.2f} s{writers}")

    def _source(self, obj) -> str:
        return obj.uri

    # ----------------------------------------------------------------- one object's rows

    def _fast_path_possible(self) -> bool:
        return not self.config.filters and self.native is not None

    def _write_object(self, cur: psycopg.Cursor, obj, table: sql.Identifier, rejected: sql.Identifier,
                      progress: Progress, path: str, refused: dict[int, RecordError], files: list[str] | None, *,
                      upsert: list[sql.Composable] | None = None, deferred: list[RecordError] | None = None,
                      sequence: bool = False, types_of: tuple[str, str] | None = None) -> ObjectResult:
        """The object's rows into ``table`` in the caller's transaction; a refused fast path raises FastPathRefused.

        ``types_of`` names the table whose column types ``table`` has (the target's, unless it is a stage
        built otherwise).
        """
        if path == "fast":
            if not self.dialect.capabilities.copy_from_stdin:
                if not self.store.in_s3:
                    raise FastPathRefused("the object is not in S3, where Redshift's COPY reads")
                return self._copy_from_s3(cur, obj, table, progress)
            try:
                rows, nbytes = self._copy_fast(cur, obj, table, progress, upsert or ())
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError, UnicodeError, ValueError) as error:
                raise FastPathRefused(_first_line(error)) from None
            return ObjectResult(obj.key, obj.etag, rows=rows, parsed=rows, bytes=nbytes)
        out = self.config.output
        types = self._types.get(types_of or (out.schema, out.table), {})
        return self._copy_checked(cur, obj, table, rejected, progress, refused, files, upsert=upsert or (),
                                  deferred=deferred, sequence=sequence, fitter=self.target.fitter(types))

    def _blob(self, obj, progress: Progress, counted: Callable[[int], None] | None = None):
        def read(nbytes: int) -> None:
            progress.read(nbytes)
            if counted is not None:
                counted(nbytes)

        return self.store.blob(obj, read)

    def _object_bytes(self, obj, progress: Progress) -> Iterator[bytes]:
        return self._blob(obj, progress).chunks()

    def _copy_fast(self, cur: psycopg.Cursor, obj, table: sql.Identifier, progress: Progress,
                   extra: Sequence[sql.Composable]) -> tuple[int, int]:
        return copy_bytes(cur, self._fast_statement(table, extra), self._body(obj, progress))

    def _body(self, obj, progress: Progress) -> Iterator[bytes]:
        """The object's records as the fast path sends them: in UTF-8, past the header, through the guard,
        in record-aligned chunks (a chunk never ends inside a quoted field)."""
        from pipeline.formats.decode import split_header, to_utf8

        p = self.native
        assert p is not None
        _, body = split_header(to_utf8(self._object_bytes(obj, progress), p.charset), p.skip_header_lines)
        return _refuse_end_of_data_marker(self._plain(body))

    def _fast_statement(self, table: sql.Identifier, extra: Sequence[sql.Composable] = ()) -> sql.Composed:
        p = self.native
        assert p is not None
        # The guard lets no escape sequence through, so the server's escape is the quote, as in RFC 4180.
        return copy_csv_statement(table, self.target.column_names, delimiter=p.delimiter,
                                  quote=p.quote or '"', escape=p.quote or '"', null_string=p.null_string,
                                  extra_options=extra)

    def _plain(self, body: Iterable[bytes]) -> Iterator[bytes]:
        """``body``, raising NotPlain (a ValueError: the fast path is refused) where Embulk would read it otherwise."""
        from pipeline.formats.strict import guard

        p = self.native
        assert p is not None and p.quote is not None
        from pipeline.formats.csv import NEWLINES

        return guard(body, delimiter=p.delimiter, quote=p.quote, escape=p.escape,
                     max_quoted_size=p.max_quoted_size_limit, null_string=p.null_string,
                     newline=NEWLINES[p.newline])

    # ----------------------------------------------------------------- Redshift: COPY FROM S3

    def _staging(self):
        out = self.config.output
        if out.s3_staging is None or not out.iam_role:
            raise WarehouseError(f"{self.config.name}: {self.dialect.label} loads from S3 only (COPY FROM S3): set "
                                 "out.s3_staging.bucket (for manifests and checked rows) and out.iam_role (the role "
                                 "its COPY assumes)")
        return out.s3_staging

    @contextlib.contextmanager
    def _staged_files(self) -> Iterator[list[str]]:
        """The S3 files an attempt stages; deleted when its transaction has ended, committed or not."""
        files: list[str] = []
        try:
            yield files
        finally:
            if files:
                staging.delete(self.s3, files)

    @contextlib.contextmanager
    def _named_refusals(self, conn: psycopg.Connection) -> Iterator[None]:
        """A refused staged part, after its transaction rolled back: which row, from the target's load errors."""
        try:
            yield
        except _StagedRefusal as refusal:
            errors = self.dialect.load_errors(conn)
            conn.rollback()
            first = errors[0] if errors else None
            line = first.get("line_number") if first else None
            if first and isinstance(line, int) and 0 < line <= len(refusal.line_numbers):
                raise RowRefused(RecordError(
                    refusal.source, refusal.line_numbers[line - 1],
                    f"the warehouse refused the row: {first.get('error_message')}",
                    column=first.get("column_name") or None)) from None
            raise WarehouseError(f"{refusal.source}: the warehouse refused a staged part of it ({refusal})") from None

    def _redshift_format(self, obj):
        """How Redshift's COPY must read the object itself, or None where it would read it otherwise."""
        from pipeline.warehouse.dialects.base import CopyFormat

        p = self.native
        assert p is not None
        if p.charset.replace("-", "").upper() not in ("UTF8",) or len(p.delimiter) != 1 or p.newline != "LF":
            return None
        from pipeline.formats.decode import compression as compression_of

        head = self.store.blob(obj).read(0, 10) if obj.size else b""
        kind = compression_of(head)
        compression = None if kind is None else kind.upper()  # COPY's GZIP, BZIP2 and ZSTD
        if head.startswith(b"\xef\xbb\xbf"):
            return None  # a BOM would be part of the first field
        return CopyFormat(csv=True, delimiter=p.delimiter, quote=p.quote or '"', null_as=p.null_string or "",
                          ignore_header=p.skip_header_lines, compression=compression)

    def _copy_from_s3(self, cur: psycopg.Cursor, obj, table: sql.Identifier, progress: Progress) -> ObjectResult:
        """The source object itself, through a one-entry manifest (a FROM path alone is a key prefix)."""
        from pipeline.warehouse.dialects.redshift import Redshift

        fmt = self._redshift_format(obj)
        if fmt is None:
            raise FastPathRefused("Redshift's COPY would not read this object's format as Embulk does")
        # Redshift reads the object itself: read it through the guard first, as the STDIN fast path streams it.
        from pipeline.formats.decode import split_header
        from pipeline.formats.strict import NotPlain

        try:
            _, body = split_header(self._object_bytes(obj, progress), fmt.ignore_header)
            for _ in self._plain(body):
                pass
        except NotPlain as error:
            raise FastPathRefused(str(error)) from None
        staging_config = self._staging()
        manifest = staging.put(self.s3, staging_config,
                               f"{self.config.name}/{self.run_id}/{uuid.uuid4().hex}.manifest",
                               Redshift.manifest([self._source(obj)]))
        try:
            cur.execute(self.dialect.copy_from_s3(table, self.target.column_names, manifest,
                                                  self.config.output.iam_role, fmt, manifest=True))
        except psycopg.errors.InternalError as error:
            raise FastPathRefused(_first_line(error)) from None
        finally:
            staging.delete(self.s3, [manifest])
        rows = self.dialect.last_copy_count(cur)
        return ObjectResult(obj.key, obj.etag, rows=rows, parsed=rows, bytes=obj.size)

    # ----------------------------------------------------------------- the checked path

    def _copy_checked(self, cur: psycopg.Cursor, obj, table: sql.Identifier, rejected_table: sql.Identifier,
                      progress: Progress, refused: dict[int, RecordError], files: list[str] | None, *,
                      upsert: Sequence[sql.Composable] = (), deferred: list[RecordError] | None = None,
                      sequence: bool = False, fitter: Fitter | None = None) -> ObjectResult:
        """Parse and validate every record ourselves; good rows to the table, bad ones rejected or fatal.

        ``fitter`` rejects the rows the table's column types refuse, so they cost no reload; rows the
        warehouse refused in an earlier attempt (``refused``, by line) are rejected here too. With
        ``sequence`` each row carries its line number, the staged order a merge keeps.
        """
        from pipeline.filters import s3_identity
        from pipeline.records import RowPath

        source = self._source(obj)
        result = ObjectResult(obj.key, obj.etag, path="checked")
        names = self.target.column_names + ([SEQUENCE_COLUMN] if sequence else [])
        write = self._row_writer(cur, table, names, source, upsert, files)
        lines: list[str] = []
        line_numbers = array("q")
        size = 0
        rejects: list[RecordError] = []
        raw_bytes = 0
        limit = CHUNK_LINES_BYTES if self.dialect.capabilities.copy_from_stdin else STAGED_PART_BYTES
        stop_on_invalid = self.reader.stop_on_invalid_record

        def flush_rows() -> None:
            nonlocal size
            result.rows += write(lines, line_numbers)
            lines.clear()
            del line_numbers[:]
            size = 0

        def reject(error: RecordError) -> None:
            if stop_on_invalid:
                raise error
            result.rejected += 1
            if deferred is not None:
                deferred.append(error)
                return
            rejects.append(error)
            if len(rejects) >= REJECT_BATCH:
                self.target.write_rejects(cur, rejects, rejected_table)
                rejects.clear()

        def counted(nbytes: int) -> None:
            nonlocal raw_bytes
            raw_bytes += nbytes

        path = RowPath(self.reader.columns, self.filters, fitter=fitter, sequence=sequence)
        identity = partial(s3_identity, source, obj.etag)
        for item in self.reader.records(self._blob(obj, progress, counted)):
            result.parsed += 1
            if isinstance(item, RecordError):
                reject(item)
                continue
            if item.line in refused:
                result.rejected += 1
                (deferred if deferred is not None else rejects).append(refused[item.line])
                continue
            encoded = path.encode(item, source, identity)
            if isinstance(encoded, RecordError):
                reject(encoded)
                continue
            line = encoded[1]
            lines.append(line)
            line_numbers.append(item.line)
            size += len(line)
            if size >= limit:
                flush_rows()
        flush_rows()
        self.target.write_rejects(cur, rejects, rejected_table)
        result.bytes = raw_bytes
        if fitter is not None and fitter.truncated:
            log.info("%s: %s over-long value(s) cut to their column's length (out.truncate_columns)", source,
                     f"{fitter.truncated:,}")
        return result

    def _row_writer(self, cur: psycopg.Cursor, table: sql.Identifier, names: list[str], source: str,
                    upsert: Sequence[sql.Composable], files: list[str] | None
                    ) -> Callable[[list[str], array], int]:
        """How checked rows reach ``table``: COPY FROM STDIN, or staged to S3 and COPY FROM S3.

        A row the warehouse refuses raises RowRefused naming its line (and column, where it says).
        """
        if self.dialect.capabilities.copy_from_stdin:
            statement = copy_text_statement(table, names, upsert)

            def copy_stdin(lines: list[str], line_numbers: array) -> int:
                try:
                    return copy_lines(cur, statement, lines)
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
                    raise RowRefused(_locate(error, source, line_numbers)) from None

            return copy_stdin
        staging_config = self._staging()
        parts = 0

        def copy_staged(lines: list[str], line_numbers: array) -> int:
            nonlocal parts
            if not lines:
                return 0
            parts += 1
            uri = staging.put(self.s3, staging_config,
                              f"{self.config.name}/{self.run_id}/{uuid.uuid4().hex}-{parts:06d}.csv.gz",
                              staging.staged_csv(lines))
            if files is not None:
                files.append(uri)
            try:
                cur.execute(self.dialect.copy_from_s3(table, names, uri, self.config.output.iam_role,
                                                      staging.STAGED_FORMAT))
            except psycopg.errors.InternalError as error:
                raise _StagedRefusal(error, array("q", line_numbers), source) from None
            return self.dialect.last_copy_count(cur)

        return copy_staged


class _StagedRefusal(Exception):
    """Redshift refused a staged part; its rows in sys_load_error_detail can be read after the rollback."""

    def __init__(self, error: psycopg.Error, line_numbers: array, source: str):
        super().__init__(_first_line(error))
        self.line_numbers = line_numbers
        self.source = source


_END_OF_DATA = re.compile(rb"(?:\A|[\r\n])\\\.(?:\r|\n|\Z)")


def _refuse_end_of_data_marker(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """PostgreSQL before 18 ends COPY CSV at an unquoted line holding only ``\\.``: never send one.

    Such a line would silently truncate the object, so it sends the object down the checked path
    (which escapes it) instead. A chunk is checked together with the tail of the one before it.
    """
    tail = b""
    for chunk in chunks:
        if b"\\." in tail + chunk[:4] or b"\\." in chunk:
            window = tail + chunk
            if _END_OF_DATA.search(window):
                raise ValueError("a line holding only \\. (COPY's end-of-data marker)")
        tail = chunk[-3:]
        yield chunk


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _locate(error: psycopg.Error, source: str, line_numbers: array) -> RecordError:
    """Turn a COPY error's row number into the object's line number."""
    context = getattr(error.diag, "context", None) or ""
    match = re.search(r"line (\d+)", context)
    line = None
    if match and 0 < int(match.group(1)) <= len(line_numbers):
        line = line_numbers[int(match.group(1)) - 1]
    detail = getattr(error.diag, "message_detail", None)
    message = _first_line(error) + (f" ({detail})" if detail else "")
    column = re.search(r"column (\w+)", context)
    return RecordError(source, line, f"the warehouse refused the row: {message}",
                       column=column.group(1) if column else None)
