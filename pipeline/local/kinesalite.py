"""kinesalite: a second Kinesis implementation (npm), for the stream tests and the 1,000,000-record backlog.

moto's Kinesis numbers records by scanning the shard on each put, so a large backlog takes hours to
fill; kinesalite (an in-memory Kinesis on LevelDB's memdown) takes one in minutes. It is also a second
reading of the API: it reports ``MillisBehindLatest: 0`` on every page, where real Kinesis reports the
lag, so the engine must not take a full page for the tip.

``make kinesalite`` installs it under ``.venv/node``; ``PIPELINE_KINESALITE`` names another executable.
The server runs in a session of its own and is stopped by its process id (its group).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import PipelineError

VERSION = "3.3.3"
_STARTUP_SECONDS = 30.0


def executable() -> str | None:
    """The kinesalite command: ``$PIPELINE_KINESALITE``, the venv's ``node/`` install, or PATH's."""
    named = os.environ.get("PIPELINE_KINESALITE")
    if named:
        return named if Path(named).is_file() else None
    installed = Path(sys.prefix) / "node" / "node_modules" / ".bin" / "kinesalite"
    if installed.is_file() and shutil.which("node"):
        return str(installed)
    return shutil.which("kinesalite")


class Kinesalite:
    """One kinesalite server on ``port`` (127.0.0.1), logging to ``log_path``."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = executable()
        if command is None:
            raise PipelineError("kinesalite is not installed: `make kinesalite` installs it under .venv/node "
                                "(npm), or set PIPELINE_KINESALITE to its executable")
        with self.log_path.open("ab") as log_file:
            # Streams become ACTIVE at once: tests and the bench wait on the state, not on a delay.
            self.process = subprocess.Popen(
                [command, "--port", str(self.port), "--createStreamMs", "0", "--deleteStreamMs", "0",
                 "--updateStreamMs", "0", "--shardLimit", "100"],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + _STARTUP_SECONDS
        while not self.answers():
            if self.process.poll() is not None:
                raise PipelineError(f"kinesalite exited ({self.process.returncode}) before answering on "
                                    f"{self.endpoint}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise PipelineError(f"kinesalite does not answer on {self.endpoint}; see {self.log_path}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as error:
            return f"(no log: {error})"

    def restart(self) -> str:
        """Start it again on its port after it died; what its log said before it did."""
        said = self.log_tail()
        self.stop()
        self.start()
        return said

    def answers(self) -> bool:
        try:
            self.client().list_streams(Limit=1)
            return True
        except Exception:
            return False

    def client(self):
        """A Kinesis client of this server (any credentials do)."""
        from pipeline.sources.aws import client

        return client("kinesis", endpoint=self.endpoint, region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                      access_key_id="testing", secret_access_key="testing", max_attempts=2)

    def stop(self) -> None:
        """SIGTERM to its process group, then SIGKILL; returns once the process is gone."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(wait)
                return
        raise PipelineError(f"kinesalite (pid {process.pid}) did not stop after SIGKILL")


@contextlib.contextmanager
def running(log_path: Path, port: int | None = None) -> Iterator[Kinesalite]:
    from pipeline.local.stack import free_port

    server = Kinesalite(port or free_port(), log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
