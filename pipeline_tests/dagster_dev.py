"""`dagster dev` as a user runs it, for tests: started on the repository's workspace, stopped by pid.

See pipeline/local/dagster_process.py for why it starts in an empty directory and how it stops.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from pipeline.local.dagster_process import dagster_command, dagster_process
from pipeline.local.stack import free_port

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running_dagster_dev(env: Mapping[str, str], log_path: Path, *, timeout: float = 180) -> Iterator[int]:
    """Yield the port of a `dagster dev` answering on 127.0.0.1; stop it and every child on exit."""
    port = free_port()

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return True
        except OSError:
            return False

    args = [dagster_command("dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")]
    with dagster_process(args, env, log_path, ready=answers, timeout=timeout):
        yield port
