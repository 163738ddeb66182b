"""S3 to warehouse on the local stack: guess, run, every mode, exactly once, bad records."""

from __future__ import annotations

import bz2
import gzip
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline.errors import RecordError, SourceError
from pipeline_tests.books import COLUMNS, HEADER

pytestmark = pytest.mark.stack



def rows_csv(start: int, count: int, *, title: str = "人間失格") -> str:
    return "".join(f"o{i:06d},{i % 50 + 1},6,{title},{i % 5 + 1},{(i % 5 + 1) * 100}\n"
                   for i in range(start, start + count))


def write_config(path: Path, prefix: str, table: str, **out: object) -> Path:
    parser = {"type": "csv", "charset": "UTF-8", "newline": "LF", "delimiter": ",", "quote": '"',
              "escape": '"', "skip_header_lines": 1, "columns": COLUMNS}
    parser.update(out.pop("parser", {}))
    document = {
        "in": {"type": "s3", "bucket": "{{ env.PIPELINE_BUCKET }}", "path_prefix": prefix, "parser": parser},
        "exec": {"max_threads": 2},
        "out": {"type": "hologres", "url": "{{ env.HOLOGRES_URL }}", "table": f"public.{table}",
                "mode": "insert_direct", "primary_key": ["order_id"], **out},
    }
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def put(s3, bucket: str, key: str, body: str | bytes, **extra: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body, **extra)


def count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]  # test-owned names


def pipeline_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                            timeout=300, env=os.environ.copy())
    if check and result.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_tutorial_seed_goes_through_guess_then_run_plain_and_encrypted(stack, s3, hologres, tmp_path, unique):
    from pipeline.generate import generate_books

    body = b"".join(generate_books(10_000, seed=7))
    put(s3, stack.bucket, f"{unique}/original-data/book_order.csv", body)
    put(s3, stack.bucket, f"{unique}/encryption-data/book_order.csv", b"".join(generate_books(10_000, seed=8)),
        ServerSideEncryption="aws:kms", SSEKMSKeyId=stack.kms_key)
    seed = tmp_path / "seed.yml"
    seed.write_text(f"""
in:
  type: s3
  bucket: bob-embulk-demo
  path_prefix: {unique}/
  endpoint: '{{{{ env.AWS_ENDPOINT_URL }}}}'
  access_key_id: '{{{{ env.AWS_ACCESS_KEY_ID }}}}'
  secret_access_key: '{{{{ env.AWS_SECRET_ACCESS_KEY }}}}'
out:
  type: hologres
  url: '{{{{ env.HOLOGRES_URL }}}}'
  table: public.{unique}
  mode: insert_direct
  primary_key: [order_id]
  table_properties: {{orientation: column, distribution_key: order_id}}
""")
    guessed = pipeline_cli("guess", str(seed), "-o", str(tmp_path / "book_order.yml"))
    assert "CALL set_table_property" in guessed.stderr
    completed = yaml.safe_load((tmp_path / "book_order.yml").read_text())
    assert completed["in"]["access_key_id"] == "{{ env.AWS_ACCESS_KEY_ID }}"  # no secret written out
    assert [c["name"] for c in completed["in"]["parser"]["columns"]] == [c["name"] for c in COLUMNS]
    first = pipeline_cli("run", str(tmp_path / "book_order.yml"))
    assert "loaded 2 objects, 20,000 rows, 0 rejected" in first.stdout
    assert count(hologres, unique) == 20_000
    second = pipeline_cli("run", str(tmp_path / "book_order.yml"))
    assert "nothing new to load" in second.stdout
    assert count(hologres, unique) == 20_000
    amounts = hologres.execute(f"SELECT count(*) FROM public.{unique} WHERE order_amt % order_cnt <> 0").fetchone()
    assert amounts[0] == 0


