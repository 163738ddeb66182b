"""parser: {type: jsonl}: lines read in bounded memory, loaded exactly once, bad lines rejected by line and column."""

from __future__ import annotations

import bz2
import gzip
import json
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline.errors import ConfigError, RecordError
from pipeline.formats import jsonl
from pipeline.records import Record
from pipeline_tests.books import COLUMNS
from pipeline_tests.faults.loads import TARGETS


class _Blob:
    def __init__(self, chunks: list[bytes], uri: str = "s3://b/k.jsonl"):
        self._chunks = chunks
        self.uri = uri
        self.size = sum(map(len, chunks))

    def chunks(self):
        yield from self._chunks

    def read(self, start: int, stop: int) -> bytes:
        return b"".join(self._chunks)[start:stop]


def _reader(columns=COLUMNS, **keys) -> jsonl.JsonlReader:
    config = config_module.parse({"in": {"type": "s3", "bucket": "b", "path_prefix": "p/",
                                         "parser": {"type": "jsonl", "columns": columns, **keys}},
                                  "out": {"type": "postgresql", "url": "postgresql://localhost/x", "table": "t"}},
                                 name="t")
    return jsonl.reader(config.input.parser)


@given(st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40), st.booleans(), st.booleans())
def test_lines_are_the_same_wherever_the_chunks_split(cuts, crlf, bom):
    lines = [b'{"a": 1}', b"", b'{"b": "x\\ny"}', b"  ", b'{"c": [1, 2]}']
    newline = b"\r\n" if crlf else b"\n"
    data = (b"\xef\xbb\xbf" if bom else b"") + newline.join(lines) + newline
    chunks, at = [], 0
    for cut in cuts:
        chunks.append(data[at:at + cut])
        at += cut
    chunks.append(data[at:])
    assert list(jsonl._lines(chunks, 1 << 20)) == list(enumerate(lines, start=1))


def test_an_over_long_line_is_an_error_naming_it_and_the_next_line_still_reads():
    data = [b'{"a": 1}\n', b'{"a": "' + b"x" * 50, b"x" * 50 + b'"}\n', b'{"a": 3}']
    assert list(jsonl._lines(data, 64)) == [(1, b'{"a": 1}'), (2, 109), (3, b'{"a": 3}')]
    reader = _reader([{"name": "a", "type": "long"}], max_record_bytes=64)
    out = list(reader.records(_Blob(data)))
    assert isinstance(out[0], Record) and out[0].values == ["1"]
    assert isinstance(out[1], RecordError) and out[1].position == 2 and "max_record_bytes (64)" in out[1].message
    assert isinstance(out[2], Record) and out[2].values == ["3"] and out[2].line == 3


