"""Record filters: add_uuid, drop_fields and rename, on records and on the column list."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.filters import (
    UUID_NAMESPACE,
    apply,
    build_filters,
    deterministic_uuid,
    lineage,
    output_columns,
    projector,
    s3_identity,
)
from pipeline.schema import Column

SENSOR_COLUMNS = [
    Column("sensorId", "long"),
    Column("currentTemperature", "double"),
    Column("status"),
    Column("$record_timestamp", "timestamp"),
]
GLUE_FILTERS = [
    {"type": "add_uuid", "column": "uuid"},
    {"type": "drop_fields", "fields": ["$record_timestamp"]},
    {"type": "rename", "columns": {"sensorId": "sensorid"}},
]
IDENTITY = "test-streaming-data/shardId-000000000001/49650000000000000000000000000000000000000000000000001234"


def sensor_record() -> dict:
    return {
        "sensorId": "42",
        "currentTemperature": "21.5",
        "status": "OK",
        "$record_timestamp": "2024-01-02 03:04:05+00:00",
    }


# -- records -----------------------------------------------------------------------------------


def test_the_glue_job_filters_add_a_uuid_drop_the_timestamp_and_rename_a_column():
    record = apply(build_filters(GLUE_FILTERS), sensor_record(), IDENTITY)

    assert record == {
        "sensorid": "42",
        "currentTemperature": "21.5",
        "status": "OK",
        "uuid": str(uuid.uuid5(UUID_NAMESPACE, IDENTITY)),
    }


def test_the_column_list_after_the_filters_matches_the_records():
    filters = build_filters(GLUE_FILTERS)

    columns = output_columns(SENSOR_COLUMNS, filters)

    assert columns == [
        Column("sensorid", "long"),
        Column("currentTemperature", "double"),
        Column("status"),
        Column("uuid", "string"),
    ]
    assert set(apply(filters, sensor_record(), IDENTITY)) == {c.name for c in columns}


def test_a_replayed_record_gets_the_same_uuid_and_another_record_another():
    filters = build_filters([{"type": "add_uuid", "column": "uuid"}])

    first = apply(filters, sensor_record(), IDENTITY)["uuid"]
    replayed = apply(filters, sensor_record(), IDENTITY)["uuid"]
    next_record = apply(filters, sensor_record(), IDENTITY[:-1] + "5")["uuid"]

    assert first == replayed
    assert first != next_record


def test_add_uuid_names_its_column_uuid_unless_told():
    (item,) = build_filters([{"type": "add_uuid"}])

    assert output_columns([Column("a")], [item]) == [Column("a"), Column("uuid", "string")]


@given(st.text())
def test_the_uuid_is_version_5_of_the_identity_in_the_fixed_namespace(identity):
    assert deterministic_uuid(identity) == str(uuid.uuid5(UUID_NAMESPACE, identity))


def test_an_s3_line_identity_is_uri_etag_and_line_whether_or_not_the_etag_is_quoted():
    assert s3_identity("s3://bucket/orders.csv", '"9b2cf535f27731c974343645a3985328"', 7) == (
        "s3://bucket/orders.csv/9b2cf535f27731c974343645a3985328/7"
    )
    assert s3_identity("s3://bucket/orders.csv", "9b2cf535f27731c974343645a3985328", 7) == (
        s3_identity("s3://bucket/orders.csv", '"9b2cf535f27731c974343645a3985328"', 7)
    )


def test_rename_can_swap_two_columns():
    filters = build_filters([{"type": "rename", "columns": {"a": "b", "b": "a"}}])

    assert apply(filters, {"a": "1", "b": "2"}, IDENTITY) == {"a": "2", "b": "1"}
    assert output_columns([Column("a", "long"), Column("b")], filters) == [Column("b", "long"), Column("a")]


def test_filters_apply_in_order():
    filters = build_filters(
        [{"type": "rename", "columns": {"status": "state"}}, {"type": "drop_fields", "fields": ["state"]}]
    )

    assert "state" not in apply(filters, sensor_record(), IDENTITY)
    assert [c.name for c in output_columns(SENSOR_COLUMNS, filters)] == [
        "sensorId",
        "currentTemperature",
        "$record_timestamp",
    ]


def test_no_filters_leave_record_and_columns_alone():
    assert apply([], sensor_record(), IDENTITY) == sensor_record()
    assert output_columns(SENSOR_COLUMNS, []) == SENSOR_COLUMNS


NAMES = st.sampled_from(["a", "b", "c", "uuid", "$record_timestamp"])
FILTER_SPECS = st.one_of(
    st.builds(lambda name: {"type": "add_uuid", "column": name}, NAMES),
    st.builds(lambda names: {"type": "drop_fields", "fields": sorted(names)}, st.sets(NAMES, min_size=1, max_size=2)),
    st.builds(lambda renames: {"type": "rename", "columns": renames},
              st.dictionaries(NAMES, NAMES, min_size=1, max_size=3)),
)


@given(st.lists(FILTER_SPECS, max_size=4), st.lists(st.none() | st.text(max_size=3), min_size=3, max_size=3))
def test_the_compiled_projection_gives_what_applying_the_filters_gives(specs, values):
    columns = [Column("a"), Column("b"), Column("$record_timestamp", "timestamp")]
    try:
        filters = build_filters(specs)
        out = output_columns(columns, filters)
    except ConfigError:
        return  # a chain the config refuses never reaches a record
    record = dict(zip([c.name for c in columns], values, strict=True))

    applied = apply(filters, dict(record), IDENTITY)
    projected = projector(columns, filters)(dict(record), IDENTITY)

    assert projected == tuple(applied.get(c.name) for c in out)
    assert len(projected) == len(out)


# -- the schema after the filters --------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "path", "message"),
    [
        (
            [{"type": "drop_fields", "fields": ["$record_timestamp", "humidity"]}],
            "filters[0].fields[1]",
            "humidity",
        ),
        (
            [{"type": "rename", "columns": {"sensorID": "sensorid"}}],
            "filters[0].columns.sensorID",
            "sensorID",
        ),
        (
            [{"type": "rename", "columns": {"sensorId": "status"}}],
            "filters[0].columns.sensorId",
            "already exists",
        ),
        ([{"type": "add_uuid", "column": "status"}], "filters[0].column", "already exists"),
        (
            [{"type": "drop_fields", "fields": ["status"]}, {"type": "drop_fields", "fields": ["status"]}],
            "filters[1].fields[0]",
            "no column named 'status'",
        ),
    ],
)
def test_a_filter_naming_a_missing_or_taken_column_is_a_config_error_at_its_path(specs, path, message):
    with pytest.raises(ConfigError) as caught:
        output_columns(SENSOR_COLUMNS, build_filters(specs))

    assert caught.value.path == path
    assert message in caught.value.message


def test_the_error_for_a_missing_column_lists_the_columns_there_are():
    with pytest.raises(
        ConfigError, match="columns are: sensorId, currentTemperature, status, \\$record_timestamp"
    ):
        output_columns(SENSOR_COLUMNS, build_filters([{"type": "drop_fields", "fields": ["x"]}]))


# -- validation of the specs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("specs", "path", "message"),
    [
        ({"type": "add_uuid"}, "filters", "must be a list"),
        (["add_uuid"], "filters[0]", "must be a mapping"),
        ([{"column": "uuid"}], "filters[0].type", "is required"),
        (
            [{"type": "add_uuid"}, {"type": "remove_columns"}],
            "filters[1].type",
            "unknown filter type 'remove_columns'",
        ),
        ([{"type": "add_uuid", "colum": "uuid"}], "filters[0].colum", "unknown key for add_uuid"),
        ([{"type": "add_uuid", "column": ""}], "filters[0].column", "must be a column name"),
        ([{"type": "drop_fields"}], "filters[0].fields", "non-empty list"),
        ([{"type": "drop_fields", "fields": "$record_timestamp"}], "filters[0].fields", "non-empty list"),
        ([{"type": "drop_fields", "fields": []}], "filters[0].fields", "non-empty list"),
        ([{"type": "drop_fields", "fields": ["a", 3]}], "filters[0].fields[1]", "must be a column name"),
        ([{"type": "drop_fields", "fields": ["a", "a"]}], "filters[0].fields[1]", "listed twice"),
        ([{"type": "rename", "columns": ["a", "b"]}], "filters[0].columns", "non-empty mapping"),
        ([{"type": "rename", "columns": {"a": None}}], "filters[0].columns.a", "must be a column name"),
        (
            [{"type": "rename", "columns": {"a": "c", "b": "c"}}],
            "filters[0].columns.b",
            "also renamed to 'c'",
        ),
    ],
)
def test_an_invalid_filter_spec_is_a_config_error_at_the_yaml_path_of_the_bad_key(specs, path, message):
    with pytest.raises(ConfigError) as caught:
        build_filters(specs)

    assert caught.value.path == path
    assert message in caught.value.message


def test_lineage_maps_each_output_column_to_the_source_columns_it_came_from():
    from pipeline.schema import Column

    columns = [Column("a", "long"), Column("b", "string"), Column("$record_timestamp", "string")]
    filters = build_filters([{"type": "add_uuid", "column": "id"},
                             {"type": "drop_fields", "fields": ["$record_timestamp"]},
                             {"type": "rename", "columns": {"a": "b", "b": "a"}}])
    assert lineage(columns, filters) == {"b": ["a"], "a": ["b"], "id": []}
    assert list(lineage(columns, filters)) == [c.name for c in output_columns(columns, filters)]