def test_a_changed_object_is_loaded_again_and_a_new_object_alone(stack, s3, hologres, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, mode="merge")
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + rows_csv(0, 10))
    BatchLoad(config_module.load(config_path)).run()
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + rows_csv(0, 10, title="こころ"))
    put(s3, stack.bucket, f"{unique}/b.csv", HEADER + rows_csv(10, 5))
    summary = BatchLoad(config_module.load(config_path)).run()
    assert sorted(r.key for r in summary.loaded) == [f"{unique}/a.csv", f"{unique}/b.csv"]
    assert count(hologres, unique) == 15
    titles = hologres.execute(f"SELECT DISTINCT book_name FROM public.{unique} WHERE order_id < 'o000010'")
    assert titles.fetchall() == [("こころ",)]


@pytest.mark.parametrize("mode", ["insert", "truncate_insert", "replace"])
def test_staged_modes_publish_everything_in_one_transaction(stack, s3, hologres, tmp_path, unique, mode):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, mode=mode)
    for i in range(3):
        put(s3, stack.bucket, f"{unique}/part{i}.csv", HEADER + rows_csv(i * 100, 100))
    summary = BatchLoad(config_module.load(config_path)).run()
    assert summary.rows == 300 and count(hologres, unique) == 300
    assert BatchLoad(config_module.load(config_path)).run().loaded == []
    put(s3, stack.bucket, f"{unique}/part3.csv", HEADER + rows_csv(300, 100))
    again = BatchLoad(config_module.load(config_path)).run()
    if mode == "insert":
        assert again.rows == 100 and count(hologres, unique) == 400
    else:  # these modes rebuild the table from every object
        assert again.rows == 400 and count(hologres, unique) == 400
    leftovers = hologres.execute("SELECT count(*) FROM information_schema.tables WHERE table_name LIKE %s",
                                 (f"{unique}_pl_%",)).fetchone()[0]
    assert leftovers == 0


def test_insert_direct_commits_each_object_with_its_ledger_row(stack, s3, hologres, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique)
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + rows_csv(0, 20))
    put(s3, stack.bucket, f"{unique}/b.csv", HEADER + rows_csv(20, 30))
    BatchLoad(config_module.load(config_path)).run()
    ledger = hologres.execute("SELECT object_key, rows FROM public.pipeline_object_ledger WHERE pipeline = %s "
                              "AND object_key LIKE %s ORDER BY 1", (unique, f"{unique}/%")).fetchall()
    assert ledger == [(f"{unique}/a.csv", 20), (f"{unique}/b.csv", 30)]