def test_values_follow_the_kinesis_json_rules_and_errors_name_line_and_column():
    reader = _reader([{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
                      {"name": "tags", "type": "json"}, {"name": "at", "type": "timestamp"}])
    data = (b'{"id": 3.0, "name": 12, "tags": {"b": [1]}, "at": "2026-12-01T10:00:00+09:00"}\n'
            b'{"id": "x"}\n'
            b'[1, 2]\n'
            b'{"id": 1, "name": {"no": 1}}\n'
            b'{"name": null}\n')
    out = list(reader.records(_Blob([data])))
    assert out[0].values == ["3", "12", '{"b":[1]}', "2026-12-01 10:00:00+09:00"]
    assert (out[1].position, out[1].column) == (2, "id")
    assert out[2].position == 3 and "not a JSON object" in out[2].message
    assert (out[3].position, out[3].column) == (4, "name")
    assert out[4].values == [None, None, None, None] and out[4].line == 5
    assert "line 2, column id" in out[1].describe()


def test_embulk_parser_jsonl_keys_are_read_and_what_cannot_hold_is_refused():
    assert _reader(charset="UTF-8", newline="LF").columns[0].name == "order_id"
    with pytest.raises(ConfigError, match=r"in\.parser\.charset: JSON lines are read as UTF-8"):
        _reader(charset="Shift_JIS")
    with pytest.raises(ConfigError, match=r"in\.parser\.newline: CR alone"):
        _reader(newline="CR")
    with pytest.raises(ConfigError, match=r"in\.parser\.delimiter: unknown key"):
        _reader(delimiter=",")


def test_guess_types_the_keys_in_first_seen_order():
    data = b'{"id": 1, "price": 2.5, "ok": true, "at": "2026-12-01 10:00:00"}\n{"id": 2, "extra": {"x": 1}}\n'
    assert jsonl.detects(data) and not jsonl.detects(b"id,price\n1,2\n")
    parser = jsonl.guess(_Blob([gzip.decompress(gzip.compress(data))]), {})
    assert parser["type"] == "jsonl"
    assert [(c["name"], c["type"]) for c in parser["columns"]] == [
        ("id", "long"), ("price", "double"), ("ok", "boolean"), ("at", "timestamp"), ("extra", "json")]


# --------------------------------------------------------------------------- on the local stack


def _orders(start: int, count: int) -> list[dict]:
    return [{"order_id": f"o{i:05d}", "user_id": i % 50 + 1, "book_id": 6, "book_name": "人間失格",
             "order_cnt": i % 5 + 1, "order_amt": (i % 5 + 1) * 100} for i in range(start, start + count)]


def _lines_of(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _config(path: Path, prefix: str, table: str, target: str) -> Path:
    document = {
        "in": {"type": "s3", "bucket": "{{ env.PIPELINE_BUCKET }}", "path_prefix": prefix,
               "parser": {"type": "jsonl", "columns": COLUMNS}},
        "out": {**TARGETS[target], "table": f"public.{table}", "mode": "insert_direct"},
    }
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _zstd(data: bytes) -> bytes:
    import pyarrow as pa

    return pa.Codec("zstd").compress(data, asbytes=True)


@pytest.mark.stack
@pytest.mark.parametrize("target", ["hologres", "redshift"])
def test_json_lines_objects_load_exactly_once_with_bad_lines_rejected(stack, s3, hologres, redshift, tmp_path,
                                                                      target):
    conn = hologres if target == "hologres" else redshift
    unique = f"t{uuid.uuid4().hex[:10]}"
    bad = _lines_of(_orders(1000, 2))[:-1] + b"\n" + b'{"order_id": "b1", "user_id": "many"}\n' + b"not json\n"
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.jsonl.gz", Body=gzip.compress(_lines_of(_orders(0, 500))))
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/b.jsonl.bz2", Body=bz2.compress(bad))
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/c.jsonl.zst", Body=_zstd(_lines_of(_orders(2000, 20))))
    config = config_module.load(_config(tmp_path / "c.yml", f"{unique}/", unique, target))

    summary = BatchLoad(config).run()
    assert (summary.rows, summary.rejected) == (522, 2)
    assert BatchLoad(config).run().loaded == []  # the ledger has every object

    assert conn.execute(f"SELECT count(*), sum(order_amt) FROM public.{unique}").fetchone() == (
        522, sum(r["order_amt"] for r in _orders(0, 500) + _orders(1000, 2) + _orders(2000, 20)))
    assert conn.execute(f"SELECT book_name FROM public.{unique} WHERE order_id = 'o00007'").fetchone() == ("人間失格",)
    rejected = conn.execute(f"SELECT source, line_number, column_name, raw_record FROM public.{unique}_rejected "
                            "ORDER BY line_number").fetchall()
    assert [(r[0], r[1], r[2]) for r in rejected] == [
        (f"s3://{stack.bucket}/{unique}/b.jsonl.bz2", 3, "user_id"),
        (f"s3://{stack.bucket}/{unique}/b.jsonl.bz2", 4, None)]
    assert rejected[1][3] == "not json"


@pytest.mark.stack
def test_guess_finds_json_lines_in_a_seed_without_a_parser_and_the_guessed_config_loads(stack, s3, hologres,
                                                                                        tmp_path):
    from pipeline.commands.guess import guess_config

    unique = f"t{uuid.uuid4().hex[:10]}"
    # zstd: what the object holds is found under its compression.
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.jsonl.zst", Body=_zstd(_lines_of(_orders(0, 50))))
    raw = {"in": {"type": "s3", "bucket": stack.bucket, "path_prefix": f"{unique}/"},
           "out": {**TARGETS["hologres"], "table": f"public.{unique}", "mode": "insert_direct"}}
    seed = config_module.parse(raw, name=unique, require_parser=False)
    completed = guess_config(seed, raw)
    assert completed["in"]["parser"] == {"type": "jsonl", "columns": COLUMNS}
    assert BatchLoad(config_module.parse(completed, name=unique)).run().rows == 50
