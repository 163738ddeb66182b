"""Slow-path throughput on book_order-shaped data: prints rows/s, asserts only correctness.

Run alone with ``.venv/bin/pytest -s -m slow pipeline_tests/formats/test_throughput.py``, or as a
script: ``.venv/bin/python -m pipeline_tests.formats.test_throughput [ROWS]``.
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid

import pytest

from pipeline.formats.csv import CsvOptions, CsvRecord, read_records
from pipeline.formats.types import normalize
from pipeline.schema import Column

BOOK_NAMES = ["嫌われる勇気", "ノルウェイの森", "人間失格", "コンビニ人間",
              '"Harry Potter, vol. 1"', "1Q84 BOOK 1"]
COLUMNS = (Column("order_id"), Column("user_id", "long"), Column("book_id", "long"), Column("book_name"),
           Column("order_cnt", "long"), Column("order_amt", "long"))


def book_order_csv(rows: int, seed: int = 7) -> bytes:
    pick = random.Random(seed)
    lines = ["order_id,user_id,book_id,book_name,order_cnt,order_amt\r\n"]
    lines.extend(
        f"{uuid.UUID(int=pick.getrandbits(128), version=4)},{pick.randrange(1, 10**6)},"
        f"{pick.randrange(9784000000000, 9785000000000)},{pick.choice(BOOK_NAMES)},{pick.randrange(1, 5)},"
        f"{pick.randrange(100, 20000)}\r\n"
        for _ in range(rows)
    )
    return "".join(lines).encode()


def measure(rows: int) -> tuple[float, float]:
    """(rows/s of read_records alone, rows/s of read_records + normalize of every value).

    Seconds are this process's CPU seconds: the machine is shared, so wall time says little.
    """
    data = book_order_csv(rows)
    chunks = [data[start:start + (1 << 20)] for start in range(0, len(data), 1 << 20)]
    options = CsvOptions(skip_header_lines=1, columns=COLUMNS)

    started = time.process_time()
    parsed = sum(isinstance(record, CsvRecord) for record in read_records(chunks, options, "bench"))
    read_only = time.process_time() - started
    assert parsed == rows

    started = time.process_time()
    loaded = 0
    for record in read_records(chunks, options, "bench"):
        assert isinstance(record, CsvRecord)
        # As the writer does it: one normalize call per value.
        [normalize(value, column) for column, value in zip(COLUMNS, record.values, strict=True)]
        loaded += 1
    with_normalize = time.process_time() - started
    assert loaded == rows
    return rows / read_only, rows / with_normalize


@pytest.mark.slow
def test_slow_path_throughput_on_book_orders() -> None:
    rows = int(os.environ.get("BOOK_ORDER_ROWS", "200000"))  # 1000000 for the figure we quote
    read_rate, load_rate = measure(rows)
    print(f"\n{rows:,} book_order rows: read_records {read_rate:,.0f} rows/s, "
          f"read_records + normalize {load_rate:,.0f} rows/s (per CPU second)")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    read_rate, load_rate = measure(count)
    print(f"{count:,} book_order rows: read_records {read_rate:,.0f} rows/s, "
          f"read_records + normalize {load_rate:,.0f} rows/s (per CPU second)")
