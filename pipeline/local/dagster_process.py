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
CHILD_GRACE_SECONDS = 10.0  # for the rest of the group to end after the leader did


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
    left = group_members(process.pid)
    if process_is_running(process.pid) or left:
        raise PipelineError(f"{Path(args[0]).name} (pid {process.pid}) left processes {left} running after SIGKILL")


def _stop_group(process: subprocess.Popen) -> None:
    group = process.pid  # the leader of its own session and process group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait(timeout=10)
    # dagster-daemon leaves its code server running after SIGINT: whatever of the group outlives the leader
    # gets a moment to finish, then SIGKILL.
    deadline = time.monotonic() + CHILD_GRACE_SECONDS
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    if group_members(group):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.1)


def group_members(group: int) -> list[int]:
    """The live (not zombie) processes of process group ``group``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ")".
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry.name))
    return members
