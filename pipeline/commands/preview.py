"""``pipeline preview CONFIG.yml``: a sample of the source as it would be loaded; nothing is written."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import unicodedata
from typing import TextIO

MAX_CELL_WIDTH = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="pipeline config (YAML)")
    parser.add_argument("--rows", type=int, default=20, metavar="N", help="records to show (default 20)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="table (for a terminal, the default), json or csv (for scripts)")


def run(args: argparse.Namespace) -> int:
    from pipeline import config as config_module
    from pipeline.inspect import preview

    result = preview(config_module.load(args.config), args.rows)
    out = sys.stdout
    if args.format == "json":
        write_json(result, out)
    elif args.format == "csv":
        write_csv(result, out)
    else:
        write_table(result, out)
    return 0


def write_json(result, out: TextIO) -> None:
    document = {
        "pipeline": result.pipeline,
        "sources": result.sources,
        "columns": [{"name": c.name, "type": c.type, "sql_type": t} for c, t in zip(result.columns, result.sql_types,
                                                                                      strict=True)],
        "rows": [_row_document(result, row) for row in result.rows],
        "on_invalid": result.on_invalid,
        "notes": result.notes,
    }
    json.dump(document, out, ensure_ascii=False, indent=2)
    out.write("\n")


def _row_document(result, row) -> dict:
    document = {"source": row.source, "position": row.position}
    if row.rejected:
        document.update(error=row.error, column=row.column, raw=row.raw)
    else:
        document["values"] = dict(zip([c.name for c in result.columns], row.values, strict=True))
    return document


def write_csv(result, out: TextIO) -> None:
    """Header of column names, then one line per record; ``_error`` is empty for a good record."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["_source", "_position", *[c.name for c in result.columns], "_error"])
    for row in result.rows:
        values = row.values if row.values is not None else [None] * len(result.columns)
        writer.writerow([row.source, row.position, *["" if v is None else v for v in values], row.error or ""])


def write_table(result, out: TextIO) -> None:
    """Column names and target types as a two-line header; rejected records with their reason."""
    for source in result.sources:
        out.write(f"{result.pipeline}: sample of {source}\n")
    stream = any(isinstance(row.position, str) for row in result.rows)
    # Rows of several shards say which shard each came from; the sequence number alone does not.
    by_source = stream and len(result.sources) > 1
    headers = [*(["shard"] if by_source else []), "sequence" if stream else "line", *[c.name for c in result.columns]]
    types = ["", *([""] if by_source else []), *result.sql_types]

    def where(row) -> list[str]:
        position = "" if row.position is None else str(row.position)
        return [row.source.rpartition("/")[2], position] if by_source else [position]

    good = [[*where(row), *[_shown(v) for v in row.values]] for row in result.rows if not row.rejected]
    widths = [max(display_width(text) for text in column) for column in zip(headers, types, *good, strict=True)]

    def line(cells: list[str]) -> str:
        return " | ".join(pad(cell, width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    out.write(line(headers) + "\n")
    out.write(line(types) + "\n")
    out.write("-+-".join("-" * width for width in widths) + "\n")
    for row in result.rows:
        if row.rejected:
            cells = [pad(cell, width) for cell, width in zip(where(row), widths, strict=False)]
            out.write(" | ".join([*cells, f"REJECTED: {row.error}"]) + "\n")
        else:
            out.write(line([*where(row), *[_shown(v) for v in row.values]]) + "\n")
    rejected = sum(1 for row in result.rows if row.rejected)
    out.write(f"{len(result.rows)} records shown, {rejected} rejected; {result.on_invalid}\n")
    for note in result.notes:
        out.write(f"note: {note}\n")


def _shown(value: object) -> str:
    if value is None:
        return "NULL"
    text = str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")
    return truncate(text, MAX_CELL_WIDTH)


def char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide and full-width (CJK) characters take two."""
    return sum(char_width(char) for char in text)


def truncate(text: str, width: int) -> str:
    if display_width(text) <= width:
        return text
    used, kept = 0, []
    for char in text:
        if used + char_width(char) > width - 1:
            break
        kept.append(char)
        used += char_width(char)
    return "".join(kept) + "…"


def pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))
