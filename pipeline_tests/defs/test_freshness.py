"""``exec.expect_within``: nothing new for that long fails the table's freshness check, on both kinds of pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from pipeline.batch import BatchLoad
from pipeline.orchestration.freshness import FRESHNESS_CHECK, judge, sensor_interval, span
from pipeline_tests.defs.conftest import orders_csv, put_objects

pytestmark = pytest.mark.stack


def freshness_tick(defs: dg.Definitions, name: str, cursor: str | None = None) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def(f"{name}_freshness_sensor")
    with dg.build_sensor_context(cursor=cursor, resources=defs.resources) as context:
        result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def evaluations(result: dg.SensorResult) -> list[dg.AssetCheckEvaluation]:
    return [event for event in result.asset_events or [] if isinstance(event, dg.AssetCheckEvaluation)]


def test_without_expect_within_there_is_no_freshness_check_or_sensor(book_order):
    defs = book_order().defs
    assert FRESHNESS_CHECK not in {key.name for check in defs.asset_checks for key in check.check_keys}
    assert not [s for s in defs.sensors if s.name.endswith("_freshness_sensor")]


def test_an_s3_pipeline_fails_freshness_until_a_load_and_again_once_nothing_new_came_for_too_long(
        book_order, s3, hologres):
    pipeline = book_order(exec={"expect_within": "1h"})
    defs = pipeline.defs
    assert FRESHNESS_CHECK in {key.name for check in defs.asset_checks for key in check.check_keys}

    first = freshness_tick(defs, pipeline.name)
    (never,) = evaluations(first)
    assert not never.passed and "has been loaded into" in never.description and "yet" in never.description

    # The same judgement again is not reported twice.
    assert evaluations(freshness_tick(defs, pipeline.name, first.cursor)) == []

    key = pipeline.key("orders-1.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 10)})
    BatchLoad(pipeline.pipeline.resolve()).run()
    loaded = freshness_tick(defs, pipeline.name, first.cursor)
    (fresh,) = evaluations(loaded)
    assert fresh.passed and key in fresh.description and fresh.metadata["expect_within_seconds"].value == 3600

    # Two hours pass with nothing new: the ledger's newest commit is that old.
    state = pipeline.pipeline.config.output.state
    hologres.execute(f"UPDATE {state}.pipeline_object_ledger SET loaded_at = now() - interval '2 hours' "
                     "WHERE pipeline = %s", (pipeline.name,))
    (stale,) = evaluations(freshness_tick(defs, pipeline.name, loaded.cursor))
    assert not stale.passed
    assert stale.description.startswith(f"no new object from s3://{pipeline.bucket}/{pipeline.prefix}")
    assert "for 2 h (exec.expect_within is 60 min)" in stale.description
    assert stale.metadata["age_seconds"].value >= 7200 and stale.metadata["newest"].value == key


def test_the_check_runs_from_dagster_like_any_other(book_order, s3):
    pipeline = book_order(exec={"expect_within": 600})
    key = pipeline.key("orders-1.csv")
    put_objects(s3, pipeline.bucket, {key: orders_csv(0, 10)})
    BatchLoad(pipeline.pipeline.resolve()).run()
    defs = pipeline.defs
    with dg.instance_for_test() as instance:
        result = dg.materialize([*defs.assets, *defs.asset_checks], instance=instance, resources=defs.resources,
                                selection=dg.AssetSelection.checks(dg.AssetCheckKey(pipeline.pipeline.table_key,
                                                                                    FRESHNESS_CHECK)))
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.description.startswith("fresh: the newest load was")


def test_a_stream_pipeline_is_judged_by_its_newest_checkpoint_move(sensor_stream_with, redshift):
    pipeline = sensor_stream_with(exec__expect_within="15m")
    config = pipeline.config()
    with pipeline.connect() as conn:
        assert not judge(conn, config).passed  # nothing committed yet
    pipeline.put(4)
    from pipeline.stream import StreamLoad

    StreamLoad(config).run()
    with pipeline.connect() as conn:
        now = judge(conn, config)
        later = judge(conn, config, now=datetime.now(UTC) + timedelta(minutes=20))
    assert now.passed and "the last records were committed from shard shardId-" in now.description
    assert not later.passed
    assert later.description.startswith(f"no new record from Kinesis stream {pipeline.name} for 20 min")


@pytest.fixture
def sensor_stream_with(stack: Any, kinesis: Any, tmp_path: Any) -> Any:
    from pipeline_tests.defs.conftest import SensorStream

    class Stream(SensorStream):
        def config(self) -> Any:
            from pipeline.orchestration.factory import read_pipeline

            return read_pipeline(self.directory / f"{self.name}.yml").resolve()

        def connect(self) -> Any:
            from pipeline.warehouse.connection import connect

            output = self.config().output
            return connect(output.conninfo, dialect=output.type, autocommit=True)

    def make(**changes: Any) -> Stream:
        return Stream(tmp_path / "pipelines", kinesis, **changes)

    return make


def test_the_sensor_looks_about_ten_times_per_allowance_within_bounds():
    assert [sensor_interval(s) for s in (60, 900, 3600, 86400)] == [30, 90, 300, 300]
    assert [span(s) for s in (45, 600, 7500, 90000, 200000)] == ["45 s", "10 min", "2 h 5 min", "25 h", "2 d 7 h"]