def test_a_bad_value_stops_the_object_naming_object_line_column_and_value(stack, s3, hologres, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique,
                               parser={"stop_on_invalid_record": True})
    put(s3, stack.bucket, f"{unique}/bad.csv", HEADER + rows_csv(0, 3) + "o9,abc,6,x,1,100\n" + rows_csv(3, 3))
    result = pipeline_cli("run", str(config_path), check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"s3://{stack.bucket}/{unique}/bad.csv line 5, column user_id" in result.stderr
    assert "'abc'" in result.stderr
    assert count(hologres, unique) == 0  # none of its rows committed


def test_rejected_records_land_in_the_rejected_table_and_add_up(stack, s3, hologres, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique,
                               parser={"stop_on_invalid_record": False})
    body = (HEADER + rows_csv(0, 4) + "o8,abc,6,x,1,100\n" + "o9,1,6\n" + '"o10,1,6,x,1,1\n' )
    put(s3, stack.bucket, f"{unique}/mixed.csv", body)
    summary = BatchLoad(config_module.load(config_path)).run()
    result = summary.loaded[0]
    rejected = hologres.execute(
        f"SELECT source, line_number, column_name, raw_record FROM public.{unique}_rejected ORDER BY line_number"
    ).fetchall()
    assert result.rows == 4 and result.rejected == 3 and result.parsed == 7
    assert [(r[1], r[2]) for r in rejected][:1] == [(6, "user_id")]
    assert [r[1] for r in rejected] == [6, 7, 8]
    assert all(r[0] == f"s3://{stack.bucket}/{unique}/mixed.csv" for r in rejected)
    assert count(hologres, unique) == 4


def test_compressed_objects_are_decoded_by_content(stack, s3, hologres, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique)
    put(s3, stack.bucket, f"{unique}/a.csv.gz", gzip.compress((HEADER + rows_csv(0, 10)).encode()))
    put(s3, stack.bucket, f"{unique}/b.data", bz2.compress((HEADER + rows_csv(10, 10)).encode()))
    assert BatchLoad(config_module.load(config_path)).run().rows == 20


@pytest.mark.parametrize("target", ["hologres", "redshift"])
def test_gzip_bzip2_and_zstd_objects_load_on_either_target(stack, s3, request, tmp_path, unique, target):
    # On Redshift, COPY reads each object from S3 itself: with the GZIP, BZIP2 or ZSTD its bytes call for.
    import pyarrow as pa

    from pipeline_tests.faults.loads import write_config as write_target_config

    zstd = pa.Codec("zstd")
    bodies = {"a.csv.gz": gzip.compress((HEADER + rows_csv(0, 10)).encode()),
              "b.csv.bz2": bz2.compress((HEADER + rows_csv(10, 10)).encode()),
              # Two frames, as `zstd -c a b` or a writer that flushes frames writes them.
              "c.csv.zst": (zstd.compress((HEADER + rows_csv(20, 3)).encode(), asbytes=True)
                            + zstd.compress(rows_csv(23, 7).encode(), asbytes=True))}
    for key, body in bodies.items():
        put(s3, stack.bucket, f"{unique}/{key}", body)
    path = write_target_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, target=target,
                               primary_key=["order_id"])
    summary = BatchLoad(config_module.load(path)).run()
    assert summary.rows == 30 and summary.rejected == 0
    assert [r.path for r in summary.loaded] == ["fast"] * 3  # none fell back to our own reader
    conn = request.getfixturevalue(target)
    ids = [r[0] for r in conn.execute(f"SELECT order_id FROM public.{unique} ORDER BY order_id")]
    assert ids == [f"o{i:06d}" for i in range(30)]


def test_shift_jis_crlf_quoted_newlines_and_empty_objects(stack, s3, hologres, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, parser={"charset": "MS932"})
    text = (HEADER + 'o1,1,1,"嫌われる,\r\n勇気",1,500\r\n' + 'o2,2,2,"ノルウェイの""森""",1,600\r\n')
    put(s3, stack.bucket, f"{unique}/sjis.csv", text.encode("cp932"))
    put(s3, stack.bucket, f"{unique}/empty.csv", b"")
    put(s3, stack.bucket, f"{unique}/header-only.csv", HEADER.encode())
    summary = BatchLoad(config_module.load(config_path)).run()
    # As embulk-input-s3 does, a zero-size object is passed over; the header-only one loads no row.
    assert summary.rows == 2 and [r.key for r in summary.loaded] == [f"{unique}/header-only.csv", f"{unique}/sjis.csv"]
    names = hologres.execute(f"SELECT book_name FROM public.{unique} ORDER BY order_id").fetchall()
    # The quoted line break is the config's newline (LF), as Embulk's tokenizer writes it, not the file's CRLF.
    assert names == [("嫌われる,\n勇気",), ('ノルウェイの"森"',)]


