"""Dagster's commands are stopped with their whole process group, even children that ignore SIGINT."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.local import dagster_process
from pipeline.local.dagster_process import dagster_process as run_process
from pipeline.local.dagster_process import group_members
from pipeline.local.stack import process_is_running

# A leader that starts a child ignoring SIGINT (as dagster-daemon's code server outlives it), then waits.
LEADER = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
                          "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(300)"])
print(child.pid, flush=True)
time.sleep(300)
"""


def test_the_whole_group_is_gone_after_the_block_even_a_child_that_ignores_sigint(tmp_path, monkeypatch):
    monkeypatch.setattr(dagster_process, "CHILD_GRACE_SECONDS", 0.5)
    log = tmp_path / "leader.log"

    with run_process([sys.executable, "-c", LEADER], {"PATH": "/usr/bin:/bin"}, log,
                     ready=lambda: log.read_text().strip() != "", timeout=30) as leader:
        child = int(log.read_text().split()[0])
        assert set(group_members(leader.pid)) == {leader.pid, child}

    assert not process_is_running(leader.pid)
    assert not process_is_running(child) or _is_zombie(child)
    assert group_members(leader.pid) == []


def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2] == "Z"
