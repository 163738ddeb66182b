"""``python -m pipeline.bench``: the same as ``pipeline bench``."""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
