"""exec.min_output_tasks: one object's pages dealt to several COPY writers, exactly once on every target.

Objects here are small, so the tests shrink the page (the S3 read chunk) and the bytes each writer needs;
the bench measures the real sizes (docs/benchmarks.md, "Scatter").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline.errors import ConfigError
from pipeline.warehouse import scatter as scatter_module
from pipeline.warehouse import state
from pipeline.warehouse.dialects.hologres import Hologres
from pipeline.warehouse.dialects.postgresql import PostgreSQL
from pipeline.warehouse.dialects.redshift import Redshift
from pipeline.warehouse.scatter import Writer, unsent, writers_for
from pipeline_tests.books import COLUMNS, HEADER

V22 = "Hologres 2.2.11 (tag: 2.2.11 build: Release), compatible with PostgreSQL 11.3"


# -- unit: how many writers, and what is left to send -----------------------------------------------------------

def test_writers_follow_min_output_tasks_shared_among_objects_and_need_enough_bytes_each():
    size = 100 * scatter_module.SCATTER_BYTES_PER_WRITER
    assert writers_for(size, 4, 1) == 4
    assert writers_for(size, 4, 2) == 2  # Embulk scatters only while there are fewer inputs than tasks
    assert writers_for(size, 4, 4) == 1
    assert writers_for(3 * scatter_module.SCATTER_BYTES_PER_WRITER, 8, 1) == 3
    assert writers_for(scatter_module.SCATTER_BYTES_PER_WRITER - 1, 8, 1) == 1  # a small object: one COPY
    assert writers_for(size, None, 1) == (os.cpu_count() or 1)  # unset: Embulk's default, one per core


def test_unsent_sends_each_page_less_the_ranges_already_committed():
    pages = [b"aaaa", b"bbbb", b"cccc"]  # body offsets 0-4, 4-8, 8-12
    size = [0]
    assert list(unsent(pages, [(2, 6), (9, 10)], size)) == [(0, b"aa"), (6, b"bb"), (8, b"c"), (10, b"cc")]
    assert size == [12]
    assert list(unsent(pages, [(0, 12)], size)) == []
    assert list(unsent(pages, [], size)) == [(0, b"aaaa"), (4, b"bbbb"), (8, b"cccc")]


def test_a_writers_part_merges_the_pages_it_took_one_after_another():
    writer = Writer(conn=None)  # type: ignore[arg-type]
    for offset, size in [(0, 4), (4, 4), (12, 4)]:
        writer.add(offset, size)
    writer.rows = 3
    assert writer.part.ranges == ((0, 8), (12, 16)) and writer.part.nbytes == 12
    assert state.Part.decode(writer.part.encode()) == writer.part.ranges


def test_each_target_says_where_writers_cannot_work_side_by_side():
    assert PostgreSQL().single_writer("insert_direct", primary_key=True) is None
    assert "last row of a key" in PostgreSQL().single_writer("merge", primary_key=True)
    assert "table lock" in Hologres(V22).single_writer("insert_direct", primary_key=True)
    assert Hologres(V22).single_writer("append", primary_key=False) is None  # COPY takes row locks there
    assert "slices" in Redshift().single_writer("insert_direct", primary_key=False)


def test_a_stream_refuses_min_output_tasks_saying_why():
    path = Path(__file__).parents[2] / "pipelines" / "sensor_data.yml"
    raw = yaml.safe_load(path.read_text())
    raw.setdefault("exec", {})["min_output_tasks"] = 4
    env = {"PIPELINE_STREAM": "s", "REDSHIFT_URL": "postgresql://u:p@127.0.0.1:5439/r", "REDSHIFT_IAM_ROLE": "r"}
    with pytest.raises(ConfigError) as raised:
        config_module.parse(raw, environ=env)
    assert "exec.min_output_tasks" in str(raised.value) and "stream" in str(raised.value)


# -- on the local stack ---------------------------------------------------------------------------------------

def book_rows(count: int, *, bad_at: int | None = None) -> tuple[bytes, set[tuple]]:
    """Rows whose names hold commas, quotes and line breaks inside quotes, so a page cut in the wrong place shows."""
    lines, expected = [], set()
    for i in range(count):
        name = f'名前 {i}, "vol" {i % 7}\nline two' if i % 3 == 0 else f"plain {i}"
        cnt = "x" if i == bad_at else str(i % 5 + 1)
        quoted = '"' + name.replace('"', '""') + '"'
        lines.append(f"o{i:07d},{i % 50},{i % 9},{quoted},{cnt},{i * 10}\n")
        if i != bad_at:
            expected.add((f"o{i:07d}", i % 50, i % 9, name, i % 5 + 1, i * 10))
    return (HEADER + "".join(lines)).encode(), expected


@pytest.fixture
def small_pages(monkeypatch):
    """Pages of about 8 KB and a writer per 32 KB, so a 1 MB object is dealt to every writer asked for."""
    from pipeline.sources import s3 as s3_module

    monkeypatch.setattr(s3_module, "CHUNK_SIZE", 8 << 10)
    monkeypatch.setattr(scatter_module, "SCATTER_BYTES_PER_WRITER", 32 << 10)


@pytest.fixture
def postgresql(stack):
    with psycopg.connect(stack.postgresql_url, autocommit=True) as connection:
        yield connection


def make_config(tmp_path: Path, stack, prefix: str, table: str, *, target: str = "postgresql", tasks: int | None = 3,
                mode: str = "insert_direct", primary_key: bool = True) -> Path:
    url = stack.postgresql_url if target == "postgresql" else stack.hologres_url
    document = {
        "in": {"type": "s3", "bucket": stack.bucket, "path_prefix": prefix,
               "parser": {"type": "csv", "newline": "LF", "escape": "\"", "skip_header_lines": 1,
                          "columns": COLUMNS}},
        "exec": {"max_threads": 2, **({"min_output_tasks": tasks} if tasks else {})},
        "out": {"type": target, "url": url, "table": f"public.{table}", "mode": mode,
                **({"primary_key": ["order_id"]} if primary_key else {})},
    }
    path = tmp_path / f"{table}.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def table_rows(conn, table: str) -> list[tuple]:
    return conn.execute(f"SELECT order_id, user_id, book_id, book_name, order_cnt, order_amt FROM public.{table}"
                        ).fetchall()  # test-owned names


def run(path: Path, emitted: list[str] | None = None):
    return BatchLoad(config_module.load(path), emit=(emitted.append if emitted is not None else lambda _: None)).run()


@pytest.fixture
def unique() -> str:
    return f"sc{uuid.uuid4().hex[:10]}"


@pytest.mark.stack
def test_pages_dealt_to_three_writers_load_every_record_once_with_quoted_line_breaks(
        stack, s3, postgresql, small_pages, tmp_path, unique):
    body, expected = book_rows(12_000)
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.csv", Body=body)

    summary = run(make_config(tmp_path, stack, f"{unique}/", unique))

    [result] = summary.loaded
    assert (result.writers, result.path, result.rows) == (3, "fast", 12_000)
    rows = table_rows(postgresql, unique)
    assert len(rows) == 12_000 and set(rows) == expected
    ledger = state.ledger_rows(postgresql, "public", unique)
    assert [(r["object_key"], r["rows"], r["bytes"]) for r in ledger] == [(f"{unique}/a.csv", 12_000,
                                                                           len(body) - len(HEADER))]
    assert state.read_parts(postgresql, "public", unique, f"{unique}/a.csv", ledger[0]["etag"]) == []
    assert run(make_config(tmp_path, stack, f"{unique}/", unique)).loaded == []  # the ledger has it


@pytest.mark.stack
def test_a_writer_that_fails_to_commit_leaves_its_committed_parts_and_the_rerun_sends_only_the_rest(
        stack, s3, postgresql, small_pages, tmp_path, unique, monkeypatch):
    body, expected = book_rows(12_000)
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.csv", Body=body)
    path = make_config(tmp_path, stack, f"{unique}/", unique)
    real_write_part = state.write_part
    calls = []

    def connection_lost_at_the_second_part(cur, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real_write_part(cur, *args, **kwargs)

    monkeypatch.setattr(state, "write_part", connection_lost_at_the_second_part)
    with pytest.raises(Exception, match="connection was lost"):
        run(path)

    committed = len(table_rows(postgresql, unique))
    etag = s3.head_object(Bucket=stack.bucket, Key=f"{unique}/a.csv")["ETag"].strip('"')
    parts = state.read_parts(postgresql, "public", unique, f"{unique}/a.csv", etag)
    assert len(parts) == 1 and 0 < committed == parts[0].rows < 12_000  # the first writer's rows, and its part
    assert state.ledger_rows(postgresql, "public", unique) == []

    monkeypatch.setattr(state, "write_part", real_write_part)
    emitted: list[str] = []
    # The rerun has one object among others, so it asks for one writer: the parts still decide what is sent.
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/b.csv", Body=HEADER + "z1,1,1,b,1,1\n")
    summary = run(path, emitted)

    rows = table_rows(postgresql, unique)
    assert len(rows) == 12_001 and set(rows) == expected | {("z1", 1, 1, "b", 1, 1)}
    assert any(f"{committed:,} rows were committed by an interrupted load" in line for line in emitted)
    by_key = {r["object_key"]: r["rows"] for r in state.ledger_rows(postgresql, "public", unique)}
    assert by_key == {f"{unique}/a.csv": 12_000, f"{unique}/b.csv": 1}
    assert state.read_parts(postgresql, "public", unique, f"{unique}/a.csv", etag) == []
    assert {r.key for r in summary.loaded} == {f"{unique}/a.csv", f"{unique}/b.csv"}


@pytest.mark.stack
def test_a_bad_value_on_one_page_rolls_every_writer_back_and_the_checked_path_rejects_only_that_record(
        stack, s3, postgresql, small_pages, tmp_path, unique):
    body, expected = book_rows(12_000, bad_at=9_000)
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.csv", Body=body)

    summary = run(make_config(tmp_path, stack, f"{unique}/", unique))

    [result] = summary.loaded
    assert (result.path, result.rows, result.rejected) == ("checked", 11_999, 1)
    assert set(table_rows(postgresql, unique)) == expected
    [rejected] = postgresql.execute(f"SELECT line_number, column_name FROM public.{unique}_rejected").fetchall()
    assert rejected[1] == "order_cnt" and rejected[0] > 9_000  # physical lines: quoted names span two


@pytest.mark.stack
def test_a_run_killed_at_any_point_of_a_scattered_load_then_rerun_leaves_exactly_the_source(
        stack, s3, postgresql, tmp_path, unique):
    """`pipeline run` as users run it, with the real sizes: a 34 MB object, min_output_tasks 2 (16 MB a writer)."""
    from pipeline.generate import generate_books

    body = b"".join(generate_books(480_000, seed=11))
    assert len(body) >= 2 * scatter_module.SCATTER_BYTES_PER_WRITER
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.csv", Body=body)
    path = make_config(tmp_path, stack, f"{unique}/", unique, tasks=2)
    env = {**os.environ, **stack.env, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:  # the load has begun: kill it wherever it is
        if "object(s) to load" in line:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)

    rerun = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(path)], env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    total, distinct = postgresql.execute(f"SELECT count(*), count(DISTINCT order_id) FROM public.{unique}").fetchone()
    assert total == distinct == 480_000
    [ledger] = state.ledger_rows(postgresql, "public", unique)
    assert ledger["rows"] == 480_000


@pytest.mark.stack
def test_hologres_with_a_primary_key_loads_with_one_writer_and_says_why(
        stack, s3, hologres, small_pages, tmp_path, unique):
    body, expected = book_rows(6_000)
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.csv", Body=body)
    emitted: list[str] = []

    summary = run(make_config(tmp_path, stack, f"{unique}/", unique, target="hologres", tasks=4), emitted)

    assert [r.writers for r in summary.loaded] == [1]
    assert any(line.startswith("exec.min_output_tasks: ") and "table lock" in line for line in emitted)
    assert set(table_rows(hologres, unique)) == expected


@pytest.mark.stack
def test_hologres_without_a_primary_key_scatters_through_its_multi_dml_transactions(
        stack, s3, hologres, small_pages, tmp_path, unique):
    body, expected = book_rows(9_000)
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.csv", Body=body)

    summary = run(make_config(tmp_path, stack, f"{unique}/", unique, target="hologres", tasks=3,
                              primary_key=False))

    assert [r.writers for r in summary.loaded] == [3]
    rows = table_rows(hologres, unique)
    assert len(rows) == 9_000 and set(rows) == expected


@pytest.mark.stack
@pytest.mark.parametrize("mode", ["insert", "truncate_insert", "replace"])
def test_staged_modes_scatter_into_their_stage_and_publish_once(
        stack, s3, postgresql, small_pages, tmp_path, unique, mode):
    body, expected = book_rows(9_000)
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/a.csv", Body=body)

    summary = run(make_config(tmp_path, stack, f"{unique}/", unique, mode=mode))

    assert [r.writers for r in summary.loaded] == [3]
    rows = table_rows(postgresql, unique)
    assert len(rows) == 9_000 and set(rows) == expected
