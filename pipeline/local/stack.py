"""The embedded local stack: PostgreSQL from the machine's binaries and moto's AWS server.

Everything lives in one state directory::

    <state>/stack.json       ports and shard count of the last ``up`` (marks the dir as ours)
    <state>/postgres/        PostgreSQL data directory (owned by ``postgres`` when run as root)
    <state>/postgres.log     PostgreSQL server log
    <state>/moto.pid         process id of the moto server
    <state>/moto.log         moto server log
    <state>/standin.pid      process id of the Hologres/Redshift stand-in proxy (pipeline.local.standin)
    <state>/standin.log      its log
    <state>/dagster/         DAGSTER_HOME: dagster.yaml (link to the repo's), artifacts, compute logs

Processes are found and stopped by the process ids recorded there, never by name.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_PG_PORT = 55432
DEFAULT_AWS_PORT = 55433
DEFAULT_STANDIN_PORT = 55434
DEFAULT_SHARDS = 2
HOST = "127.0.0.1"
PG_USER = "pipeline"
PG_PASSWORD = "pipeline"
# "postgres_target": plain PostgreSQL as a target (out.type: postgresql), reached directly.
DATABASES = ("hologres", "redshift", "dagster", "postgres_target")
# The databases clients reach through the stand-in proxy, with that target's rules in front of PostgreSQL.
STANDINS = {"hologres": "hologres", "redshift": "redshift"}
HOLOGRES_VERSION = "2.2.11"
AWS_REGION = "ap-northeast-1"
AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"
BUCKET = "bob-embulk-demo"
KMS_ALIAS = "alias/pipeline-demo"
STREAM = "test-streaming-data"
# The queue the demo bucket sends its s3:ObjectCreated:* events to (in.notifications.queue).
QUEUE = f"{BUCKET}-events"
POSTGRES_OS_USER = "postgres"
# The repository root, where dagster.yaml lives (pipeline/local/stack.py -> three levels up).
REPO_ROOT = Path(__file__).resolve().parents[2]

_STARTUP_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ServiceStatus:
    """One service of the stack as seen by ``up``, ``down`` or ``status``."""

    name: str  # "postgresql", "moto" or "standin"
    pid: int | None
    address: str  # host:port
    answers: bool
    action: str  # started | reused | stopped | running | not running

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "no process"
        answers = "answers" if self.answers else "does not answer"
        return f"{self.name:<10} {self.action:<11} {pid:<11} {self.address:<16} {answers}"


@dataclass(frozen=True)
class StackEndpoints:
    """Where a running stack can be reached: what tests and the demo need."""

    env: dict[str, str]
    state_dir: Path
    pg_port: int
    aws_port: int
    standin_port: int
    hologres_url: str
    redshift_url: str
    dagster_url: str
    postgresql_url: str  # a plain PostgreSQL database for out.type: postgresql (no stand-in rules)
    aws_endpoint: str
    region: str
    bucket: str
    kms_key: str
    stream: str


class LocalStack:
    """Start, stop and inspect PostgreSQL and moto for one state directory.

    Ports and state directory come from the arguments, else ``PIPELINE_PG_PORT``,
    ``PIPELINE_AWS_PORT`` and ``PIPELINE_LOCAL_DIR``, else the ports recorded by the last
    ``up`` in that directory, else the defaults (55432, 55433, ``./.local``).
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        pg_port: int | None = None,
        aws_port: int | None = None,
        *,
        standin_port: int | None = None,
        shards: int | None = None,
        dotenv_path: Path | str | None = Path(".env"),
        notifications: bool = True,
    ) -> None:
        if state_dir is None:
            state_dir = os.environ.get("PIPELINE_LOCAL_DIR") or Path.cwd() / ".local"
        self.state_dir = Path(state_dir).expanduser().absolute()
        recorded = self._recorded()
        self.pg_port = _port(pg_port, "PIPELINE_PG_PORT", recorded.get("pg_port"), DEFAULT_PG_PORT)
        self.aws_port = _port(aws_port, "PIPELINE_AWS_PORT", recorded.get("aws_port"), DEFAULT_AWS_PORT)
        self.standin_port = _port(standin_port, "PIPELINE_STANDIN_PORT", recorded.get("standin_port"),
                                  DEFAULT_STANDIN_PORT)
        self.shards = int(shards or recorded.get("shards") or DEFAULT_SHARDS)
        # None: do not write a .env (tests must not overwrite the developer's one).
        self.dotenv_path = Path(dotenv_path).absolute() if dotenv_path is not None else None
        # Whether the demo bucket notifies QUEUE of each object created. moto appends each notification to its
        # queue in time that grows with the queue, so a session that puts thousands of objects no one consumes
        # (the test suite) turns it off.
        self.notifications = notifications
        self._moto_process: subprocess.Popen[bytes] | None = None
        self._standin_process: subprocess.Popen[bytes] | None = None

    # -- paths -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def pg_log(self) -> Path:
        return self.state_dir / "postgres.log"

    @property
    def moto_pid_file(self) -> Path:
        return self.state_dir / "moto.pid"

    @property
    def moto_log(self) -> Path:
        return self.state_dir / "moto.log"

    @property
    def standin_pid_file(self) -> Path:
        return self.state_dir / "standin.pid"

    @property
    def standin_log(self) -> Path:
        return self.state_dir / "standin.log"

    @property
    def dagster_home(self) -> Path:
        return self.state_dir / "dagster"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{HOST}:{self.aws_port}"

    def database_url(self, database: str) -> str:
        """PostgreSQL itself, with no stand-in rules (Dagster's storage, inspection)."""
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.pg_port}/{database}"

    def target_url(self, database: str) -> str:
        """A stand-in database as clients reach it: through the proxy, with the target's rules."""
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.standin_port}/{database}"

    # -- public operations -------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment that points clients (engine, Dagster, boto3) at this stack."""
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": AWS_REGION,
            "HOLOGRES_URL": self.target_url("hologres"),
            "REDSHIFT_URL": self.target_url("redshift"),
            "POSTGRESQL_URL": self.database_url("postgres_target"),
            "PIPELINE_KMS_KEY": KMS_ALIAS,
            "PIPELINE_BUCKET": BUCKET,
            "PIPELINE_STREAM": STREAM,
            "PIPELINE_QUEUE": QUEUE,
            "PIPELINE_LOCAL_DIR": str(self.state_dir),
            "DAGSTER_HOME": str(self.dagster_home),
            "DAGSTER_COMPUTE_LOGS_DIR": str(self.dagster_home / "compute_logs"),
            "DAGSTER_PG_HOST": HOST,
            "DAGSTER_PG_PORT": str(self.pg_port),
            "DAGSTER_PG_USER": PG_USER,
            "DAGSTER_PG_PASSWORD": PG_PASSWORD,
            "DAGSTER_PG_DB": "dagster",
        }

    def endpoints(self) -> StackEndpoints:
        return StackEndpoints(
            env=self.env(),
            state_dir=self.state_dir,
            pg_port=self.pg_port,
            aws_port=self.aws_port,
            standin_port=self.standin_port,
            hologres_url=self.target_url("hologres"),
            redshift_url=self.target_url("redshift"),
            dagster_url=self.database_url("dagster"),
            postgresql_url=self.database_url("postgres_target"),
            aws_endpoint=self.aws_endpoint,
            region=AWS_REGION,
            bucket=BUCKET,
            kms_key=KMS_ALIAS,
            stream=STREAM,
        )

    def up(self) -> list[ServiceStatus]:
        """Start what is not running, keep what runs and answers; return when all answer."""
        bindir = find_postgres_bindir()
        pg_pid = self._postgres_pid()
        moto_pid = self._moto_pid()
        standin_pid = self._standin_pid()
        # Check every port before starting anything, so a clash leaves nothing half-started.
        if pg_pid is None:
            _require_free_port(self.pg_port, "PostgreSQL", "--pg-port", "PIPELINE_PG_PORT")
        else:
            self._require_postgres_port(pg_pid)
        if moto_pid is None:
            _require_free_port(self.aws_port, "moto (AWS)", "--aws-port", "PIPELINE_AWS_PORT")
        if standin_pid is None:
            _require_free_port(self.standin_port, "the Hologres/Redshift stand-in", "--standin-port",
                               "PIPELINE_STANDIN_PORT")

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._record()
        started: list[str] = []
        try:
            if moto_pid is None:
                # moto takes a few seconds to import; let it start while PostgreSQL does.
                moto_pid = self._start_moto()
                started.append("moto")
            if pg_pid is None:
                self._initdb(bindir)
                pg_pid = self._start_postgres(bindir)
                started.append("postgresql")
            self._wait_for_postgres()
            self._create_databases()
            if standin_pid is None:
                standin_pid = self._start_standin()
                started.append("standin")
            self._wait_for_standin(standin_pid)
            self._wait_for_moto(moto_pid)
            self._bootstrap_aws()
            self._prepare_dagster_home()
        except BaseException:
            # A failed `up` leaves nothing half-started behind; what was running before stays.
            if "standin" in started:
                self._stop_standin()
            if "postgresql" in started:
                self._stop_postgres()
            if "moto" in started:
                self._stop_moto()
            raise
        if self.dotenv_path is not None:
            write_dotenv(self.dotenv_path, self.env())
        pg_action = "started" if "postgresql" in started else "reused"
        moto_action = "started" if "moto" in started else "reused"
        standin_action = "started" if "standin" in started else "reused"
        return [
            ServiceStatus("postgresql", pg_pid, f"{HOST}:{self.pg_port}", True, pg_action),
            ServiceStatus("moto", moto_pid, f"{HOST}:{self.aws_port}", True, moto_action),
            ServiceStatus("standin", standin_pid, f"{HOST}:{self.standin_port}", True, standin_action),
        ]

    def down(self, *, purge: bool = False) -> list[ServiceStatus]:
        """Stop the processes recorded in the state dir; keep the data unless ``purge``."""
        statuses = [self._stop_standin(), self._stop_postgres(), self._stop_moto()]
        if purge and self.state_dir.exists():
            if not (self.state_dir / "stack.json").exists():
                raise PipelineError(
                    f"refusing to delete {self.state_dir}: it has no stack.json, so it does not look "
                    "like a local stack state directory"
                )
            shutil.rmtree(self.state_dir)
        return statuses

    def status(self) -> list[ServiceStatus]:
        """What runs where, and whether it answers."""
        pg_pid = self._postgres_pid(quiet=True)
        moto_pid = self._moto_pid(quiet=True)
        standin_pid = self._standin_pid(quiet=True)
        return [
            ServiceStatus(
                "postgresql",
                pg_pid,
                f"{HOST}:{self.pg_port}",
                pg_pid is not None and self._postgres_answers(),
                "running" if pg_pid else "not running",
            ),
            ServiceStatus(
                "moto",
                moto_pid,
                f"{HOST}:{self.aws_port}",
                moto_pid is not None and self._moto_answers(),
                "running" if moto_pid else "not running",
            ),
            ServiceStatus(
                "standin",
                standin_pid,
                f"{HOST}:{self.standin_port}",
                standin_pid is not None and self._standin_answers(),
                "running" if standin_pid else "not running",
            ),
        ]

    def pids(self) -> dict[str, int]:
        """Process ids of the services that run now, by service name."""
        found = {"postgresql": self._postgres_pid(quiet=True), "moto": self._moto_pid(quiet=True),
                 "standin": self._standin_pid(quiet=True)}
        return {name: pid for name, pid in found.items() if pid is not None}

    # -- state file --------------------------------------------------------------------------

    def _recorded(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "stack.json").read_text())
        except (OSError, ValueError):
            return {}

    def _record(self) -> None:
        record = {"pg_port": self.pg_port, "aws_port": self.aws_port, "standin_port": self.standin_port,
                  "shards": self.shards}
        (self.state_dir / "stack.json").write_text(json.dumps(record, indent=2) + "\n")

    # -- PostgreSQL --------------------------------------------------------------------------

    def _postgres_pid(self, *, quiet: bool = False) -> int | None:
        """The postmaster's pid from postmaster.pid if it runs; a stale file is removed."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            return None
        pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
        if pid is not None and process_is_running(pid) and "postgres" in _command_line(pid):
            return pid
        if not quiet:
            log.warning("%s names process %s, which is not running: removing it", pid_file, pid)
            pid_file.unlink(missing_ok=True)
        return None

    def _require_postgres_port(self, pid: int) -> None:
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        running_port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        if running_port is not None and running_port != self.pg_port:
            raise PipelineError(
                f"PostgreSQL in {self.data_dir} already runs (pid {pid}) on port {running_port}, not "
                f"{self.pg_port}; run `pipeline local down --state-dir {self.state_dir}` first "
                "to change the port"
            )

    def _as_postgres(self) -> list[str]:
        # initdb and pg_ctl refuse root: run them as the postgres user.
        return ["runuser", "-u", POSTGRES_OS_USER, "--"] if os.geteuid() == 0 else []

    def _give_to_postgres(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, POSTGRES_OS_USER, POSTGRES_OS_USER)

    def _run_pg_tool(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_postgres(), *args],
            cwd=self.state_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=check,
        )

    def _initdb(self, bindir: Path) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._give_to_postgres(self.data_dir)
        self._require_postgres_can_reach(self.data_dir)
        pwfile = self.state_dir / ".pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        pwfile.chmod(0o600)
        self._give_to_postgres(pwfile)
        try:
            result = self._run_pg_tool(
                [
                    str(bindir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    PG_USER,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                ],
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PipelineError(
                f"initdb failed for {self.data_dir} (exit {result.returncode}): {result.stderr.strip()}"
            )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Rewritten by `pipeline local up` on every start.\n")
            conf.write("include_if_exists = 'pipeline.conf'\n")
        log.info("initialised PostgreSQL data directory %s", self.data_dir)

    def _require_postgres_can_reach(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        probe = self._run_pg_tool(["test", "-w", str(path)], check=False)
        if probe.returncode == 0:
            return
        blocking = next(
            (parent for parent in reversed(path.parents) if not os.stat(parent).st_mode & 0o001),
            path,
        )
        raise PipelineError(
            f"the {POSTGRES_OS_USER} user cannot reach {path}: {blocking} is not traversable by others. "
            f"Run `chmod o+x {blocking}` or choose a state directory under /tmp "
            "with --state-dir or PIPELINE_LOCAL_DIR"
        )

    def _write_server_settings(self) -> None:
        socket_dir = str(self.data_dir)
        # A Unix socket path is limited to 107 bytes; past that, listen on TCP only.
        if len(f"{socket_dir}/.s.PGSQL.{self.pg_port}") > 100:
            socket_dir = ""
        settings = {
            "listen_addresses": HOST,
            "port": str(self.pg_port),
            "unix_socket_directories": socket_dir,
        }
        lines = [f"{name} = '{value.replace(chr(39), chr(39) * 2)}'" for name, value in settings.items()]
        conf = self.data_dir / "pipeline.conf"
        conf.write_text("\n".join(lines) + "\n")
        self._give_to_postgres(conf)

    def _start_postgres(self, bindir: Path) -> int:
        self._write_server_settings()
        self.pg_log.touch()
        self._give_to_postgres(self.pg_log)
        result = self._run_pg_tool(
            [
                str(bindir / "pg_ctl"),
                "--pgdata",
                str(self.data_dir),
                "--log",
                str(self.pg_log),
                "--wait",
                "--timeout",
                str(int(_STARTUP_TIMEOUT)),
                "start",
            ],
            check=False,
        )
        pid = self._postgres_pid(quiet=True)
        if result.returncode != 0 or pid is None:
            raise PipelineError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}); its log {self.pg_log} "
                f"ends with:\n{_tail(self.pg_log)}"
            )
        log.info("started PostgreSQL (pid %s) on %s:%s", pid, HOST, self.pg_port)
        return pid

    def _connect(self, database: str = "postgres", timeout: int = 3) -> Any:
        import psycopg

        return psycopg.connect(self.database_url(database), autocommit=True, connect_timeout=timeout)

    def _postgres_answers(self) -> bool:
        try:
            with self._connect() as connection:
                connection.execute("SELECT 1")
            return True
        except Exception:
            return False

    def _wait_for_postgres(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not self._postgres_answers():
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"PostgreSQL on {HOST}:{self.pg_port} does not accept connections; see {self.pg_log}"
                )
            time.sleep(0.2)

    def _create_databases(self) -> None:
        from psycopg import sql

        with self._connect() as connection:
            existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
            for database in DATABASES:
                if database not in existing:
                    connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                    log.info("created database %s", database)
        for database, flavor in STANDINS.items():
            self._prepare_standin_database(database, flavor)

    def _prepare_standin_database(self, database: str, flavor: str) -> None:
        """What the stand-in's rules need inside the database: functions, catalogs, settings."""
        from psycopg import sql

        from pipeline.local.standin import setup_sql

        name = sql.Identifier(database)
        with self._connect(database) as connection:
            connection.execute(setup_sql(flavor))
            # The stand-in's catalog (version(), hg_version(), stl_load_errors, ...) comes before pg_catalog.
            connection.execute(sql.SQL('ALTER DATABASE {} SET search_path = "$user", public, standin, pg_catalog')
                               .format(name))
            if flavor == "hologres":
                connection.execute(sql.SQL("ALTER DATABASE {} SET standin.hologres_version = {}").format(
                    name, sql.Literal(HOLOGRES_VERSION)))
            if flavor == "redshift":
                # Redshift Serverless databases use SNAPSHOT isolation: PostgreSQL's REPEATABLE READ.
                connection.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = "
                                           "'repeatable read'").format(name))

    def _stop_postgres(self) -> ServiceStatus:
        address = f"{HOST}:{self.pg_port}"
        pid = self._postgres_pid(quiet=True)
        if pid is None:
            return ServiceStatus("postgresql", None, address, False, "not running")
        bindir = find_postgres_bindir()
        result = self._run_pg_tool(
            [str(bindir / "pg_ctl"), "--pgdata", str(self.data_dir), "--mode", "fast", "--wait", "stop"],
            check=False,
        )
        if not _wait_until_gone(pid, _STOP_TIMEOUT):
            raise PipelineError(f"PostgreSQL (pid {pid}) did not stop: {result.stderr.strip()}; see {self.pg_log}")
        log.info("stopped PostgreSQL (pid %s)", pid)
        return ServiceStatus("postgresql", pid, address, False, "stopped")

    # -- moto --------------------------------------------------------------------------------

    def _moto_pid(self, *, quiet: bool = False) -> int | None:
        """moto's pid from moto.pid if that process runs moto; a stale file is removed."""
        return self._recorded_pid(self.moto_pid_file, "moto.server", quiet=quiet)

    def _recorded_pid(self, pid_file: Path, command: str, *, quiet: bool) -> int | None:
        """The pid in ``pid_file`` if that process runs ``command``; a stale file is removed."""
        try:
            text = pid_file.read_text().strip()
        except OSError:
            return None
        pid = int(text) if text.isdigit() else None
        if pid is not None and process_is_running(pid) and command in _command_line(pid):
            return pid
        if not quiet:
            log.warning("%s names process %s, which is not running: removing it", pid_file, pid)
            pid_file.unlink(missing_ok=True)
        return None

    def _start_moto(self) -> int:
        with self.moto_log.open("ab") as log_file:
            # Its own session: it outlives this command and is stopped as a process group.
            self._moto_process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.aws_port)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,
            )
        pid = self._moto_process.pid
        self.moto_pid_file.write_text(f"{pid}\n")
        log.info("started moto (pid %s) on %s:%s", pid, HOST, self.aws_port)
        return pid

    def _aws_client(self, service: str, timeout: float = 5) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.aws_endpoint,
            region_name=AWS_REGION,
            aws_access_key_id=AWS_ACCESS_KEY_ID,
            aws_secret_access_key=AWS_SECRET_ACCESS_KEY,
            config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
        )

    def _moto_answers(self, client: Any = None) -> bool:
        try:
            (client or self._aws_client("s3", timeout=2)).list_buckets()
            return True
        except Exception:
            return False

    def _wait_for_moto(self, pid: int) -> None:
        client = self._aws_client("s3", timeout=2)
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not self._moto_answers(client):
            if not process_is_running(pid):
                raise PipelineError(
                    f"moto (pid {pid}) exited before answering on {self.aws_endpoint}; its log "
                    f"{self.moto_log} ends with:\n{_tail(self.moto_log)}"
                )
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"moto (pid {pid}) does not answer on {self.aws_endpoint}; if an earlier `up` used "
                    f"another port, run `pipeline local down --state-dir {self.state_dir}` first; "
                    f"see {self.moto_log}"
                )
            time.sleep(0.1)

    def _bootstrap_aws(self) -> None:
        """Create the demo bucket, key alias and stream if missing (moto forgets all on restart)."""
        s3 = self._aws_client("s3")
        existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
        if BUCKET not in existing:
            s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": AWS_REGION})
            log.info("created bucket %s", BUCKET)

        if self.notifications:
            self._bootstrap_notifications(s3)

        kms = self._aws_client("kms")
        aliases = {
            alias["AliasName"]
            for page in kms.get_paginator("list_aliases").paginate()
            for alias in page.get("Aliases", [])
        }
        if KMS_ALIAS not in aliases:
            key = kms.create_key(
                Description="pipeline local stack demo key",
                KeySpec="SYMMETRIC_DEFAULT",
                KeyUsage="ENCRYPT_DECRYPT",
            )
            kms.create_alias(AliasName=KMS_ALIAS, TargetKeyId=key["KeyMetadata"]["KeyId"])
            log.info("created KMS key %s", KMS_ALIAS)

        kinesis = self._aws_client("kinesis")
        try:
            kinesis.describe_stream_summary(StreamName=STREAM)
        except kinesis.exceptions.ResourceNotFoundException:
            kinesis.create_stream(StreamName=STREAM, ShardCount=self.shards)
            log.info("created Kinesis stream %s with %d shards", STREAM, self.shards)
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while (
            kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE"
        ):
            if time.monotonic() > deadline:
                raise PipelineError(f"Kinesis stream {STREAM} did not become ACTIVE")
            time.sleep(0.1)

    def _bootstrap_notifications(self, s3: Any) -> None:
        """The demo bucket notifies QUEUE of every object created, as `pipeline policy notification` sets up."""
        sqs = self._aws_client("sqs")
        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]  # idempotent with the same attributes
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        current = s3.get_bucket_notification_configuration(Bucket=BUCKET).get("QueueConfigurations", [])
        if not any(c.get("QueueArn") == arn for c in current):
            s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={
                "QueueConfigurations": [{"Id": "pipeline-object-created", "QueueArn": arn,
                                         "Events": ["s3:ObjectCreated:*"]}]})
            log.info("bucket %s notifies SQS queue %s of created objects", BUCKET, QUEUE)

    def _stop_moto(self) -> ServiceStatus:
        return self._stop_group("moto", self._moto_pid(quiet=True), self.moto_pid_file,
                                f"{HOST}:{self.aws_port}", self._moto_process)

    def _stop_group(self, name: str, pid: int | None, pid_file: Path, address: str,
                    process: subprocess.Popen[bytes] | None) -> ServiceStatus:
        """Stop a service that leads its own session (its group id is its pid): SIGTERM, then SIGKILL."""
        if pid is None:
            pid_file.unlink(missing_ok=True)
            return ServiceStatus(name, None, address, False, "not running")
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, _STOP_TIMEOUT)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            if process is not None and process.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(wait)
            if _wait_until_gone(pid, wait):
                break
        else:
            raise PipelineError(f"{name} (pid {pid}) did not stop after SIGKILL")
        pid_file.unlink(missing_ok=True)
        log.info("stopped %s (pid %s)", name, pid)
        return ServiceStatus(name, pid, address, False, "stopped")

    # -- the Hologres and Redshift stand-in ----------------------------------------------------

    def _standin_pid(self, *, quiet: bool = False) -> int | None:
        return self._recorded_pid(self.standin_pid_file, "pipeline.local.standin", quiet=quiet)

    def _start_standin(self) -> int:
        databases = [f"{name}={flavor}" + (f":{HOLOGRES_VERSION}" if flavor == "hologres" else "")
                     for name, flavor in STANDINS.items()]
        side = f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{self.pg_port}/{{database}}"
        env = {**os.environ, **{k: v for k, v in self.env().items() if k.startswith("AWS_")}}
        with self.standin_log.open("ab") as log_file:
            self._standin_process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.local.standin", "--listen", f"{HOST}:{self.standin_port}",
                 "--upstream", f"{HOST}:{self.pg_port}", "--side-conninfo", side,
                 *[arg for database in databases for arg in ("--database", database)]],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env=env,
                start_new_session=True,
            )
        pid = self._standin_process.pid
        self.standin_pid_file.write_text(f"{pid}\n")
        log.info("started the Hologres/Redshift stand-in (pid %s) on %s:%s", pid, HOST, self.standin_port)
        return pid

    def _standin_answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.target_url("hologres"), autocommit=True, connect_timeout=3) as connection:
                connection.execute("SELECT 1")
            return True
        except Exception:
            return False

    def _wait_for_standin(self, pid: int) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not self._standin_answers():
            if not process_is_running(pid):
                raise PipelineError(f"the stand-in (pid {pid}) exited before answering; its log {self.standin_log} "
                                    f"ends with:\n{_tail(self.standin_log)}")
            if time.monotonic() > deadline:
                raise PipelineError(f"the stand-in (pid {pid}) does not answer on {HOST}:{self.standin_port}; "
                                    f"see {self.standin_log}")
            time.sleep(0.1)

    def _stop_standin(self) -> ServiceStatus:
        return self._stop_group("standin", self._standin_pid(quiet=True), self.standin_pid_file,
                                f"{HOST}:{self.standin_port}", self._standin_process)

    # -- Dagster -----------------------------------------------------------------------------

    def _prepare_dagster_home(self) -> None:
        """DAGSTER_HOME in the state dir, with a link to the repo's dagster.yaml."""
        self.dagster_home.mkdir(exist_ok=True)
        (self.dagster_home / "compute_logs").mkdir(exist_ok=True)
        source = next((p for p in (REPO_ROOT / "dagster.yaml", Path.cwd() / "dagster.yaml") if p.exists()), None)
        link = self.dagster_home / "dagster.yaml"
        if source is None:
            log.warning("no dagster.yaml found in %s or the current directory; Dagster will use defaults", REPO_ROOT)
            return
        if link.is_symlink() and link.resolve() == source.resolve():
            return
        link.unlink(missing_ok=True)
        link.symlink_to(source)


