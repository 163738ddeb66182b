"""A Kinesis pipeline in Dagster: stream and table assets, the sensor's ticks, micro-batch and continuous runs."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import dagster as dg

from pipeline.orchestration.factory import DEFAULT_CONFIG_DIR, build_definitions


def run_keys(result: dg.SensorResult | dg.SkipReason) -> list[str]:
    if isinstance(result, dg.SkipReason):
        return []
    return [request.run_key for request in result.run_requests or []]


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.get_asset_materialization_events()
    return {name: value.value for name, value in event.materialization.metadata.items()}


def test_the_shipped_sensor_data_config_gives_stream_table_sensor_and_jobs(monkeypatch):
    monkeypatch.delenv("PIPELINE_CONFIG_DIR", raising=False)
    defs = build_definitions(DEFAULT_CONFIG_DIR)

    stream = next(iter(defs.resolve_assets_def("sensor_data_stream").specs))
    table = next(iter(defs.resolve_assets_def("sensor_data").specs))
    assert stream.kinds == {"kinesis"}
    assert table.kinds == {"redshift"} and table.group_name == "sensor_data"
    assert [dep.asset_key for dep in table.deps] == [dg.AssetKey("sensor_data_stream")]
    assert [c.name for c in table.metadata["dagster/column_schema"].columns] == [
        "sensorid", "currenttemperature", "status", "uuid"]
    assert table.metadata["dagster/table_name"] == "sensor_schema.sensor_data"
    assert defs.resolve_assets_def("sensor_data").op.pool == "warehouse/redshift"
    sensor = defs.resolve_sensor_def("sensor_data_sensor")
    assert sensor.minimum_interval_seconds <= 10
    assert {job.name for job in sensor.jobs} == {"sensor_data_load", "sensor_data_continuous"}
    assert defs.resolve_job_def("sensor_data_continuous")


def test_a_tick_requests_nothing_when_no_record_waits_and_one_run_keyed_by_checkpoints_when_some_do(
        sensor_stream):
    pipeline = sensor_stream()
    with dg.instance_for_test() as instance:
        assert run_keys(pipeline.tick(instance)) == []

        pipeline.put(20)
        first, again = pipeline.tick(instance), pipeline.tick(instance)
        assert run_keys(first) == run_keys(again) == ["checkpoints:start"]
        assert first.run_requests[0].job_name == f"{pipeline.name}_load"

        assert pipeline.materialize(instance).success
        assert run_keys(pipeline.tick(instance)) == []
        pipeline.put(5, offset=20)
        (moved,) = run_keys(pipeline.tick(instance))
        assert moved.startswith("checkpoints:") and moved != "checkpoints:start"
        assert run_keys(pipeline.tick(instance)) == [moved]


def test_with_starting_position_latest_and_no_checkpoint_one_run_pins_the_start(sensor_stream):
    pipeline = sensor_stream(in__starting_position="latest")
    with dg.instance_for_test() as instance:
        assert run_keys(pipeline.tick(instance)) == ["checkpoints:start"]
        assert pipeline.materialize(instance).success
        assert run_keys(pipeline.tick(instance)) == []


def test_materializing_the_table_lands_each_record_once_with_uuid_and_without_record_timestamp(
        sensor_stream, redshift):
    pipeline = sensor_stream(exec__max_records=100)
    pipeline.put(350)
    with dg.instance_for_test() as instance:
        first = pipeline.materialize(instance)
        second = pipeline.materialize(instance)

    assert first.success and second.success
    metadata = materialized(first)
    assert metadata["dagster/row_count"] == 350 and metadata["records_read"] == 350
    assert metadata["records_per_second"] > 0
    assert metadata["rejected_records"] == 0 and metadata["batches"] == 4 and metadata["at_tip"]
    assert set(metadata["checkpoints"]) == {"shardId-000000000000", "shardId-000000000001"}
    assert all(not lag["records_waiting"] for lag in metadata["shard_lag"].values())
    assert materialized(second)["dagster/row_count"] == 0
    (observation,) = [e for e in first.get_asset_observation_events()]
    assert observation.asset_key == dg.AssetKey(f"{pipeline.name}_stream")
    rows = redshift.execute(f"SELECT uuid FROM sensor_schema.{pipeline.name}").fetchall()  # test-owned name
    assert len(rows) == 350 and len({r[0] for r in rows}) == 350 and all(r[0] for r in rows)
    columns = [r[0] for r in redshift.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'sensor_schema' "
        "AND table_name = %s ORDER BY ordinal_position", (pipeline.name,))]
    assert columns == ["sensorid", "currenttemperature", "status", "uuid"]


def test_a_missing_stream_fails_the_run_with_the_engines_message(sensor_stream, kinesis):
    pipeline = sensor_stream()
    kinesis.delete_stream(StreamName=pipeline.name)
    with dg.instance_for_test() as instance:
        result = pipeline.materialize(instance)

    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert pipeline.name in failure.step_failure_data.error.message
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks == {"records_flowing": False, "no_records_lost": True}


def test_a_failing_load_is_named_in_the_sensors_tick_and_its_flow_check(sensor_stream, redshift):
    pipeline = sensor_stream()
    pipeline.put(5)
    with dg.instance_for_test() as instance:
        (key,) = run_keys(pipeline.tick(instance))
        # The warehouse refuses every batch: its table lost a column the pipeline writes.
        redshift.execute(f"ALTER TABLE sensor_schema.{pipeline.name} DROP COLUMN currenttemperature")
        result = pipeline.launched_by_sensor(instance, key)
        assert not result.success
        skip = pipeline.tick(instance)

    assert isinstance(skip, dg.SkipReason)
    assert "the last run for these checkpoints failed" in skip.skip_message
    assert "has no column" in skip.skip_message and "currenttemperature" in skip.skip_message


def test_a_poison_record_is_rejected_and_the_sensors_later_runs_go_on(sensor_stream, redshift):
    pipeline = sensor_stream()
    pipeline.put(5)
    pipeline.kinesis.put_record(StreamName=pipeline.name, PartitionKey="p", Data=json.dumps(
        {"sensorId": 1, "currentTemperature": 2, "status": "far too long for varchar(16)"}).encode())
    with dg.instance_for_test() as instance:
        (key,) = run_keys(pipeline.tick(instance))
        first = pipeline.launched_by_sensor(instance, key)
        pipeline.put(3, offset=50)
        (later,) = run_keys(pipeline.tick(instance))
        second = pipeline.launched_by_sensor(instance, later)

    assert first.success and second.success and later != key
    assert materialized(first)["rejected_records"] == 1 and materialized(second)["records_read"] == 3
    assert redshift.execute(f"SELECT count(*) FROM sensor_schema.{pipeline.name}").fetchone()[0] == 8
    (column, error), = redshift.execute(f"SELECT column_name, error FROM sensor_schema.{pipeline.name}_rejected")
    assert column == "status" and "String length exceeds DDL length" in error


def test_the_continuous_job_commits_records_put_while_it_runs_until_max_runtime(sensor_stream, redshift):
    pipeline = sensor_stream(exec__max_runtime=4, exec__window_seconds=0.2)
    pipeline.put(10)
    producer = threading.Timer(1.5, pipeline.put, args=(15,), kwargs={"offset": 10})
    producer.start()
    started = time.monotonic()
    with dg.instance_for_test() as instance:
        result = pipeline.defs.resolve_job_def(f"{pipeline.name}_continuous").execute_in_process(
            instance=instance, resources=pipeline.defs.resources)
    producer.join()

    assert result.success
    assert 4 <= time.monotonic() - started < 30
    assert redshift.execute(f"SELECT count(*) FROM sensor_schema.{pipeline.name}").fetchone()[0] == 25
    reported = sum(e.materialization.metadata["dagster/row_count"].value
                   for e in result.get_asset_materialization_events())
    assert reported == 25


def test_in_continuous_mode_the_sensor_requests_the_continuous_job_even_with_nothing_waiting(sensor_stream,
                                                                                             monkeypatch):
    pipeline = sensor_stream()
    monkeypatch.setenv(f"PIPELINE_{pipeline.name.upper()}_MODE", "continuous")
    pipeline.defs = build_definitions(pipeline.directory)
    with dg.instance_for_test() as instance:
        result = pipeline.tick(instance)

    assert run_keys(result) == ["continuous:start"]
    assert result.run_requests[0].job_name == f"{pipeline.name}_continuous"
    # A long run holds no slot of the per-warehouse run limit (two would starve the warehouse's other runs).
    tags = {**pipeline.defs.resolve_job_def(f"{pipeline.name}_continuous").tags, **result.run_requests[0].tags}
    assert tags["pipeline/continuous"] == "redshift" and "pipeline/warehouse" not in tags


def test_the_stream_table_has_key_null_flow_and_loss_checks_but_no_object_ledger_check():
    from pipeline.definitions import defs

    names = {key.name for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key.path == ["sensor_data"]}
    assert names == {"primary_key_unique", "required_columns_not_null", "records_flowing", "no_records_lost"}


def test_a_state_that_keeps_failing_is_retried_exec_retries_times_then_the_tick_says_it_gave_up(
        sensor_stream, redshift):
    pipeline = sensor_stream(exec__retries=1, exec__retry_wait=0)
    pipeline.put(5)
    with dg.instance_for_test() as instance:
        (key,) = run_keys(pipeline.tick(instance))
        redshift.execute(f"ALTER TABLE sensor_schema.{pipeline.name} DROP COLUMN currenttemperature")
        assert not pipeline.launched_by_sensor(instance, key).success
        retry = pipeline.tick(instance)
        (again,) = run_keys(retry)
        assert again.startswith(f"{key}:after-")
        assert not pipeline.launched_by_sensor(instance, again).success
        last = pipeline.tick(instance)

    assert isinstance(last, dg.SkipReason)
    assert "gave up after 2 failed runs (exec.retries 1)" in last.skip_message
    assert "currenttemperature" in last.skip_message


def test_in_continuous_mode_each_finished_run_is_followed_by_one_keyed_after_it(sensor_stream, monkeypatch):
    pipeline = sensor_stream(exec__max_runtime=0.2, exec__window_seconds=0.1)
    monkeypatch.setenv(f"PIPELINE_{pipeline.name.upper()}_MODE", "continuous")
    pipeline.defs = build_definitions(pipeline.directory)
    follow = pipeline.defs.resolve_job_def(f"{pipeline.name}_continuous")
    keys = []
    with dg.instance_for_test() as instance:
        for _ in range(3):  # an idle stream: the checkpoints never move
            (key,) = run_keys(pipeline.tick(instance))
            keys.append(key)
            assert follow.execute_in_process(instance=instance, resources=pipeline.defs.resources, tags={
                "dagster/run_key": key, "dagster/sensor_name": f"{pipeline.name}_sensor"}).success

    assert keys[0] == "continuous:start" and len(set(keys)) == 3
    assert all(key.startswith("continuous:start:after-") for key in keys[1:])
