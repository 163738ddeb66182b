"""``python -m pipeline.bench.peak REPORT ARGS...``: run ``pipeline ARGS`` here, then write its peak RSS to REPORT.

A child's ``ru_maxrss`` (from wait4 or RUSAGE_CHILDREN) starts at its parent's resident size,
inherited at fork and kept across exec, so it reports the bench's own memory, not the load's.
``VmHWM`` in /proc/self/status belongs to the address space the exec created: the load alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size since its exec (Linux), or None where /proc has no VmHWM."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main(argv: list[str]) -> int:
    from pipeline import cli

    report, args = Path(argv[0]), argv[1:]
    code = 1
    try:
        code = cli.main(args)
    finally:
        report.write_text(json.dumps({"peak_rss_bytes": peak_rss_bytes(), "exit_code": code}))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
