"""The code location: what `dagster dev` lists, built from the YAML files alone."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from pipeline.errors import ConfigError
from pipeline.orchestration.factory import DEFAULT_CONFIG_DIR, build_definitions
from pipeline_tests.defs.conftest import book_order_document, write_pipeline

SECRETS = ("HOLOGRES_URL", "REDSHIFT_URL", "PIPELINE_BUCKET", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
           "AWS_SECRET_ACCESS_KEY")


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret and no endpoint in the environment, as when `dagster dev` starts in a fresh shell."""
    for name in (*SECRETS, "PIPELINE_LOCAL_DIR", "PIPELINE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def shipped(bare_environment: None) -> dg.Definitions:
    return build_definitions(DEFAULT_CONFIG_DIR)


def test_the_shipped_configs_give_book_order_assets_checks_sensor_and_jobs(shipped):
    graph = shipped.resolve_asset_graph()

    assert graph.get_all_asset_keys() >= {dg.AssetKey("book_order_objects"), dg.AssetKey("book_order")}
    assert {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey("book_order")} == {
        "rows_accounted_for", "primary_key_unique", "required_columns_not_null", "rows_match_ledger"}
    assert shipped.resolve_sensor_def("book_order_sensor").job_name == "book_order_load"
    assert shipped.resolve_job_def("book_order_load")
    assert shipped.resolve_job_def("book_order_table_checks")
    assert shipped.resolve_schedule_def("book_order_table_checks_schedule").cron_schedule == "0 * * * *"


def test_the_table_asset_says_what_it_is_in_the_ui(shipped):
    table = shipped.resolve_assets_def("book_order")
    spec = next(iter(table.specs))

    assert spec.group_name == "book_order"
    assert spec.kinds == {"hologres"}
    assert spec.partitions_def == dg.DynamicPartitionsDefinition(name="book_order_objects")
    assert [dep.asset_key for dep in spec.deps] == [dg.AssetKey("book_order_objects")]
    assert "public.book_order" in spec.description and "exactly once" in spec.description
    assert spec.metadata["dagster/table_name"] == "public.book_order"
    schema = spec.metadata["dagster/column_schema"]
    assert [(c.name, c.type) for c in schema.columns][:2] == [("order_id", "text"), ("user_id", "bigint")]
    assert not schema.columns[0].constraints.nullable and schema.columns[0].constraints.unique
    assert spec.freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=24), warn_window=timedelta(hours=12))
    assert table.op.pool == "warehouse/hologres"


def test_the_objects_are_an_external_asset_partitioned_by_object_key(shipped):
    specs = shipped.resolve_assets_def("book_order_objects").specs
    (objects,) = [spec for spec in specs if spec.key == dg.AssetKey("book_order_objects")]

    assert objects.kinds == {"s3"}
    assert objects.partitions_def == dg.DynamicPartitionsDefinition(name="book_order_objects")
    assert objects.metadata["bucket"] == "bob-embulk-demo"  # the config's default when the variable is unset
    assert not shipped.resolve_assets_def("book_order_objects").is_executable


def test_the_warehouse_secret_reaches_dagster_as_a_variable_name_only(shipped):
    warehouse = shipped.resources["hologres_warehouse"]

    assert warehouse.conninfo == dg.EnvVar("HOLOGRES_URL")
    assert set(shipped.resolve_assets_def("book_order").required_resource_keys) >= {
        "s3", "kms", "hologres_warehouse"}


def test_aws_resources_default_to_the_standard_aws_chain(shipped):
    s3 = shipped.resources["s3"]

    assert (s3.endpoint, s3.region, s3.access_key_id, s3.secret_access_key) == (None, None, None, None)


def test_sensors_and_schedules_run_by_default_only_on_the_local_stack(monkeypatch, bare_environment):
    stopped = build_definitions(DEFAULT_CONFIG_DIR)
    monkeypatch.setenv("PIPELINE_LOCAL_DIR", "/tmp/stack")
    running = build_definitions(DEFAULT_CONFIG_DIR)

    assert stopped.resolve_sensor_def("book_order_sensor").default_status == dg.DefaultSensorStatus.STOPPED
    assert running.resolve_sensor_def("book_order_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert (running.resolve_schedule_def("book_order_table_checks_schedule").default_status
            == dg.DefaultScheduleStatus.RUNNING)


def test_sensor_runs_carry_the_warehouse_tag_the_run_queue_limits(shipped):
    assert shipped.resolve_job_def("book_order_load").tags["pipeline/warehouse"] == "hologres"


