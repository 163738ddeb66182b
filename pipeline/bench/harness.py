"""What every measurement needs: a stack to run on, unique names, fresh tables and a clean exit.

A benchmark either starts its own local stack (fresh state directory, free ports) and stops it at
the end, or uses a running one (``--use-running``); then everything it creates carries the run's
id (``bench_<id>_...`` tables, ``bench-<id>/`` prefixes, streams and a bucket) and is removed
afterwards, so the stack is left as it was found.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

SEED = 20240601  # the same data every run, so figures from two runs compare
BOOK_ORDER_COLUMNS_SQL = ("order_id text{key}, user_id bigint, book_id bigint, book_name text, "
                          "order_cnt bigint, order_amt bigint")
_SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class BenchError(PipelineError):
    """A measurement could not be made (a load failed, rows went missing)."""


@dataclass(frozen=True)
class Sizes:
    """How much data each measurement moves."""

    rows: int  # the bulk load
    small_rows: int  # the load whose time is mostly start-up (Embulk's tutorial size)
    repeats: int  # rounds of each timed bulk load, interleaved; the best is reported
    small_repeats: int
    memory_mb: tuple[int, ...]
    parallel_objects: int
    parallel_rows: int  # spread over ``parallel_objects``
    parallel_threads: tuple[int, ...]
    sensor_objects: tuple[int, ...]
    sensor_new: int
    stream_records: int
    latency_seconds: float
    latency_rate: int  # records per second put while latency is measured
    sensor_latency_seconds: float  # the same in sensor mode, with the Dagster daemon
    sensor_latency_rate: int
    refusal_records: int = 100_000  # the batch (an object, a Kinesis backlog) with one refused record

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# Within 10 minutes on 2 cores. moto sets two limits: it takes tiny objects at about 200 a second
# (100,000 of them add about 8 minutes: `--sensor-objects 100,10000,100000`), and each Kinesis put
# copies its shard's keys, so puts slow down as the backlog grows (100,000 records take over a
# minute; `--stream-records 1000000` had put 531,000 records after 41 minutes on 2 busy cores).
DEFAULT_SIZES = Sizes(rows=1_000_000, small_rows=10_000, repeats=3, small_repeats=5,
                      memory_mb=(10, 100, 1000), parallel_objects=8, parallel_rows=500_000,
                      parallel_threads=(1, 2, 4), sensor_objects=(100, 1_000, 10_000), sensor_new=10,
                      stream_records=1_000_000, latency_seconds=20.0, latency_rate=100,
                      sensor_latency_seconds=60.0, sensor_latency_rate=20)
QUICK_SIZES = Sizes(rows=100_000, small_rows=10_000, repeats=1, small_repeats=3,
                    memory_mb=(10, 50), parallel_objects=8, parallel_rows=40_000,
                    parallel_threads=(1, 2, 4), sensor_objects=(100, 2_000), sensor_new=10,
                    stream_records=20_000, latency_seconds=5.0, latency_rate=100,
                    sensor_latency_seconds=15.0, sensor_latency_rate=10, refusal_records=10_000)


# --------------------------------------------------------------------------- the stack


@contextlib.contextmanager
def stack_environment(use_running: bool, emit: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """The environment of a local stack: a new one (stopped afterwards) or the running one."""
    if use_running:
        yield running_stack_environment()
        return
    from pipeline.local.stack import LocalStack, free_port

    # The postgres user must reach the data directory: /tmp, not a mode-700 temporary directory.
    state_dir = Path(tempfile.mkdtemp(prefix="pipeline-bench-stack-", dir="/tmp" if Path("/tmp").is_dir() else None))
    state_dir.chmod(0o755)
    local = LocalStack(state_dir, free_port(), free_port(), standin_port=free_port(), dotenv_path=None,
                       notifications=False)
    started = time.monotonic()
    try:
        local.up()
        emit(f"started a local stack in {state_dir} (PostgreSQL :{local.pg_port}, moto :{local.aws_port}) "
             f"in {time.monotonic() - started:.1f} s")
        yield local.env()
    finally:
        try:
            local.down()
        finally:
            left = list(local.pids().values())
            if not left:
                shutil.rmtree(state_dir, ignore_errors=True)
            else:
                emit(f"warning: the bench's stack in {state_dir} left processes {left} running")


def running_stack_environment() -> dict[str, str]:
    """The running stack's variables: from the environment (``eval "$(pipeline local env)"``) or its state dir."""
    needed = ("AWS_ENDPOINT_URL", "HOLOGRES_URL", "REDSHIFT_URL")
    if any(os.environ.get(name) for name in needed):
        missing = [name for name in needed if not os.environ.get(name)]
        if missing:
            raise PipelineError(f"--use-running: {', '.join(missing)} not set; "
                                "run `eval \"$(pipeline local env)\"` first")
        return dict(os.environ)
    from pipeline.local.stack import LocalStack

    local = LocalStack(dotenv_path=None)
    if not all(service.answers for service in local.status()):
        raise PipelineError(f"--use-running: no running local stack answers in {local.state_dir} and "
                            "HOLOGRES_URL / AWS_ENDPOINT_URL are not set; run `pipeline local up` "
                            "(or drop --use-running to let the bench start its own)")
    return {**os.environ, **local.env()}


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` holds ``values`` inside the block, so configs and subprocesses find the stack."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- the bench


class Bench:
    """One benchmark run on one stack: names, clients, tables, configs, and what to remove after."""

    def __init__(self, env: Mapping[str, str], sizes: Sizes, workdir: Path, emit: Callable[[str], None]):
        from pipeline.local.stack import BUCKET, KMS_ALIAS

        self.env = dict(env)
        self.sizes = sizes
        self.workdir = workdir
        self.emit = emit
        self.run_id = uuid.uuid4().hex[:6]
        self.bucket = self.env.get("PIPELINE_BUCKET") or BUCKET
        self.kms_key = self.env.get("PIPELINE_KMS_KEY") or KMS_ALIAS
        self.hologres_url = self.env["HOLOGRES_URL"]
        self.redshift_url = self.env["REDSHIFT_URL"]
        # Plain PostgreSQL as a target (out.type: postgresql): the stack's postgres_target database.
        self.postgresql_url = self.env.get("POSTGRESQL_URL") or self._database_url("postgres_target")
        self._cleanups: list[tuple[str, Callable[[], object]]] = []
        self._checkpoint_refused = False

    # ----------------------------------------------------------------- names and clients

    def direct_url(self, url: str) -> str:
        """``url``'s database on PostgreSQL itself, past the stand-in's rules (the stack's DAGSTER_PG_* point there)."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@" if credentials else ""
        netloc += f"{self.env['DAGSTER_PG_HOST']}:{self.env['DAGSTER_PG_PORT']}"
        return urlunsplit(parts._replace(netloc=netloc))

    def _database_url(self, database: str) -> str:
        from urllib.parse import urlsplit, urlunsplit

        return urlunsplit(urlsplit(self.direct_url(self.hologres_url))._replace(path=f"/{database}"))

    def name(self, what: str) -> str:
        name = f"bench_{self.run_id}_{what}"
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a plain lower-case SQL name")
        return name

    def prefix(self, what: str) -> str:
        return f"bench-{self.run_id}/{what}/"

    @cached_property
    def s3(self) -> Any:
        from pipeline.sources.aws import client

        return client("s3")

    @cached_property
    def kinesis(self) -> Any:
        from pipeline.sources.aws import client

        return client("kinesis")

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    # ----------------------------------------------------------------- clean-up

    def on_cleanup(self, what: str, action: Callable[[], object]) -> None:
        self._cleanups.append((what, action))

    def cleanup(self) -> None:
        """Undo what the run created, newest first; a failure is reported and the rest still runs."""
        while self._cleanups:
            what, action = self._cleanups.pop()
            try:
                action()
            except Exception as error:  # keep cleaning up; say what was left behind
                self.emit(f"warning: could not remove {what}: {error}")

    def drop_on_cleanup(self, conninfo: str, schema: str, *tables: str) -> None:
        def drop() -> None:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for table in tables:
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table)))

        self.on_cleanup(f"tables {', '.join(tables)}", drop)

    def forget_state_on_cleanup(self, conninfo: str, schema: str) -> None:
        """Remove the ledger rows and shard checkpoints of this run's pipelines (all named bench_<id>_...)."""
        from pipeline.warehouse.dialects import CHECKPOINT_TABLE, LEDGER_TABLE
        from pipeline.warehouse.dialects.base import PART_TABLE, WATCH_TABLE

        def forget() -> None:
            pattern = f"bench\\_{self.run_id}\\_%"
            with psycopg.connect(conninfo, autocommit=True) as conn:
                for table in (LEDGER_TABLE, CHECKPOINT_TABLE, WATCH_TABLE, PART_TABLE):
                    exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()
                    if exists and exists[0]:
                        conn.execute(sql.SQL("DELETE FROM {} WHERE pipeline LIKE %s").format(
                            sql.Identifier(schema, table)), (pattern,))

        self.on_cleanup(f"ledger and checkpoint rows in {schema}", forget)

    def delete_prefix(self, prefix: str, bucket: str | None = None) -> int:
        bucket = bucket or self.bucket
        deleted = 0
        while True:
            page = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1000)
            keys = [{"Key": entry["Key"]} for entry in page.get("Contents", ())]
            if not keys:
                return deleted
            self.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)

    # ----------------------------------------------------------------- tables

    def recreate_book_order(self, table: str, *, primary_key: bool = True, conninfo: str | None = None) -> None:
        """A fresh, empty book_order table, then a CHECKPOINT so no load pays for the previous one's writes."""
        columns = BOOK_ORDER_COLUMNS_SQL.format(key=" PRIMARY KEY" if primary_key else "")
        conninfo = conninfo or self.hologres_url
        with psycopg.connect(conninfo, autocommit=True) as conn:
            ident = sql.Identifier("public", table)
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
            conn.execute(sql.SQL("CREATE TABLE {} (" + columns + ")").format(ident))
        self.checkpoint(conninfo)

    def checkpoint(self, conninfo: str) -> None:
        if self._checkpoint_refused:
            return
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            self._checkpoint_refused = True
            self.emit("note: CHECKPOINT refused (not a superuser): loads may pay for each other's writes")

    def count(self, conninfo: str, schema: str, table: str) -> int:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()
            return int(row[0]) if row else 0

    def expect_rows(self, conninfo: str, schema: str, table: str, rows: int, what: str) -> None:
        found = self.count(conninfo, schema, table)
        if found != rows:
            raise BenchError(f"{what}: {schema}.{table} holds {found:,} rows, expected {rows:,}")

    # ----------------------------------------------------------------- configs

    def book_order_config(self, name: str, prefix: str, table: str, *, threads: int = 1,
                          primary_key: bool = True, bucket: str | None = None,
                          directory: Path | None = None, target: str = "hologres",
                          output_tasks: int | None = None, notifications: dict[str, Any] | None = None) -> Path:
        """The shipped book_order.yml, pointed at ``prefix`` and ``public.<table>`` (on Redshift: through S3).

        ``output_tasks`` sets exec.min_output_tasks; unset, the config's own (none: the automatic choice).
        ``notifications`` sets in.notifications (event-driven loads).
        """
        document = _reference_config("book_order.yml")
        if output_tasks is not None:
            document.setdefault("exec", {})["min_output_tasks"] = output_tasks
        if target == "postgresql":
            document["out"] = {**{k: v for k, v in document["out"].items() if k != "table_properties"},
                               "type": "postgresql", "url": self.postgresql_url}
        if target == "redshift":
            stream = _reference_config("sensor_data.yml")["out"]
            document["out"] = {**{k: v for k, v in document["out"].items() if k != "table_properties"},
                               "type": "redshift", "url": stream["url"], "s3_staging": stream["s3_staging"],
                               "iam_role": stream["iam_role"]}
        document["name"] = name
        document["in"]["bucket"] = bucket or self.bucket
        document["in"]["path_prefix"] = prefix
        document["in"]["path_match_pattern"] = r"\.csv$"
        if notifications is not None:
            document["in"]["notifications"] = notifications
        document.setdefault("exec", {})["max_threads"] = threads
        document["out"]["table"] = f"public.{table}"
        if not primary_key:
            document["out"].pop("primary_key", None)
        return self._write_config(name, document, directory)

    def sensor_data_config(self, name: str, stream: str, table: str, *, extra_columns: tuple[dict, ...] = (),
                           directory: Path | None = None, **exec_options: Any) -> Path:
        """The shipped sensor_data.yml, pointed at ``stream`` and ``sensor_schema.<table>``."""
        document = _reference_config("sensor_data.yml")
        document["name"] = name
        document["in"]["stream"] = stream
        document["in"]["parser"]["columns"].extend(extra_columns)
        document.setdefault("exec", {}).update(exec_options)
        document["out"]["table"] = f"sensor_schema.{table}"
        return self._write_config(name, document, directory)

    def _write_config(self, name: str, document: dict[str, Any], directory: Path | None = None) -> Path:
        directory = directory or self.workdir / "configs"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.yml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path


# What the bench measures with: the reference pipelines, and the Dagster files the sensor-mode daemon runs.
CHECKOUT_FILES = ("pipelines/book_order.yml", "pipelines/sensor_data.yml", "workspace.yaml", "dagster.yaml")


def checkout() -> Path:
    """The project checkout the bench runs in: the package's own (an editable install), or the working directory.

    The bench is a checkout tool: it measures the shipped reference configs with the checkout's
    dagster.yaml and workspace.yaml, which a wheel does not hold.
    """
    from pipeline.local.stack import REPO_ROOT

    roots = list(dict.fromkeys((REPO_ROOT, Path.cwd().resolve())))
    for root in roots:
        if all((root / name).is_file() for name in CHECKOUT_FILES):
            return root
    raise BenchError(
        "pipeline bench runs in a checkout of the project: it measures the reference configs "
        f"({', '.join(CHECKOUT_FILES[:2])}) with the checkout's {CHECKOUT_FILES[2]} and {CHECKOUT_FILES[3]}, which "
        f"an installed package does not hold; none in {' or '.join(map(str, roots))}. Clone the project and run "
        "`make venv && .venv/bin/pipeline bench` there, or run this one from the clone's directory")


def _reference_config(filename: str) -> dict[str, Any]:
    return yaml.safe_load((checkout() / "pipelines" / filename).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- child processes


@dataclass(frozen=True)
class ChildRun:
    exit_code: int
    seconds: float
    output: str
    peak_rss_mb: float | None = None  # the child's own peak resident set size, when measured


def run_pipeline(*args: str, env: Mapping[str, str], measure_peak: bool = False, timeout: float = 1800) -> ChildRun:
    """Run ``pipeline ARGS`` in a child process, as a user would; its wall time and, if asked, its peak RSS."""
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-child-") as scratch:
        report = Path(scratch) / "peak.json"
        if measure_peak:
            argv = [sys.executable, "-m", "pipeline.bench.peak", str(report), *args]
        else:
            argv = [sys.executable, "-m", "pipeline.cli", *args]
        started = time.monotonic()
        try:
            result = subprocess.run(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"pipeline {' '.join(args)} did not finish in {timeout:.0f} s") from error
        seconds = time.monotonic() - started
        peak = None
        if measure_peak:
            measured = json.loads(report.read_text()) if report.exists() else {}
            if measured.get("peak_rss_bytes") is None:
                raise BenchError("the child reported no peak RSS (needs Linux's /proc/self/status)")
            peak = measured["peak_rss_bytes"] / 1e6
    return ChildRun(result.returncode, seconds, result.stdout, peak)


def psql_binary() -> str:
    found = shutil.which("psql")
    if found:
        return found
    from pipeline.local.stack import find_postgres_bindir

    candidate = find_postgres_bindir() / "psql"
    if candidate.exists():
        return str(candidate)
    raise BenchError("psql is not installed (it is the floor every load is compared with)")
