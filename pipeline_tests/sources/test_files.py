"""in: {type: file}: local files listed as Embulk's file input lists them, each version loaded once."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline import config as config_module
from pipeline.errors import ConfigError, SourceError
from pipeline.sources.files import FileObject, FileStore
from pipeline_tests.books import COLUMNS, HEADER
from pipeline_tests.faults.loads import TARGETS

CSV = {"type": "csv", "charset": "UTF-8", "newline": "LF", "delimiter": ",", "quote": '"', "escape": '"',
       "skip_header_lines": 1, "columns": COLUMNS}


def books(start: int, count: int) -> str:
    return HEADER + "".join(f"o{i:06d},{i % 50 + 1},6,人間失格,{i % 5 + 1},{(i % 5 + 1) * 100}\n"
                            for i in range(start, start + count))


def write_config(path: Path, prefix: str, table: str, *, target: str = "hologres", parser: dict | None = None,
                 **source: object) -> Path:
    document = {"in": {"type": "file", "path_prefix": prefix, "parser": parser or CSV, **source},
                "out": {**TARGETS[target], "table": f"public.{table}", "mode": "insert_direct"}}
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def parsed(prefix: str, **source: object):
    return config_module.parse({"in": {"type": "file", "path_prefix": prefix, "parser": CSV, **source},
                                "out": {"type": "postgresql", "url": "postgresql://localhost/x", "table": "t"}},
                               name="t")


def test_listing_follows_embulks_file_input(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for name in ("book_a.csv", "book_b.csv.gz", "sub/book_c.csv", "other.csv"):
        (data / name).write_text("x\n")
    (data / "book_empty.csv").write_text("")
    (tmp_path / "elsewhere.csv").write_text("x\n")
    os.symlink(tmp_path / "elsewhere.csv", data / "book_link.csv")

    def keys(prefix: str, **source: object) -> list[str]:
        store = FileStore(parsed(prefix, **source).input)
        return [os.path.relpath(o.key, data) for o in store.listed(lambda message: None)]

    assert keys(f"{data}/book_") == ["book_a.csv", "book_b.csv.gz"]
    assert keys(f"{data}/") == ["book_a.csv", "book_b.csv.gz", "other.csv", "sub/book_c.csv"]
    assert keys(f"{data}/", last_path=f"{data}/book_b.csv.gz") == ["other.csv", "sub/book_c.csv"]
    assert keys(f"{data}/book_", follow_symlinks=True) == ["book_a.csv", "book_b.csv.gz", "book_link.csv"]


def test_a_relative_prefix_is_read_against_the_working_directory_and_unknown_keys_are_refused(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parsed("data/book_").input.path_prefix == f"{tmp_path}/data/book_"
    assert parsed("data/").input.path_prefix == f"{tmp_path}/data/"
    with pytest.raises(ConfigError, match=r"in\.bucket: unknown key"):
        parsed("data/", bucket="b")
    with pytest.raises(SourceError, match="there is no directory"):
        FileStore(parsed("missing/").input).listed(lambda message: None)


def test_a_file_that_changes_after_it_was_listed_fails_naming_it(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"one\n")
    obj = FileStore(parsed(f"{tmp_path}/").input).named(str(path))
    path.write_bytes(b"one\ntwo\n")
    blob = FileStore(parsed(f"{tmp_path}/").input).blob(obj)
    with pytest.raises(SourceError, match=rf"file://{path} changed since it was listed"):
        list(blob.chunks())
    assert FileObject(str(path), 1, 2).etag != FileObject(str(path), 1, 3).etag


@pytest.mark.stack
@pytest.mark.parametrize("target", ["hologres", "redshift"])
def test_files_load_exactly_once_per_version_with_pipeline_run(stack, hologres, redshift, tmp_path, target):
    conn = hologres if target == "hologres" else redshift
    table = f"t{uuid.uuid4().hex[:10]}"
    data = tmp_path / "data"
    data.mkdir()
    (data / "book_1.csv").write_text(books(0, 100), encoding="utf-8")
    (data / "book_2.csv.gz").write_bytes(gzip.compress(books(100, 50).encode()))
    (data / "book_3.csv").write_text(books(200, 2) + "bad,x,6,t,1,100\n", encoding="utf-8")
    config = write_config(tmp_path / "files.yml", f"{data}/book_", table, target=target)

    def run() -> str:
        result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(config)], capture_output=True,
                                text=True, timeout=300, env=os.environ.copy())
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    assert "loaded 3 objects, 152 rows, 1 rejected" in run()
    assert "nothing new to load (3 objects already loaded)" in run()
    assert conn.execute(f"SELECT count(*) FROM public.{table}").fetchone() == (152,)
    (source, line, column) = conn.execute(f"SELECT source, line_number, column_name FROM public.{table}_rejected"
                                          ).fetchone()
    assert (source, line, column) == (f"file://{data}/book_3.csv", 4, "user_id")
    # A new file loads; a file rewritten in place is a new version (its ledger row is new too).
    (data / "book_4.csv").write_text(books(300, 10), encoding="utf-8")
    assert "loaded 1 object, 10 rows" in run()
    assert conn.execute(f"SELECT count(*) FROM public.{table}").fetchone() == (162,)


@pytest.mark.stack
def test_guess_and_preview_read_a_file_input(stack, tmp_path, capsys):
    import argparse

    from pipeline.commands import preview as preview_command
    from pipeline.commands.guess import guess_config

    data = tmp_path / "data"
    data.mkdir()
    (data / "orders.jsonl").write_text('{"order_id": "a1", "order_amt": 100}\n{"order_id": "a2", '
                                       '"order_amt": "x\\u0000"}\n', encoding="utf-8")
    raw = {"in": {"type": "file", "path_prefix": f"{data}/"},
           "out": {**TARGETS["hologres"], "table": "public.orders", "mode": "insert_direct"}}
    completed = guess_config(config_module.parse(raw, name="orders", require_parser=False), raw)
    assert completed["in"]["parser"] == {"type": "jsonl", "columns": [{"name": "order_id", "type": "string"},
                                                                      {"name": "order_amt", "type": "string"}]}
    config = tmp_path / "orders.yml"
    config.write_text(yaml.safe_dump(completed), encoding="utf-8")
    parser = argparse.ArgumentParser()
    preview_command.add_arguments(parser)
    assert preview_command.run(parser.parse_args([str(config)])) == 0
    out = capsys.readouterr().out
    # The NUL the load would reject, the preview rejects too.
    assert "a1" in out and "REJECTED:" in out and "line 2, column order_amt" in out


@pytest.mark.stack
def test_in_dagster_the_sensor_finds_each_new_file_and_its_run_loads_it_once(stack, hologres, tmp_path):
    import dagster as dg

    from pipeline.orchestration.factory import build_definitions

    table = f"t{uuid.uuid4().hex[:10]}"
    data = tmp_path / "data"
    data.mkdir()
    (data / "book_1.csv").write_text(books(0, 5), encoding="utf-8")
    (data / "book_2.csv").write_text(books(5, 3), encoding="utf-8")
    directory = tmp_path / "pipelines"
    directory.mkdir()
    write_config(directory / f"{table}.yml", f"{data}/book_", table)
    defs = build_definitions(directory)
    sensor = defs.resolve_sensor_def(f"{table}_sensor")
    job = defs.resolve_job_def(f"{table}_load")

    with dg.instance_for_test() as instance:
        def tick(cursor: str | None) -> dg.SensorResult:
            with dg.build_sensor_context(cursor=cursor, resources=defs.resources, instance=instance) as context:
                result = sensor(context)
            assert isinstance(result, dg.SensorResult), result
            return result

        first = tick(None)
        keys = [request.partition_key for request in first.run_requests]
        assert keys == [str(data / "book_1.csv"), str(data / "book_2.csv")]
        instance.add_dynamic_partitions(f"{table}_objects", keys)
        for key in keys:
            result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
            assert result.success
            (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == table]
            metadata = event.materialization.metadata
            assert metadata["object"].value == f"file://{key}" and metadata["new_rows"].value in (5, 3)
        again = job.execute_in_process(partition_key=keys[0], instance=instance, raise_on_error=False)
        assert again.success  # the ledger has that version: nothing loads twice
        assert hologres.execute(f"SELECT count(*) FROM public.{table}").fetchone() == (8,)

        quiet = tick(first.cursor)
        assert not quiet.run_requests  # nothing new after the last path seen, and the ledger has the rest
        (data / "book_3.csv").write_text(books(8, 2), encoding="utf-8")
        # A file rewritten in place is a new version (size and modification time): the sweep finds it.
        (data / "book_1.csv").write_text(books(0, 6), encoding="utf-8")
        os.utime(data / "book_1.csv", ns=(1, 10**18))
        found = tick(quiet.cursor)
        assert sorted(r.partition_key for r in found.run_requests) == [str(data / "book_1.csv"),
                                                                       str(data / "book_3.csv")]
