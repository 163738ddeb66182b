"""S3 objects into a warehouse table, exactly once per object version.

Each object is read as a stream. When the server can parse the CSV itself (the usual case) its
bytes go straight into ``COPY ... (FORMAT csv)``: the fast path. If the server refuses any of it,
that object's work is rolled back and it is read again through our own reader, which names the
bad line and column and either stops or sends the record to ``<table>_rejected``, as the config
asks. A ledger row (pipeline, key, ETag) commits with the rows it accounts for.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from pipeline.config import CsvParserConfig, PipelineConfig, S3InputConfig
from pipeline.errors import PipelineError, RecordError, SourceError, WarehouseError
from pipeline.progress import Display, Lines, Progress
from pipeline.warehouse import state
from pipeline.warehouse.connection import describe_target
from pipeline.warehouse.copy import copy_bytes, copy_csv_statement, copy_lines, copy_text_statement, text_line
from pipeline.warehouse.target import REJECTED_COLUMNS, Target

log = logging.getLogger(__name__)

CHUNK_LINES_BYTES = 1 << 20  # the slow path sends validated rows in COPYs of about this size
REJECT_BATCH = 1000


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


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f} MB"


class BatchLoad:
    """One run of an S3 pipeline: plan what is new, load it in the configured mode."""

    def __init__(self, config: PipelineConfig, *, s3_client=None, emit: Callable[[str], None] | None = None,
                 display: Display | None = None):
        if not isinstance(config.input, S3InputConfig):
            raise PipelineError(f"{config.name}: in.type is {config.input.type}, not s3")
        if config.input.parser is None:
            raise PipelineError(f"{config.name}: in.parser is missing; run `pipeline guess` first")
        self.config = config
        self.input: S3InputConfig = config.input
        self.parser: CsvParserConfig = config.input.parser
        self.emit = emit or log.info
        # Where progress goes: a bar on a terminal, Dagster's run log, or (default) a line every 5 s via emit.
        self.display = display or Lines(self.emit, 5.0)
        self._s3 = s3_client
        from pipeline.filters import build_filters, output_columns

        self.filters = build_filters(list(config.filters))
        self.target = Target(config.output, output_columns(self.parser.columns, self.filters), config.name)
        self.run_id = uuid.uuid4().hex[:8]
        self.fast_path = self._fast_path_possible()

    # ----------------------------------------------------------------- public

    @property
    def s3(self):
        if self._s3 is None:
            from pipeline.sources.aws import client

            self._s3 = client("s3", **self.input.aws.client_kwargs())
        return self._s3

    def list(self) -> list:
        from pipeline.sources.s3 import list_objects

        return list(list_objects(self.s3, self.input.bucket, self.input.path_prefix,
                                 pattern=self.input.path_match_pattern,
                                 limit=self.input.total_file_count_limit))

    def _named(self, key: str):
        from pipeline.sources.s3 import S3Object, describe

        pattern = self.input.path_match_pattern
        if not key.startswith(self.input.path_prefix) or (pattern and not re.search(pattern, key)):
            raise SourceError(f"s3://{self.input.bucket}/{key} is not under {self.input.uri} "
                              "or does not match in.path_match_pattern")
        return describe(self.s3, S3Object(self.input.bucket, key, 0, "", datetime.fromtimestamp(0, UTC)))

    def run(self, keys: Sequence[str] | None = None) -> RunSummary:
        """Load every object that is new or changed (or only ``keys``), in the configured mode."""
        started = time.monotonic()
        # Named keys cost one HeadObject each: a one-object run (a Dagster partition) must not list the prefix.
        objects = self.list() if keys is None else [self._named(key) for key in dict.fromkeys(keys)]
        with self.target.connect(autocommit=True) as conn:
            self.target.prepare(conn)
            named = None if keys is None or self.config.output.mode in ("replace", "truncate_insert") \
                else [o.key for o in objects]
            loaded = state.loaded_objects(conn, self.config.output.state, self.config.name, named)
        mode = self.config.output.mode
        summary = RunSummary(self.config.name, mode)
        if mode in ("replace", "truncate_insert"):
            # These modes rebuild the table from every object, so any change means a full reload.
            current = {(o.key, o.etag) for o in objects}
            previous = {(k, e) for k, etags in loaded.items() for e in etags}
            todo = objects if current != previous or keys is not None else []
        else:
            todo = [o for o in objects if o.etag not in loaded.get(o.key, ())]
        summary.up_to_date = len(objects) - len(todo)
        if todo:
            self.emit(f"{self.config.name}: {len(todo)} object(s) to load, {_mb(sum(o.size for o in todo))}, "
                      f"mode {mode}, into {self.config.output.qualified_table} at "
                      f"{describe_target(self.config.output.conninfo)}")
            progress = Progress(self.config.name, self.display, total_objects=len(todo),
                                total_bytes=sum(o.size for o in todo))
            try:
                if mode in ("insert_direct", "append", "merge"):
                    summary.results = self._each_in_own_transaction(todo, progress)
                else:
                    summary.results = self._staged(todo, progress, mode)
            finally:
                progress.close()
        summary.seconds = time.monotonic() - started
        return summary

    # ----------------------------------------------------------------- modes

    def _each_in_own_transaction(self, objects: list, progress: Progress) -> list[ObjectResult]:
        merge = self.config.output.mode == "merge"
        keys: list[str] = []
        if merge:
            with self.target.connect(autocommit=True) as conn:
                keys = self.target.merge_keys(conn)

        def load_one(obj) -> ObjectResult:
            with self.target.connect() as conn, conn.cursor() as cur:
                started = time.monotonic()
                if not state.claim_object(cur, self.config.output.state, self.config.name, obj.key, obj.etag):
                    conn.rollback()
                    return ObjectResult(obj.key, obj.etag, skipped=True)
                if merge:
                    result = self._merge_object(cur, obj, keys, progress)
                else:
                    result = self._copy_object(cur, obj, self.target.ident, self.target.rejected_ident, progress)
                state.complete_object(cur, self.config.output.state, self.config.name, obj.key, obj.etag,
                                      rows=result.rows, rejected=result.rejected, nbytes=result.bytes)
                conn.commit()
                result.seconds = time.monotonic() - started
                progress.add(objects=1, rows=result.rows)
                self._log_object(result)
                return result

        return self._parallel(objects, load_one)

    def _merge_object(self, cur: psycopg.Cursor, obj, keys: list[str], progress: Progress) -> ObjectResult:
        stage = sql.Identifier(self.config.output.schema, f"pl_merge_{self.run_id}_{uuid.uuid4().hex[:8]}")
        columns = self.target.column_names
        # A sequence column keeps file order, so the last row of a key within one object wins.
        cur.execute(sql.SQL("CREATE TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
            stage, sql.SQL(", ").join(map(sql.Identifier, columns)), self.target.ident))
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN pl_seq bigserial").format(stage))
        result = self._copy_object(cur, obj, stage, self.target.rejected_ident, progress)
        others = [c for c in columns if c not in keys]
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        key_list = sql.SQL(", ").join(map(sql.Identifier, keys))
        update = (sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others)) if others \
            else sql.SQL("DO NOTHING")
        cur.execute(sql.SQL(
            "INSERT INTO {target} ({cols}) SELECT DISTINCT ON ({keys}) {cols} FROM {stage} "
            "ORDER BY {keys}, pl_seq DESC ON CONFLICT ({keys}) {update}").format(
            target=self.target.ident, cols=cols, keys=key_list, stage=stage, update=update))
        cur.execute(sql.SQL("DROP TABLE {}").format(stage))
        return result

    def _staged(self, objects: list, progress: Progress, mode: str) -> list[ObjectResult]:
        """insert, truncate_insert and replace: load everything aside, then publish in one transaction."""
        out = self.config.output
        name = f"{out.table[:40]}_pl_{'new' if mode == 'replace' else 'stage'}_{self.run_id}"
        stage = sql.Identifier(out.schema, name)
        stage_rejected = sql.Identifier(out.schema, f"{name}_rej")
        with self.target.connect(autocommit=True) as conn, conn.cursor() as cur:
            self._drop_leftovers(cur)
            if mode == "replace":
                statements = self.target.create_statements(table=name, if_not_exists=False)
            else:
                statements = [sql.SQL("CREATE TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                    stage, sql.SQL(", ").join(map(sql.Identifier, self.target.column_names)), self.target.ident)]
            with conn.transaction():
                for statement in statements:
                    cur.execute(statement)
                cur.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {} WITH NO DATA").format(
                    stage_rejected, self.target.rejected_ident))
        try:
            def load_one(obj) -> ObjectResult:
                with self.target.connect() as conn, conn.cursor() as cur:
                    started = time.monotonic()
                    result = self._copy_object(cur, obj, stage, stage_rejected, progress)
                    conn.commit()
                    result.seconds = time.monotonic() - started
                    progress.add(objects=1, rows=result.rows)
                    self._log_object(result)
                    return result

            results = self._parallel(objects, load_one)
            with self.target.connect() as conn, conn.cursor() as cur:
                cols = sql.SQL(", ").join(map(sql.Identifier, self.target.column_names))
                if mode == "truncate_insert":
                    cur.execute(sql.SQL("TRUNCATE {}").format(self.target.ident))
                if mode == "replace":
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.target.ident))
                    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(stage, sql.Identifier(out.table)))
                else:
                    cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                        self.target.ident, cols, cols, stage))
                    cur.execute(sql.SQL("DROP TABLE {}").format(stage))
                # Name the columns: the stage (CREATE TABLE AS) has no DEFAULT now() for rejected_at.
                rejected_cols = sql.SQL(", ").join(map(sql.Identifier, REJECTED_COLUMNS))
                cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                    self.target.rejected_ident, rejected_cols, rejected_cols, stage_rejected))
                cur.execute(sql.SQL("DROP TABLE {}").format(stage_rejected))
                if mode in ("replace", "truncate_insert"):
                    state.forget_pipeline(cur, out.state, self.config.name)
                for result in results:
                    if not state.claim_object(cur, out.state, self.config.name, result.key, result.etag):
                        raise WarehouseError(f"s3://{self.input.bucket}/{result.key} (ETag {result.etag}) was "
                                             "loaded by another run meanwhile; nothing from this run was committed")
                    state.complete_object(cur, out.state, self.config.name, result.key, result.etag,
                                          rows=result.rows, rejected=result.rejected, nbytes=result.bytes)
                conn.commit()
            return results
        except BaseException:
            self._drop_quietly([stage, stage_rejected])
            raise

    def _drop_leftovers(self, cur: psycopg.Cursor) -> None:
        """Staging tables of an interrupted run of this table hold nothing committed: drop them."""
        out = self.config.output
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                    "AND (table_name LIKE %s OR table_name LIKE %s)",
                    (out.schema, f"{out.table[:40]}\\_pl\\_stage\\_%", f"{out.table[:40]}\\_pl\\_new\\_%"))
        for (name,) in cur.fetchall():
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
                    f"the warehouse connection was lost while loading s3://{self.input.bucket}/{obj.key} "
                    f"({_first_line(error)}); nothing of this object was committed, a re-run loads it") from None

        return guarded

    def _log_object(self, result: ObjectResult) -> None:
        self.emit(f"loaded s3://{self.input.bucket}/{result.key}: {result.rows:,} rows, "
                  f"{result.rejected:,} rejected, {_mb(result.bytes)} in {result.seconds:.2f} s")

    # ----------------------------------------------------------------- one object

    def _fast_path_possible(self) -> bool:
        from pipeline.formats.types import postgres_parses_natively

        p = self.parser
        return (
            not self.config.filters
            and p.quote is not None
            # With a backslash escape, PostgreSQL drops a doubled quote inside quotes where Embulk keeps one.
            and p.escape in (None, p.quote)
            and p.comment_line_marker is None
            and not p.trim_if_not_quoted
            and not p.allow_extra_columns
            and not p.allow_optional_columns
            and all(postgres_parses_natively(c) for c in p.columns)
        )

    def _copy_object(self, cur: psycopg.Cursor, obj, table: sql.Identifier, rejected: sql.Identifier,
                     progress: Progress) -> ObjectResult:
        if self.fast_path:
            try:
                with cur.connection.transaction():
                    rows, nbytes = self._copy_fast(cur, obj, table, progress)
                return ObjectResult(obj.key, obj.etag, rows=rows, parsed=rows, bytes=nbytes)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError, UnicodeError, ValueError) as error:
                log.info("s3://%s/%s: the server refused the fast path (%s); reading it with row checks",
                         self.input.bucket, obj.key, _first_line(error))
        return self._copy_checked(cur, obj, table, rejected, progress)

    def _object_bytes(self, obj, progress: Progress) -> Iterator[bytes]:
        from pipeline.formats.decode import decompress
        from pipeline.sources.prefetch import prefetch
        from pipeline.sources.s3 import read_object

        def counted(chunks: Iterable[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                progress.read(len(chunk))
                yield chunk

        source = f"s3://{self.input.bucket}/{obj.key}"

        def decompressed() -> Iterator[bytes]:
            try:
                yield from decompress(prefetch(counted(read_object(self.s3, obj))))
            except ValueError as error:
                raise SourceError(f"{source}: cannot decompress: {error}") from None

        return decompressed()

    def _copy_fast(self, cur: psycopg.Cursor, obj, table: sql.Identifier, progress: Progress) -> tuple[int, int]:
        from pipeline.formats.decode import split_header, to_utf8

        p = self.parser
        _, body = split_header(to_utf8(self._object_bytes(obj, progress), p.charset), p.skip_header_lines)
        body = _refuse_end_of_data_marker(body)
        statement = copy_csv_statement(table, self.target.column_names, delimiter=p.delimiter,
                                       quote=p.quote or '"', escape=p.escape, null_string=p.null_string)
        return copy_bytes(cur, statement, body)

    def _copy_checked(self, cur: psycopg.Cursor, obj, table: sql.Identifier, rejected_table: sql.Identifier,
                      progress: Progress) -> ObjectResult:
        """Parse and validate every record ourselves; good rows by COPY, bad ones rejected or fatal."""
        from pipeline.filters import projector, s3_identity
        from pipeline.formats.csv import read_records
        from pipeline.formats.types import normalizer

        p = self.parser
        source = f"s3://{self.input.bucket}/{obj.key}"
        result = ObjectResult(obj.key, obj.etag, path="checked")
        statement = copy_text_statement(table, self.target.column_names)
        columns = p.columns
        column_names = [c.name for c in columns]
        converters = [normalizer(c) for c in columns]
        lines: list[str] = []
        line_numbers = array("q")
        size = 0
        rejects: list[RecordError] = []
        raw_bytes = 0

        def flush_rows() -> None:
            nonlocal size
            try:
                with cur.connection.transaction():
                    result.rows += copy_lines(cur, statement, lines)
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as error:
                raise _locate(error, source, line_numbers) from None
            lines.clear()
            del line_numbers[:]
            size = 0

        def reject(error: RecordError) -> None:
            if p.stop_on_invalid_record:
                raise error
            rejects.append(error)
            result.rejected += 1
            if len(rejects) >= REJECT_BATCH:
                self.target.write_rejects(cur, rejects, rejected_table)
                rejects.clear()

        def counted(chunks: Iterable[bytes]) -> Iterator[bytes]:
            nonlocal raw_bytes
            for chunk in chunks:
                raw_bytes += len(chunk)
                yield chunk

        project = projector(columns, self.filters) if self.filters else None
        for item in read_records(counted(self._object_bytes(obj, progress)), p, source):
            result.parsed += 1
            if isinstance(item, RecordError):
                reject(item)
                continue
            values: list[str | None] = []
            bad = None
            for column, convert, value in zip(columns, converters, item.values, strict=True):
                try:
                    values.append(None if value is None else convert(value))
                except ValueError as error:
                    bad = RecordError(source, item.line, str(error), column=column.name, value=value, raw=item.raw)
                    break
            if bad is not None:
                reject(bad)
                continue
            if project is not None:
                values = project(dict(zip(column_names, values, strict=True)),
                                 s3_identity(source, obj.etag, item.line))
            line = text_line(values)
            if "\x00" in line:
                reject(RecordError(source, item.line, "NUL byte in the record", raw=item.raw))
                continue
            lines.append(line)
            line_numbers.append(item.line)
            size += len(line)
            if size >= CHUNK_LINES_BYTES:
                flush_rows()
        flush_rows()
        self.target.write_rejects(cur, rejects, rejected_table)
        result.bytes = raw_bytes
        return result


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


def _locate(error: psycopg.Error, source: str, line_numbers: array) -> PipelineError:
    """Turn a COPY error's row number into the object's line number."""
    import re

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
