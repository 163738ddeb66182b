"""Embulk keys end to end: a config written for Embulk loads what Embulk would load, through boto3 and psycopg."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from pipeline import config as config_module
from pipeline.batch import BatchLoad
from pipeline.errors import SourceError
from pipeline_tests.books import HEADER
from pipeline_tests.engine.test_batch import count, put, write_config

pytestmark = pytest.mark.stack


@pytest.fixture
def unique() -> str:
    return f"e{uuid.uuid4().hex[:10]}"


def load(path: Path, **changes: dict) -> BatchLoad:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for section, values in changes.items():
        document[section].update(values)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return BatchLoad(config_module.load(path), emit=lambda _: None)


def test_quote_null_keeps_quotes_as_data(stack, s3, hologres, tmp_path, unique):
    path = write_config(tmp_path / "c.yml", f"{unique}/", unique, parser={"quote": None, "escape": None})
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + 'o1,1,6,"quoted",1,100\n')
    load(path).run()
    assert hologres.execute(f"SELECT book_name FROM public.{unique}").fetchone() == ('"quoted"',)


def test_header_line_true_skips_the_header_as_skip_header_lines_1_does(stack, s3, hologres, tmp_path, unique):
    path = write_config(tmp_path / "c.yml", f"{unique}/", unique,
                        parser={"skip_header_lines": None, "header_line": True,
                                "columns": [{"name": "order_id", "type": "string"}]}, primary_key=None)
    put(s3, stack.bucket, f"{unique}/a.csv", "order_id\no1\no2\n")
    load(path).run()
    assert count(hologres, unique) == 2


def test_timestamps_without_a_zone_are_read_in_default_timezone(stack, s3, hologres, tmp_path, unique):
    columns = [{"name": "order_id", "type": "string"}, {"name": "at", "type": "timestamp"},
               {"name": "utc", "type": "timestamp", "timezone": "UTC"},
               {"name": "t", "type": "timestamp", "format": "%H:%M"}]
    path = write_config(tmp_path / "c.yml", f"{unique}/", unique,
                        parser={"columns": columns, "default_timezone": "Asia/Tokyo", "default_date": "2024-05-01"})
    put(s3, stack.bucket, f"{unique}/a.csv",
        "order_id,at,utc,t\no1,2024-07-01 09:00:00,2024-07-01 09:00:00,09:00\no2,2024-07-01 09:00:00+00:00,,\n")
    summary = load(path).run()
    assert [r.path for r in summary.loaded] == ["checked"]  # the server would read them as UTC
    rows = hologres.execute(f"SELECT order_id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), "
                            f"to_char(utc AT TIME ZONE 'UTC', 'HH24:MI'), "
                            f"to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM public.{unique} "
                            "ORDER BY order_id").fetchall()
    assert rows == [("o1", "2024-07-01 00:00", "09:00", "2024-05-01 00:00"), ("o2", "2024-07-01 09:00", None, None)]


def test_last_path_leaves_the_keys_up_to_it_unlisted(stack, s3, hologres, tmp_path, unique):
    for name in ("a", "b", "c"):
        put(s3, stack.bucket, f"{unique}/{name}.csv", HEADER + f"{name}1,1,6,t,1,100\n")
    path = write_config(tmp_path / "c.yml", f"{unique}/", unique)
    summary = load(path, **{"in": {"last_path": f"{unique}/b.csv"}}).run()
    assert [r.key for r in summary.loaded] == [f"{unique}/c.csv"]


def test_path_loads_one_object_even_where_others_share_its_prefix(stack, s3, hologres, tmp_path, unique):
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + "a1,1,6,t,1,100\n")
    put(s3, stack.bucket, f"{unique}/a.csv.old", HEADER + "old,1,6,t,1,100\n")
    path = write_config(tmp_path / "c.yml", f"{unique}/", unique)
    document = yaml.safe_load(path.read_text())
    del document["in"]["path_prefix"]
    document["in"]["path"] = f"{unique}/a.csv"
    path.write_text(yaml.safe_dump(document))
    summary = BatchLoad(config_module.load(path)).run()
    assert [r.key for r in summary.loaded] == [f"{unique}/a.csv"]


def test_an_object_in_glacier_stops_the_listing_unless_skip_glacier_objects(stack, s3, hologres, tmp_path, unique):
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + "a1,1,6,t,1,100\n")
    put(s3, stack.bucket, f"{unique}/b.csv", HEADER + "b1,1,6,t,1,100\n", StorageClass="GLACIER")
    path = write_config(tmp_path / "c.yml", f"{unique}/", unique)
    with pytest.raises(SourceError, match=f"{unique}/b.csv is stored in GLACIER.*skip_glacier_objects"):
        load(path).run()
    said: list[str] = []
    skipping = load(path, **{"in": {"skip_glacier_objects": True}})
    skipping.emit = said.append
    assert [r.key for r in skipping.run().loaded] == [f"{unique}/a.csv"]
    assert any("b.csv: stored in GLACIER, passed over" in line for line in said)


def test_assume_role_reads_with_the_roles_credentials_from_sts(stack, s3, hologres, tmp_path, unique):
    put(s3, stack.bucket, f"{unique}/a.csv", HEADER + "a1,1,6,t,1,100\n")
    path = write_config(tmp_path / "c.yml", f"{unique}/", unique)
    loader = load(path, **{"in": {"auth_method": "assume_role", "account_id": "123456789012",
                                  "role_name": "pipeline-reader", "session_name": "test"}})
    credentials = loader.s3._request_signer._credentials.get_frozen_credentials()
    assert credentials.token  # temporary credentials, from moto's STS
    assert [r.key for r in loader.run().loaded] == [f"{unique}/a.csv"]


def test_anonymous_and_path_style_clients():
    from botocore import UNSIGNED

    from pipeline.sources.aws import client

    anonymous = client("s3", region="us-east-1", auth_method="anonymous", path_style_access=True,
                       endpoint="https://s3.amazonaws.com")
    assert anonymous.meta.config.signature_version is UNSIGNED
    assert anonymous.meta.config.s3["addressing_style"] == "path"
