"""`dagster dev` as a user runs it, for tests: started on the repository's workspace, stopped by pid.

It starts in an empty working directory, because dagster dev reads a `.env` there over the
environment and a developer's `.env` would point it at their own stack. SIGINT is restored in the
child: a background `dagster dev` otherwise ignores it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipeline.local.stack import free_port, process_is_running

ROOT = Path(__file__).resolve().parents[1]


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def running_dagster_dev(env: Mapping[str, str], log_path: Path, *, timeout: float = 180) -> Iterator[int]:
    """Yield the port of a `dagster dev` answering on 127.0.0.1; stop it and every child on exit."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-dagster-dev-"))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster")), "dev", "-h", "127.0.0.1", "-p", str(port),
             "-w", str(ROOT / "workspace.yaml")],
            cwd=workdir, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_restore_sigint)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                        break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        raise AssertionError("dagster dev did not start:\n" + log_path.read_text()[-3000:]) from None
                    time.sleep(1)
            yield port
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            for path in sorted(workdir.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            workdir.rmdir()
            assert not process_is_running(process.pid)