def test_adding_a_yaml_file_adds_a_pipeline(tmp_path, bare_environment):
    write_pipeline(tmp_path, "book_order", book_order_document("a/", "book_order"))
    write_pipeline(tmp_path, "returns", book_order_document("returns/", "book_returns"))

    defs = build_definitions(tmp_path)

    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert {dg.AssetKey("returns"), dg.AssetKey("returns_objects")} <= keys
    assert defs.resolve_sensor_def("returns_sensor")
    assert defs.resolve_assets_def("returns").specs_by_key[dg.AssetKey("returns")].metadata[
        "dagster/table_name"] == "public.book_returns"


def test_the_config_directory_comes_from_pipeline_config_dir(tmp_path, monkeypatch, bare_environment):
    write_pipeline(tmp_path, "elsewhere", book_order_document("e/", "elsewhere"))
    monkeypatch.setenv("PIPELINE_CONFIG_DIR", str(tmp_path))

    defs = build_definitions()

    assert dg.AssetKey("elsewhere") in defs.resolve_asset_graph().get_all_asset_keys()
    assert dg.AssetKey("book_order") not in defs.resolve_asset_graph().get_all_asset_keys()


def test_the_stream_config_becomes_its_stream_and_table_assets(shipped):
    assert (DEFAULT_CONFIG_DIR / "sensor_data.yml").exists()
    keys = shipped.resolve_asset_graph().get_all_asset_keys()
    assert {dg.AssetKey("sensor_data"), dg.AssetKey("sensor_data_stream")} <= keys


def test_an_invalid_config_names_the_yaml_path_of_the_bad_key(tmp_path, bare_environment):
    document = book_order_document("a/", "broken")
    document["out"]["mode"] = "upsert"
    write_pipeline(tmp_path, "broken", document)

    with pytest.raises(ConfigError, match=r"out\.mode"):
        build_definitions(tmp_path)


def test_building_the_definitions_makes_no_network_call(monkeypatch, bare_environment):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network call while building the definitions")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)

    build_definitions(DEFAULT_CONFIG_DIR)


def test_the_code_location_imports_in_a_bare_environment():
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    program = ("from pipeline.definitions import defs; "
               "print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120,
                            cwd=Path(__file__).parents[2])

    assert result.returncode == 0, result.stderr
    assert "'book_order'" in result.stdout and "'book_order_objects'" in result.stdout


def test_column_lineage_follows_rename_and_drop_fields_and_a_uuid_comes_from_no_column(shipped):
    specs = {spec.key.to_user_string(): spec for spec in shipped.resolve_all_asset_specs()}
    lineage = specs["sensor_data"].metadata["dagster/column_lineage"].deps_by_column
    assert {column: [(dep.asset_key.to_user_string(), dep.column_name) for dep in deps]
            for column, deps in lineage.items()} == {
        "sensorid": [("sensor_data_stream", "sensorId")],
        "currenttemperature": [("sensor_data_stream", "currentTemperature")],
        "status": [("sensor_data_stream", "status")],
        "uuid": []}
    book = specs["book_order"].metadata["dagster/column_lineage"].deps_by_column
    assert [dep.asset_key.to_user_string() for deps in book.values() for dep in deps] == ["book_order_objects"] * 6
    # The rejected table is an asset of its own, downstream of the table whose loads write it.
    assert specs["book_order_rejected"].deps[0].asset_key == dg.AssetKey("book_order")
    assert specs["book_order_rejected"].metadata["dagster/table_name"] == "public.book_order_rejected"


def test_a_translator_subclass_renames_every_asset_and_everything_that_refers_to_them(bare_environment):
    from pipeline.orchestration.translation import PipelineTranslator

    class Warehouse(PipelineTranslator):
        def get_asset_key(self, pipeline, role):
            return super().get_asset_key(pipeline, role).with_prefix("lake")

        def get_asset_spec(self, pipeline, role, spec):
            return spec.replace_attributes(owners=["team:loaders"], group_name=f"lake_{pipeline.name}")

    defs = build_definitions(DEFAULT_CONFIG_DIR, translator=Warehouse())
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert {"lake/book_order", "lake/book_order_objects", "lake/book_order_rejected", "lake/sensor_data",
            "lake/sensor_data_stream", "lake/sensor_data_rejected"} == set(specs)
    assert [dep.asset_key for dep in specs["lake/book_order"].deps] == [dg.AssetKey(["lake", "book_order_objects"])]
    assert {spec.owners[0] for spec in specs.values()} == {"team:loaders"}
    assert specs["lake/sensor_data"].group_name == "lake_sensor_data"
    checks = {key.asset_key.to_user_string() for check in defs.asset_checks for key in check.check_keys}
    assert checks == {"lake/book_order", "lake/sensor_data"}
    loads = defs.resolve_job_def("book_order_load").asset_layer.selected_asset_keys
    assert loads == {dg.AssetKey(["lake", "book_order"])}
