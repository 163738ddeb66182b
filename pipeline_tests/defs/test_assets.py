"""Materializing a partition of the table asset loads that one object, exactly once."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
import pytest

from pipeline_tests.defs.conftest import orders_csv, put_objects

pytestmark = pytest.mark.stack


def run_load_job(book_order: Any, key: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """What a sensor's run does: the load job for one partition (table asset and per-object check)."""
    instance.add_dynamic_partitions(book_order.pipeline.partitions_name, [key])
    job = book_order.defs.resolve_job_def(f"{book_order.name}_load")
    return job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)


def materialize_with_all_checks(book_order: Any, key: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """What `dagster asset materialize --select <table>` does: the partition and every check of the table."""
    defs = book_order.defs
    instance.add_dynamic_partitions(book_order.pipeline.partitions_name, [key])
    return dg.materialize([*defs.assets, *defs.asset_checks], instance=instance, resources=defs.resources,
                          partition_key=key, selection=dg.AssetSelection.assets(book_order.pipeline.table_key))


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The table's materialization (a load that rejects records also materializes ``<table>_rejected``)."""
    (event,) = [e for e in result.get_asset_materialization_events() if not e.asset_key.path[-1].endswith("_rejected")]
    return {name: value.value for name, value in event.materialization.metadata.items()}


def observed(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_observation_events()
    return {name: value.value for name, value in event.asset_observation_data.asset_observation.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def table_count(hologres: Any, table: str) -> int:
    return hologres.execute(f"SELECT count(*) FROM public.{table}").fetchone()[0]  # test-owned name


def test_a_partition_loads_its_object_only_and_reports_rows_etag_and_schema(book_order, s3, hologres):
    pipeline = book_order()
    key, other = pipeline.key("orders-0001.csv"), pipeline.key("orders-0002.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 120), other: orders_csv(1000, 30)})
    etag = s3.head_object(Bucket=pipeline.bucket, Key=key)["ETag"].strip('"')

    with dg.instance_for_test() as instance:
        result = run_load_job(pipeline, key, instance)

    assert result.success
    assert table_count(hologres, pipeline.table) == 120
    metadata = materialized(result)
    assert metadata["dagster/row_count"] == 120
    assert metadata["new_rows"] == 120
    assert metadata["rows_per_second"] > 0 and metadata["megabytes_per_second"] >= 0  # charted in the UI
    assert metadata["rejected_rows"] == 0
    assert metadata["parsed_records"] == 120
    assert metadata["etag"] == etag
    assert metadata["load_path"] == "fast"
    assert metadata["object_bytes"] == len(orders_csv(0, 120).encode())
    assert metadata["duration_seconds"] > 0
    assert [c.name for c in metadata["dagster/column_schema"].columns] == [
        "order_id", "user_id", "book_id", "book_name", "order_cnt", "order_amt"]
    assert result.get_asset_materialization_events()[0].partition == key
    assert {name: c.passed for name, c in checks(result).items()} == {"rows_accounted_for": True}


def test_a_second_materialization_loads_nothing_and_says_the_object_was_already_loaded(book_order, s3, hologres):
    pipeline = book_order()
    key = pipeline.key("orders.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 50)})

    with dg.instance_for_test() as instance:
        first = run_load_job(pipeline, key, instance)
        second = run_load_job(pipeline, key, instance)

    assert first.success and second.success
    assert table_count(hologres, pipeline.table) == 50
    again = materialized(second)
    assert again["new_rows"] == 0
    assert again["dagster/row_count"] == 50  # the partition still holds the object's rows
    assert again["load_path"] == "already loaded"
    assert "already loaded" in again["status"]
    assert checks(second)["rows_accounted_for"].passed


def test_materializing_with_every_check_passes_the_whole_table_checks(book_order, s3, hologres):
    pipeline = book_order()
    keys = [pipeline.key(f"orders-{i}.csv") for i in range(2)]
    put_objects(s3, pipeline.bucket, {keys[0]: orders_csv(0, 40), keys[1]: orders_csv(40, 60)})

    with dg.instance_for_test() as instance:
        for key in keys:
            result = materialize_with_all_checks(pipeline, key, instance)

    assert table_count(hologres, pipeline.table) == 100
    assert {name: c.passed for name, c in checks(result).items()} == {
        "rows_accounted_for": True, "primary_key_unique": True, "required_columns_not_null": True,
        "rows_match_ledger": True}


def test_the_load_observes_the_object_with_its_encryption_and_kms_key(book_order, s3, kms, hologres, stack):
    pipeline = book_order()
    key = pipeline.key("encrypted.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 10)}, ServerSideEncryption="aws:kms",
                SSEKMSKeyId=stack.kms_key)
    head = s3.head_object(Bucket=pipeline.bucket, Key=key)

    with dg.instance_for_test() as instance:
        result = run_load_job(pipeline, key, instance)

    assert result.success
    (event,) = result.get_asset_observation_events()
    assert event.asset_key == pipeline.pipeline.objects_key
    assert event.partition == key
    observation = observed(result)
    assert observation["key"] == key
    assert observation["size_bytes"] == head["ContentLength"]
    assert observation["etag"] == head["ETag"].strip('"')
    assert observation["encryption"] == "aws:kms"
    assert observation["kms_key_id"] == head["SSEKMSKeyId"]
    assert observation["kms_key_state"] == "Enabled"
    assert observation["last_modified"] == pytest.approx(head["LastModified"].timestamp())
    assert table_count(hologres, pipeline.table) == 10


def test_rejected_records_are_accounted_for_by_the_object_check(book_order, s3, hologres):
    pipeline = book_order(parser={"stop_on_invalid_record": False})
    key = pipeline.key("with-bad-rows.csv")
    body = orders_csv(0, 20) + "o9999998,not-a-number,6,人間失格,1,100\n" + "o9999999,1,6,人間失格,1\n"
    put_objects(s3, pipeline.bucket, {key: body})

    with dg.instance_for_test() as instance:
        result = run_load_job(pipeline, key, instance)

    metadata = materialized(result)
    assert (metadata["new_rows"], metadata["rejected_rows"], metadata["parsed_records"]) == (20, 2, 22)
    assert metadata["load_path"] == "checked"
    check = checks(result)["rows_accounted_for"]
    assert check.passed
    assert check.metadata["rejected_table_rows"].value == 2
    # The rejected table is an asset of its own, materialized for the partition by the load that rejected.
    (rejected,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1].endswith("_rejected")]
    assert rejected.partition == key
    assert rejected.materialization.metadata["dagster/row_count"].value == 2


def test_the_object_check_fails_when_rejected_records_went_missing(book_order, s3, hologres):
    pipeline = book_order(parser={"stop_on_invalid_record": False})
    key = pipeline.key("bad.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 5) + "o9999999,x,6,人間失格,1,100\n"})
    with dg.instance_for_test() as instance:
        run_load_job(pipeline, key, instance)
        hologres.execute(f"DELETE FROM public.{pipeline.table}_rejected")  # test-owned name
        again = run_load_job(pipeline, key, instance)

    check = checks(again)["rows_accounted_for"]
    assert not check.passed
    assert "rejected" in check.description


def test_the_whole_table_checks_fail_on_duplicate_keys_null_keys_and_rows_outside_the_ledger(book_order, s3, hologres):
    pipeline = book_order()
    # A table made beforehand without a primary key constraint, as on Redshift, where keys are not enforced.
    hologres.execute(f"CREATE TABLE public.{pipeline.table} (order_id text, user_id bigint, book_id bigint, "
                     "book_name text, order_cnt bigint, order_amt bigint)")
    key = pipeline.key("orders.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 10)})
    with dg.instance_for_test() as instance:
        run_load_job(pipeline, key, instance)
        hologres.execute(f"INSERT INTO public.{pipeline.table} VALUES ('o0000001', 1, 6, 'x', 1, 100), "
                         "(NULL, 1, 6, 'x', 1, 100)")
        result = pipeline.defs.resolve_job_def(f"{pipeline.name}_table_checks").execute_in_process(
            instance=instance, raise_on_error=False)

    found = checks(result)
    assert not found["primary_key_unique"].passed
    assert found["primary_key_unique"].metadata["duplicate_keys"].value == 1
    assert not found["required_columns_not_null"].passed
    assert found["required_columns_not_null"].metadata["nulls_order_id"].value == 1
    assert not found["rows_match_ledger"].passed
    assert found["rows_match_ledger"].metadata["table_rows"].value == 12
    assert found["rows_match_ledger"].metadata["ledger_rows"].value == 10


def test_loading_a_deleted_object_fails_with_a_message_naming_it(book_order, s3, hologres):
    pipeline = book_order()
    key = pipeline.key("gone.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 3)})
    s3.delete_object(Bucket=pipeline.bucket, Key=key)

    with dg.instance_for_test() as instance:
        result = run_load_job(pipeline, key, instance)

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert f"s3://{pipeline.bucket}/{key}" in failure.step_failure_data.error.message
    assert "deleted" in failure.step_failure_data.error.message


def test_no_event_of_a_load_shows_the_warehouse_password(book_order, s3, hologres):
    pipeline = book_order()
    key = pipeline.key("orders.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 5)})
    secret_url = os.environ["HOLOGRES_URL"]
    password = secret_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]

    with dg.instance_for_test() as instance:
        result = run_load_job(pipeline, key, instance)
        records = instance.all_logs(result.run_id)
        run = instance.get_run_by_id(result.run_id)

    text = "\n".join(repr(record) for record in records) + repr(run.run_config) + repr(run.tags)
    assert result.success
    assert secret_url not in text
    assert f":{password}@" not in text


def test_a_mode_that_rebuilds_the_table_refuses_to_load_one_object_alone(book_order, s3, hologres):
    pipeline = book_order(mode="replace")
    keys = [pipeline.key("a.csv"), pipeline.key("b.csv")]
    put_objects(s3, pipeline.bucket, {keys[0]: orders_csv(0, 3), keys[1]: orders_csv(3, 3)})

    with dg.instance_for_test() as instance:
        result = run_load_job(pipeline, keys[0], instance)

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "mode replace rebuilds the whole table" in failure.step_failure_data.error.message