# -- helpers shared by the stack and its tests ---------------------------------------------------


def find_postgres_bindir(path: str | None = None, versioned_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The directory holding initdb, pg_ctl and postgres.

    Looks at ``pg_ctl`` on PATH, ``pg_config --bindir``, then the highest Debian versioned
    directory ``/usr/lib/postgresql/<version>/bin``.
    """
    candidates: list[Path] = []
    pg_ctl = shutil.which("pg_ctl", path=path)
    if pg_ctl:
        candidates += [Path(pg_ctl).parent, Path(pg_ctl).resolve().parent]
    pg_config = shutil.which("pg_config", path=path)
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(bindir))
    versioned = glob.glob(str(versioned_root / "*" / "bin"))
    candidates += sorted(
        (Path(p) for p in versioned),
        key=lambda p: [int(part) for part in p.parent.name.split(".") if part.isdigit()],
        reverse=True,
    )
    for candidate in candidates:
        if all(os.access(candidate / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise PipelineError(
        "no PostgreSQL server binaries found (initdb, pg_ctl, postgres): install the `postgresql` "
        f"package (Debian: apt-get install postgresql) or put pg_ctl on PATH; looked in "
        f"{', '.join(str(c) for c in candidates) or 'PATH and ' + str(versioned_root)}"
    )


def process_is_running(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie waiting to be reaped counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def write_dotenv(path: Path, env: Mapping[str, str]) -> None:
    """Write ``env`` into a .env file, keeping lines for other names that are already there."""
    kept: list[str] = []
    if path.exists():
        for line in path.read_text().splitlines():
            name = line.split("=", 1)[0].removeprefix("export ").strip()
            if name not in env and line.strip() != _DOTENV_HEADER:
                kept.append(line)
    ours = [f"{name}={shlex.quote(value)}" for name, value in env.items()]
    path.write_text("\n".join([*kept, _DOTENV_HEADER, *ours]) + "\n")


_DOTENV_HEADER = "# Written by `pipeline local up`: the embedded local stack."


def _port(explicit: int | None, env_name: str, recorded: Any, default: int) -> int:
    if explicit:
        return int(explicit)
    from_env = os.environ.get(env_name)
    if from_env:
        if not from_env.isdigit():
            raise PipelineError(f"{env_name}={from_env!r} is not a port number")
        return int(from_env)
    return int(recorded or default)


def _require_free_port(port: int, service: str, flag: str, env_name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a port in TIME_WAIT is free; only a listener makes bind fail on Linux.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise PipelineError(
                f"port {port} for {service} is already taken by another program ({error.strerror}); "
                f"choose another with {flag} or the {env_name} environment variable"
            ) from None


def _wait_until_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def iter_env_exports(env: Mapping[str, str]) -> Iterator[str]:
    """``export NAME=value`` lines a POSIX shell can ``eval``."""
    for name, value in env.items():
        yield f"export {name}={shlex.quote(value)}"