def test_a_hostile_header_cannot_inject_sql(stack, s3, hologres, tmp_path, unique):
    hostile = 'x"); DROP TABLE public.pipeline_object_ledger; --'
    put(s3, stack.bucket, f"{unique}/h.csv", f'id,"{hostile.replace(chr(34), chr(34) * 2)}"\n1,2\n')
    seed = tmp_path / "seed.yml"
    seed.write_text(f"in: {{type: s3, bucket: bob-embulk-demo, path_prefix: {unique}/}}\n"
                    f"out: {{type: hologres, url: '{{{{ env.HOLOGRES_URL }}}}', table: public.{unique}}}\n")
    pipeline_cli("guess", str(seed), "-o", str(tmp_path / f"{unique}.yml"))
    pipeline_cli("run", str(tmp_path / f"{unique}.yml"))
    columns = hologres.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                               "ORDER BY ordinal_position", (unique,)).fetchall()
    assert columns == [("id",), (hostile,)]
    assert hologres.execute("SELECT to_regclass('public.pipeline_object_ledger')").fetchone()[0] is not None


def test_a_table_missing_a_configured_column_is_a_clear_error(stack, s3, hologres, tmp_path, unique):
    hologres.execute(f"CREATE TABLE public.{unique} (order_id text PRIMARY KEY, user_id bigint)")
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique)
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + rows_csv(0, 1))
    result = pipeline_cli("run", str(config_path), check=False)
    assert result.returncode == 1
    assert f"table public.{unique} has no column book_id, book_name, order_cnt, order_amt" in result.stderr


def test_kill_9_mid_run_then_rerun_leaves_exactly_the_source_rows(stack, s3, hologres, tmp_path, unique):
    from pipeline.generate import generate_books

    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique)
    for i in range(6):
        put(s3, stack.bucket, f"{unique}/part{i}.csv", b"".join(generate_books(20_000, seed=i)))
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(config_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())

    def objects_committed() -> int:
        if hologres.execute("SELECT to_regclass('public.pipeline_object_ledger')").fetchone()[0] is None:
            return 0
        return hologres.execute("SELECT count(*) FROM public.pipeline_object_ledger WHERE pipeline = %s",
                                (unique,)).fetchone()[0]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and objects_committed() == 0:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # after the first object committed, before the last
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert 0 < objects_committed() < 6
    pipeline_cli("run", str(config_path))
    total, distinct = hologres.execute(f"SELECT count(*), count(DISTINCT order_id) FROM public.{unique}").fetchone()
    assert total == distinct == 120_000


def test_the_record_error_names_where_and_what():
    error = RecordError("s3://b/k.csv", 12, "not a 64-bit integer", column="user_id", value="abc")
    assert str(error) == "s3://b/k.csv line 12, column user_id: not a 64-bit integer (value 'abc')"


def test_filters_shape_s3_rows_with_a_stable_uuid_per_line(stack, s3, hologres, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, primary_key=["id"])
    document = yaml.safe_load(config_path.read_text())
    document["filters"] = [{"type": "add_uuid", "column": "row_uuid"},
                           {"type": "rename", "columns": {"order_id": "id"}},
                           {"type": "drop_fields", "fields": ["book_name"]}]
    config_path.write_text(yaml.safe_dump(document, allow_unicode=True))
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + rows_csv(0, 3))
    BatchLoad(config_module.load(config_path)).run()
    rows = hologres.execute(f"SELECT * FROM public.{unique} ORDER BY id").fetchall()
    columns = [c.name for c in hologres.execute(f"SELECT * FROM public.{unique} LIMIT 0").description]
    assert columns == ["id", "user_id", "book_id", "order_cnt", "order_amt", "row_uuid"]
    assert [r[0] for r in rows] == ["o000000", "o000001", "o000002"]
    from pipeline.filters import deterministic_uuid, s3_identity

    etag = s3.head_object(Bucket=stack.bucket, Key=f"{unique}/a.csv")["ETag"].strip('"')
    assert rows[0][5] == deterministic_uuid(s3_identity(f"s3://{stack.bucket}/{unique}/a.csv", etag, 2))


