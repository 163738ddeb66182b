"""The book_order table's shape, as the tests' configs and CSV objects spell it."""

from __future__ import annotations

COLUMNS = [
    {"name": "order_id", "type": "string"},
    {"name": "user_id", "type": "long"},
    {"name": "book_id", "type": "long"},
    {"name": "book_name", "type": "string"},
    {"name": "order_cnt", "type": "long"},
    {"name": "order_amt", "type": "long"},
]
HEADER = ",".join(c["name"] for c in COLUMNS) + "\n"
