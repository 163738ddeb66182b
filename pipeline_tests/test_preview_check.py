"""`pipeline preview` and `pipeline check` on the local stack: read-only looks before a load."""

from __future__ import annotations

import argparse
import io
import json
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline import config as config_module
from pipeline.commands import check as check_command
from pipeline.commands import preview as preview_command
from pipeline.commands.preview import display_width
from pipeline.inspect import check, preview
from pipeline.local.stack import free_port
from pipeline_tests.books import COLUMNS, HEADER

pytestmark = pytest.mark.stack

SENSOR_DATA = Path(__file__).resolve().parents[1] / "pipelines" / "sensor_data.yml"


@pytest.fixture
def unique() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def book_config(path: Path, prefix: str, table: str, *, parser: dict | None = None, **out: object) -> Path:
    document = {
        "in": {"type": "s3", "bucket": "{{ env.PIPELINE_BUCKET }}", "path_prefix": prefix,
               "parser": {"type": "csv", "charset": "UTF-8", "newline": "LF", "skip_header_lines": 1,
                          "columns": COLUMNS, **(parser or {})}},
        "out": {"type": "hologres", "url": "{{ env.HOLOGRES_URL }}", "table": f"public.{table}",
                "mode": "insert_direct", "primary_key": ["order_id"], **out},
    }
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def sensor_config(path: Path, stream: str, **out: object) -> Path:
    document = yaml.safe_load(SENSOR_DATA.read_text())
    document["in"]["stream"] = stream
    document["out"]["table"] = f"sensor_schema.{path.stem}"
    document["out"].update(out)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def command(module, argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    code = module.run(parser.parse_args(argv))
    return code, capsys.readouterr().out


def put_books(s3, bucket: str, key: str, body: str, encoding: str = "utf-8", **extra: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=(HEADER + body).encode(encoding), **extra)


def table_exists(conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()[0]


# --------------------------------------------------------------------------- preview


def test_preview_prints_book_orders_typed_for_the_target_and_creates_nothing(stack, s3, hologres, tmp_path,
                                                                             unique, capsys):
    body = "".join(f"o{i:04d},{i},6,人間失格,{i % 5 + 1},{(i % 5 + 1) * 100}\n" for i in range(50))
    put_books(s3, stack.bucket, f"{unique}/book_order.csv", body)
    path = book_config(tmp_path / "book_order.yml", f"{unique}/", unique)

    code, out = command(preview_command, [str(path), "--rows", "5"], capsys)

    lines = out.splitlines()
    assert code == 0
    assert lines[1].split(" | ")[1:] == ["order_id", "user_id", "book_id", "book_name", "order_cnt", "order_amt"]
    assert [cell.strip() for cell in lines[2].split(" | ")[1:]] == ["text", "bigint", "bigint", "text", "bigint",
                                                                     "bigint"]
    assert "o0004" in out and "o0005" not in out
    assert "5 records shown, 0 rejected" in out
    assert not table_exists(hologres, unique)

    code, out = command(preview_command, [str(path), "--rows", "2", "--format", "json"], capsys)
    document = json.loads(out)
    assert document["rows"][1]["values"] == {"order_id": "o0001", "user_id": "1", "book_id": "6",
                                             "book_name": "人間失格", "order_cnt": "2", "order_amt": "200"}
    assert document["columns"][1] == {"name": "user_id", "type": "long", "sql_type": "bigint"}


def test_preview_of_a_shift_jis_object_prints_the_japanese_text_aligned(stack, s3, tmp_path, unique, capsys):
    body = "o1,1,6,人間失格,1,100\no2,2,7,こころ,2,200\no3,3,8,A Book,1,100\n"
    put_books(s3, stack.bucket, f"{unique}/sjis.csv", body, encoding="shift_jis")
    path = book_config(tmp_path / "sjis.yml", f"{unique}/", unique, parser={"charset": "Shift_JIS"})

    code, out = command(preview_command, [str(path)], capsys)

    assert code == 0
    rows = [line for line in out.splitlines() if line.split(" | ")[0].strip() in ("2", "3", "4")]
    assert [row.split(" | ")[4].strip() for row in rows] == ["人間失格", "こころ", "A Book"]
    # The column after the Japanese titles starts at the same terminal column on every row.
    starts = {display_width(row[:row.index(" | ", row.index(title))]) for row, title in
              zip(rows, ["人間失格", "こころ", "A Book"], strict=True)}
    assert len(starts) == 1


def test_preview_shows_a_bad_row_with_the_reason_it_would_be_rejected(stack, s3, tmp_path, unique, capsys):
    body = "o1,1,6,Kokoro,1,100\no2,two,6,Kokoro,1,100\no3,3,6,Kokoro,1,100\n"
    put_books(s3, stack.bucket, f"{unique}/bad.csv", body)
    path = book_config(tmp_path / "bad.yml", f"{unique}/", unique, parser={"stop_on_invalid_record": False})

    code, out = command(preview_command, [str(path)], capsys)

    assert code == 0
    assert "REJECTED:" in out and "line 3, column user_id" in out and "'two'" in out
    assert "3 records shown, 1 rejected" in out and f"public.{unique}_rejected" in out
    code, out = command(preview_command, [str(path), "--format", "csv"], capsys)
    assert out.splitlines()[2].startswith(f"s3://{stack.bucket}/{unique}/bad.csv,3,,,,,,,")


def put_sensors(kinesis, stream: str, start: int, count: int) -> None:
    kinesis.put_records(StreamName=stream, Records=[
        {"Data": json.dumps({"sensorId": i, "currentTemperature": 20, "status": "OK"}).encode(),
         "PartitionKey": str(i)} for i in range(start, start + count)])


@pytest.fixture
def stream(stack, kinesis) -> str:
    name = f"s{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return name


def test_preview_of_a_stream_shows_records_after_the_checkpoint_without_moving_it(stack, kinesis, redshift,
                                                                                   tmp_path, stream, capsys):
    from pipeline.stream import StreamLoad

    config = config_module.load(sensor_config(tmp_path / f"{stream}.yml", stream))
    put_sensors(kinesis, stream, 0, 3)
    StreamLoad(config).run()
    before = StreamLoad(config).checkpoints()
    put_sensors(kinesis, stream, 100, 4)
    kinesis.put_record(StreamName=stream, Data=b"{not json", PartitionKey="x")

    result = preview(config, 10)

    assert [c.name for c in result.columns] == ["sensorid", "currenttemperature", "status", "uuid"]
    assert [row.values[0] for row in result.rows if not row.rejected] == ["100", "101", "102", "103"]
    assert next(row for row in result.rows if row.rejected).error.startswith(f"{stream}/")
    code, out = command(preview_command, [str(config.path)], capsys)
    assert code == 0 and out.splitlines()[1].startswith("sequence | sensorid")
    assert "REJECTED: " in out and "4 records shown" not in out and "5 records shown, 1 rejected" in out
    assert StreamLoad(config).checkpoints() == before
    assert StreamLoad(config).run().records == 5
    # The preview encoded each record as the load did (one RowPath): the same values, the same uuid.
    loaded = redshift.execute(f"SELECT sensorid::text, currenttemperature::text, status, uuid "
                              f"FROM {config.output.qualified_table} WHERE sensorid >= 100").fetchall()
    shown = [tuple(row.values) for row in result.rows if not row.rejected]
    assert sorted(loaded) == sorted(shown)


# --------------------------------------------------------------------------- check


def test_check_passes_for_a_good_s3_config_with_plain_and_kms_objects(stack, s3, hologres, tmp_path, unique,
                                                                      capsys):
    put_books(s3, stack.bucket, f"{unique}/a-encrypted.csv", "o1,1,6,Kokoro,1,100\n",
              ServerSideEncryption="aws:kms", SSEKMSKeyId=stack.kms_key)
    put_books(s3, stack.bucket, f"{unique}/b-plain.csv", "o2,1,6,Kokoro,1,100\n")
    path = book_config(tmp_path / "good.yml", f"{unique}/", unique)

    code, out = command(check_command, [str(path)], capsys)

    assert code == 0, out
    assert "AWS credentials: from the environment" in out and "AKIA" not in out
    assert "(SSE-KMS: kms:Decrypt): allowed" in out and "KMS DescribeKey" in out
    assert "TLS not in use" in out and "the first run creates it" in out
    assert all(line.startswith("ok") for line in out.splitlines())
    assert not table_exists(hologres, unique)


def test_check_passes_for_a_good_kinesis_config(stack, kinesis, tmp_path, stream, capsys):
    path = sensor_config(tmp_path / f"{stream}.yml", stream)

    code, out = command(check_command, [str(path)], capsys)

    assert code == 0, out
    assert "Kinesis DescribeStreamSummary" in out and "ACTIVE" in out and "GetRecords" in out


def test_check_names_a_bucket_that_does_not_exist(stack, tmp_path, unique, capsys):
    path = book_config(tmp_path / "nobucket.yml", "x/", unique)
    text = path.read_text().replace("'{{ env.PIPELINE_BUCKET }}'", f"no-such-{unique}")
    path.write_text(text)

    code, out = command(check_command, [str(path)], capsys)

    assert code == 1
    assert f"FAIL  S3 ListBucket s3://no-such-{unique}/x/: S3 bucket 'no-such-{unique}' does not exist" in out


def kms_denied_s3_client():
    from botocore.awsrequest import AWSResponse

    from pipeline.sources.aws import client

    class Body:
        def __init__(self, data: bytes):
            self.data = io.BytesIO(data)

        def stream(self, **_):
            yield self.data.read()

        def read(self, *args):
            return self.data.read(*args)

    def deny(request, **_):
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>User is not '
                b"authorized to perform: kms:Decrypt on the resource associated with this ciphertext</Message>"
                b"</Error>")
        return AWSResponse(request.url, 403, {"Content-Type": "application/xml"}, Body(body))

    s3 = client("s3")
    s3.meta.events.register("before-send.s3.GetObject", deny)
    return s3


def test_check_reports_a_kms_key_the_credentials_may_not_decrypt_with(stack, s3, tmp_path, unique):
    put_books(s3, stack.bucket, f"{unique}/enc.csv", "o1,1,6,Kokoro,1,100\n",
              ServerSideEncryption="aws:kms", SSEKMSKeyId=stack.kms_key)
    config = config_module.load(book_config(tmp_path / "kms.yml", f"{unique}/", unique))

    results = check(config, s3_client=kms_denied_s3_client())

    failed = [r for r in results if not r.ok]
    assert [r.name for r in failed] == [f"S3 GetObject s3://{stack.bucket}/{unique}/enc.csv (SSE-KMS: kms:Decrypt)"]
    assert "the reading credentials need kms:Decrypt on the key" in failed[0].detail


def with_url(path: Path, url: str) -> Path:
    document = yaml.safe_load(path.read_text())
    document["out"]["url"] = url
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


def test_check_says_when_nothing_listens_where_the_warehouse_should_be(stack, s3, tmp_path, unique, capsys):
    path = with_url(book_config(tmp_path / "down.yml", f"{unique}/", unique),
                    f"postgresql://pipeline:x@127.0.0.1:{free_port()}/hologres")

    code, out = command(check_command, [str(path)], capsys)

    assert code == 1
    assert "FAIL  warehouse connection" in out and "connection refused: is the server running" in out


def test_check_says_when_the_password_is_wrong(stack, s3, tmp_path, unique, capsys):
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(stack.hologres_url)
    params["password"] = "wrong-password"
    path = with_url(book_config(tmp_path / "password.yml", f"{unique}/", unique), make_conninfo(**params))

    code, out = command(check_command, [str(path)], capsys)

    assert code == 1
    assert "password authentication failed: check the user and password" in out
    assert "wrong-password" not in out


def test_check_reports_table_columns_that_do_not_match_the_config(stack, s3, hologres, tmp_path, unique, capsys):
    hologres.execute(f"CREATE TABLE public.{unique} (order_id bigint, user_id bigint, book_id bigint, "
                     "order_cnt bigint, order_amt bigint, note text NOT NULL)")
    path = book_config(tmp_path / "columns.yml", f"{unique}/", unique)

    code, out = command(check_command, [str(path)], capsys)

    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith(f"FAIL  target table public.{unique}"))
    assert "column order_id is bigint but the config's string cannot be written to it" in line
    assert "no column book_name" in line and "column note (text) is NOT NULL" in line


def test_preview_into_a_reader_that_stops_early_ends_quietly(stack, s3, tmp_path, unique):
    import subprocess
    import sys

    rows = "".join(f"o{i},1,6,Kokoro,1,100\n" for i in range(5_000))
    put_books(s3, stack.bucket, f"{unique}/many.csv", rows)
    path = book_config(tmp_path / "many.yml", f"{unique}/", unique)
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "preview", "--rows", "5000", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline()

    process.stdout.close()  # what `| head -1` does
    _, stderr = process.communicate(timeout=120)

    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr, stderr.decode()
    assert process.returncode in (0, 141)