def test_a_line_holding_only_the_copy_end_marker_does_not_truncate_the_object(stack, s3, hologres, tmp_path,
                                                                               unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique,
                               parser={"columns": [{"name": "order_id", "type": "string"}]}, primary_key=[])
    put(s3, stack.bucket, f"{unique}/a.csv", "order_id\nfirst\n\\.\nafter-the-marker\n")
    summary = BatchLoad(config_module.load(config_path)).run()
    assert summary.rows == 3 and summary.loaded[0].path == "checked"
    values = [r[0] for r in hologres.execute(f"SELECT order_id FROM public.{unique} ORDER BY 1")]
    assert values == ["\\.", "after-the-marker", "first"]


def test_timestamps_without_an_offset_are_read_as_utc(stack, s3, hologres, tmp_path, unique):
    columns = [{"name": "order_id", "type": "string"}, {"name": "at", "type": "timestamp",
                                                        "format": "%Y-%m-%d %H:%M:%S"}]
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, parser={"columns": columns})
    put(s3, stack.bucket, f"{unique}/a.csv", "order_id,at\no1,2024-01-02 03:04:05\n")
    BatchLoad(config_module.load(config_path)).run()
    epoch = hologres.execute(f"SELECT extract(epoch FROM at)::bigint FROM public.{unique}").fetchone()[0]
    assert epoch == 1704164645


def test_staged_modes_move_rejected_records_with_the_rows(stack, s3, hologres, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, mode="insert",
                               parser={"stop_on_invalid_record": False})
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + rows_csv(0, 2) + "o9,abc,6,x,1,100\n")
    summary = BatchLoad(config_module.load(config_path)).run()
    assert summary.rows == 2 and summary.rejected == 1
    rejected = hologres.execute(f"SELECT line_number, rejected_at IS NOT NULL FROM public.{unique}_rejected")
    assert rejected.fetchall() == [(4, True)]


def test_a_named_key_outside_the_prefix_is_refused_without_listing(stack, s3, tmp_path, unique):
    config_path = write_config(tmp_path / f"{unique}.yml", f"{unique}/", unique)
    with pytest.raises(SourceError, match="is not under"):
        BatchLoad(config_module.load(config_path)).run(keys=["elsewhere/a.csv"])


@pytest.mark.parametrize("stop", [True, False])
def test_a_row_redshift_refuses_stops_the_load_naming_it_or_is_rejected_while_the_rest_loads(
        stack, s3, redshift, tmp_path, unique, stop):
    from pipeline.errors import RecordError
    from pipeline_tests.faults.loads import write_config as write_target_config

    # 20 characters, 40 bytes: it fits varchar(32) as PostgreSQL counts, not as Redshift does.
    body = ("order_id,user_id,book_id,book_name,order_cnt,order_amt\n"
            f"a1,1,1,Short,1,10\na2,2,2,{'é' * 20},1,20\na3,3,3,Fine,1,30\n").encode()
    s3.put_object(Bucket=stack.bucket, Key=f"{unique}/orders.csv", Body=body)
    path = write_target_config(tmp_path / f"{unique}.yml", f"{unique}/", unique, target="redshift",
                               parser={"stop_on_invalid_record": stop},
                               column_options={"book_name": {"type": "varchar(32)"}})
    load = BatchLoad(config_module.load(path))

    if stop:
        with pytest.raises(RecordError) as raised:
            load.run()
        assert raised.value.source == f"s3://{stack.bucket}/{unique}/orders.csv"
        assert raised.value.position == 3 and raised.value.column == "book_name"
        assert "String length exceeds DDL length" in str(raised.value)
        assert redshift.execute(f"SELECT count(*) FROM public.{unique}").fetchone()[0] == 0
        return
    summary = load.run()
    assert summary.rows == 2 and summary.rejected == 1
    assert sorted(r[0] for r in redshift.execute(f"SELECT order_id FROM public.{unique}")) == ["a1", "a3"]
    line, column = redshift.execute(f"SELECT line_number, column_name FROM public.{unique}_rejected").fetchone()
    assert (line, column) == (3, "book_name")
    assert not BatchLoad(config_module.load(path)).run().loaded
