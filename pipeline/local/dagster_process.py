"""Dagster's own commands (``dagster dev``, ``dagster-daemon run``) started as a user starts them, stopped by pid.

Each starts in an empty working directory, because Dagster reads a ``.env`` there over the
environment and a developer's ``.env`` would point it at their own stack. Each gets a session of
its own with SIGINT restored (a background ``dagster dev`` otherwise ignores it), so stopping the
process group stops its children too: code servers and run workers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.local.stack import process_is_running

STOP_TIMEOUT_SECONDS = 30.0


def dagster_command(name: str) -> str:
    """The path of a Dagster console script (``dagster``, ``dagster-daemon``) of this interpreter."""
    return str(Path(sys.executable).with_name(name))


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def dagster_process(args: Sequence[str], env: Mapping[str, str], log_path: Path, *,
                    ready: Callable[[], bool] | None = None, timeout: float = 180) -> Iterator[subprocess.Popen]:
    """Run ``args`` with its output in ``log_path``; yield once ``ready()`` (when given) says so.

    On exit the whole process group gets SIGINT, then SIGKILL after STOP_TIMEOUT_SECONDS.
    """
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-dagster-"))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(list(args), cwd=workdir, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_restore_sigint)
        try:
            deadline = time.monotonic() + timeout
            while ready is not None and not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    why = "exited" if process.poll() is not None else f"was not ready in {timeout:g} s"
                    raise PipelineError(f"{Path(args[0]).name} {why}; the end of its log ({log_path}):\n"
                                        + log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
            yield process
        finally:
            _stop_group(process)
            shutil.rmtree(workdir, ignore_errors=True)
    if process_is_running(process.pid):
        raise PipelineError(f"{Path(args[0]).name} (pid {process.pid}) is still running after SIGKILL")


def _stop_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
