"""Kinesis to the Redshift stand-in: micro-batches, exactly-once checkpoints, rejects, follow mode."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline import config as config_module
from pipeline.stream import StreamLoad
from pipeline.warehouse.copy import text_line

pytestmark = pytest.mark.stack


@pytest.fixture
def kinesis_impl(request) -> str:
    """moto unless a test asks for both: ``@both_implementations``."""
    return getattr(request, "param", "moto")


@pytest.fixture
def kinesis(request, stack, kinesis_impl, monkeypatch):
    """The Kinesis the test puts to and the engine reads (AWS_ENDPOINT_URL_KINESIS, for subprocesses too)."""
    if kinesis_impl == "moto":
        return request.getfixturevalue("kinesis_moto")
    server = request.getfixturevalue("kinesalite")
    if not server.alive():
        # Restarted for the tests after this one; this one fails with what the server logged.
        pytest.fail(f"kinesalite (pid {server.process.pid if server.process else '?'}) died during an earlier test "
                    f"(exit {server.process.poll() if server.process else '?'}); it logged:\n{server.restart()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", server.endpoint)
    return server.client()


@pytest.fixture
def kinesis_moto(stack):
    from pipeline_tests.conftest import _aws_client

    return _aws_client(stack, "kinesis")


# The tests the second Kinesis implementation (kinesalite, which reports MillisBehindLatest 0 on every page)
# also runs: loading, batching, replay, rejects, kill -9, follow, caught-up runs.
both_implementations = pytest.mark.parametrize("kinesis_impl", ["moto", "kinesalite"], indirect=True)


@pytest.fixture
def stream(stack, kinesis) -> str:
    name = f"s{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return name


def write_config(path: Path, stream: str, **changes: object) -> Path:
    document = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines" / "sensor_data.yml").read_text())
    document["in"]["stream"] = stream
    document["out"]["table"] = f"sensor_schema.{path.stem}"
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        document[section][key] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def put(kinesis, stream: str, records: list[bytes | dict]) -> None:
    for start in range(0, len(records), 500):
        entries = [{"Data": r if isinstance(r, bytes) else json.dumps(r).encode(), "PartitionKey": str(i)}
                   for i, r in enumerate(records[start:start + 500], start)]
        assert kinesis.put_records(StreamName=stream, Records=entries)["FailedRecordCount"] == 0


def sensors(n: int, offset: int = 0) -> list[dict]:
    return [{"sensorId": (i + offset) % 101, "currentTemperature": 10 + i % 141, "status": "OK"} for i in range(n)]


def table_rows(conn, table: str) -> list[tuple]:
    return conn.execute(f"SELECT sensorid, currenttemperature, status, uuid FROM sensor_schema.{table}").fetchall()


@both_implementations
def test_a_run_loads_every_record_once_with_uuid_and_without_record_timestamp(stack, kinesis, redshift, tmp_path,
                                                                              stream):
    path = write_config(tmp_path / f"{stream}.yml", stream)
    put(kinesis, stream, sensors(2500))
    summary = StreamLoad(config_module.load(path)).run()
    assert summary.records == 2500 and summary.rows == 2500
    rows = table_rows(redshift, stream)
    assert len(rows) == 2500 and len({r[3] for r in rows}) == 2500
    columns = [r[0] for r in redshift.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
        (stream,))]
    assert columns == ["sensorid", "currenttemperature", "status", "uuid"]
    assert StreamLoad(config_module.load(path)).run().records == 0
    put(kinesis, stream, sensors(10, offset=7))
    assert StreamLoad(config_module.load(path)).run().records == 10
    assert len(table_rows(redshift, stream)) == 2510


@both_implementations
def test_small_batches_commit_checkpoints_with_the_rows(stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__max_records=300)
    put(kinesis, stream, sensors(1000))
    summary = StreamLoad(config_module.load(path)).run()
    assert summary.records == 1000 and len([b for b in summary.batches if b.records]) >= 4
    checkpoints = redshift.execute(
        "SELECT shard_id, records FROM sensor_schema.pipeline_shard_checkpoint WHERE stream = %s", (stream,)
    ).fetchall()
    assert sum(r[1] for r in checkpoints) == 1000 and len(checkpoints) == 2


@both_implementations
def test_a_replayed_batch_gets_the_same_uuids(stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream)
    put(kinesis, stream, sensors(50))
    StreamLoad(config_module.load(path)).run()
    first = {r[3] for r in table_rows(redshift, stream)}
    redshift.execute(f"TRUNCATE sensor_schema.{stream}")
    redshift.execute("DELETE FROM sensor_schema.pipeline_shard_checkpoint WHERE stream = %s", (stream,))
    StreamLoad(config_module.load(path)).run()
    assert {r[3] for r in table_rows(redshift, stream)} == first


@both_implementations
def test_bad_records_go_to_the_rejected_table_and_add_up(stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream)
    put(kinesis, stream, [*sensors(5), b"{not json", {"sensorId": "hot", "currentTemperature": 1, "status": "OK"},
                          b"\xff\xfe", *sensors(5)])
    summary = StreamLoad(config_module.load(path)).run()
    rejected = redshift.execute(f"SELECT source, sequence_number, column_name, error FROM "
                                f"sensor_schema.{stream}_rejected").fetchall()
    assert summary.rows == 10 and summary.rejected == 3 and summary.records == 13
    assert len(rejected) == 3
    assert all(r[0].startswith(f"{stream}/shardId-") and r[1] for r in rejected)
    assert any(r[2] == "sensorId" for r in rejected)


def test_stop_on_invalid_record_fails_naming_shard_and_sequence_and_commits_nothing(stack, kinesis, redshift,
                                                                                    tmp_path, stream):
    document = yaml.safe_load(write_config(tmp_path / f"{stream}.yml", stream).read_text())
    document["in"]["parser"]["stop_on_invalid_record"] = True
    path = tmp_path / f"{stream}.yml"
    path.write_text(yaml.safe_dump(document))
    put(kinesis, stream, [*sensors(3), b"{broken"])
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(path)], capture_output=True,
                            text=True, env=os.environ.copy(), timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{stream}/shardId-" in result.stderr and "sequence" in result.stderr
    assert redshift.execute("SELECT count(*) FROM sensor_schema.pipeline_shard_checkpoint WHERE stream = %s",
                            (stream,)).fetchone()[0] == 0


@both_implementations
def test_kill_9_mid_batch_then_rerun_leaves_exactly_every_record(stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__max_records=500)
    put(kinesis, stream, sensors(2500))
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        exists = redshift.execute("SELECT to_regclass(%s)", (f"sensor_schema.{stream}",)).fetchone()[0]
        if exists and redshift.execute(f"SELECT count(*) FROM sensor_schema.{stream}").fetchone()[0] > 0:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert len(table_rows(redshift, stream)) < 2500
    StreamLoad(config_module.load(path)).run()
    rows = table_rows(redshift, stream)
    assert len(rows) == 2500 and len({r[3] for r in rows}) == 2500


@both_implementations
def test_follow_commits_every_window_until_stopped(stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__window_seconds=0.2)
    load = StreamLoad(config_module.load(path))
    stop = threading.Event()
    worker = threading.Thread(target=load.follow, args=(stop,))
    worker.start()
    try:
        put(kinesis, stream, sensors(20))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if redshift.execute("SELECT to_regclass(%s)", (f"sensor_schema.{stream}",)).fetchone()[0] and \
                    len(table_rows(redshift, stream)) == 20:
                break
            time.sleep(0.05)
        assert len(table_rows(redshift, stream)) == 20
    finally:
        stop.set()
        worker.join(timeout=20)
    assert not worker.is_alive()


def test_a_redshift_batch_is_staged_as_gzip_csv_under_sse_kms_and_copied_from_s3(stack, s3):
    from psycopg import sql

    from pipeline.config import S3StagingConfig
    from pipeline.warehouse import staging
    from pipeline.warehouse.dialects.redshift import Redshift

    config = S3StagingConfig(bucket=stack.bucket, prefix="redshift-staging/", sse_kms_key_id=stack.kms_key)
    # A backslash before a t, n or r is a backslash and a letter (a Windows path), not a tab or a newline.
    lines = [text_line(["1", "a\tb", None]), text_line(["2", 'say "hi"', "x\\y"]),
             text_line(["3", "C:\\temp\\new", "\\N"])]
    uri = staging.put(s3, config, "sensor_data/0123456789abcdef0123.csv.gz", staging.staged_csv(lines))
    key = uri.removeprefix(f"s3://{stack.bucket}/")
    head = s3.head_object(Bucket=stack.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    body = gzip.decompress(s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()).decode()
    assert body == '"1","a\tb",\\N\n"2","say ""hi""","x\\y"\n"3","C:\\temp\\new","\\N"\n'
    statement = Redshift().copy_from_s3(sql.Identifier("sensor_schema", "sensor_data"), ["sensorid", "uuid"], uri,
                                        "arn:aws:iam::123:role/r", staging.STAGED_FORMAT).as_string(None)
    assert statement == (
        f'COPY "sensor_schema"."sensor_data" ("sensorid", "uuid") FROM \'{uri}\' '
        "IAM_ROLE 'arn:aws:iam::123:role/r' FORMAT AS CSV QUOTE AS '\"' DELIMITER AS ',' NULL AS '\\\\N' GZIP "
        "TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF")
    staging.delete(s3, [uri])
    assert "Contents" not in s3.list_objects_v2(Bucket=stack.bucket, Prefix=key)


@both_implementations
def test_follow_commits_within_its_window_while_records_keep_arriving(stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__window_seconds=0.5)
    load = StreamLoad(config_module.load(path))
    stop, putting = threading.Event(), threading.Event()
    putting.set()

    def produce() -> None:
        for round_ in range(40):  # 4 s of steady traffic: no GetRecords page is ever empty for long
            put(kinesis, stream, sensors(20, offset=round_))
            time.sleep(0.1)
        putting.clear()

    follower = threading.Thread(target=load.follow, args=(stop,))
    producer = threading.Thread(target=produce)
    follower.start()
    producer.start()
    try:
        time.sleep(2.5)
        visible_while_putting = 0
        if redshift.execute("SELECT to_regclass(%s)", (f"sensor_schema.{stream}",)).fetchone()[0]:
            visible_while_putting = len(table_rows(redshift, stream))
        assert putting.is_set() and visible_while_putting > 0
        producer.join()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(table_rows(redshift, stream)) < 800:
            time.sleep(0.1)
        rows = table_rows(redshift, stream)
        assert len(rows) == 800 and len({r[3] for r in rows}) == 800
    finally:
        stop.set()
        producer.join()
        follower.join(timeout=20)


class EndlessKinesis:
    """Two shards that always hold more: each GetRecords returns a few new records, behind the tip."""

    PAGE = 3

    def __init__(self, millis_behind: int = 60_000, backlog: int | None = None) -> None:
        self.read: dict[str, int] = {}
        self.millis_behind = millis_behind
        self.backlog = backlog  # records per shard, then nothing more: a finite backlog

    def describe_stream_summary(self, **_: object) -> dict:
        # Records dated 2024 within retention, so the retention check has nothing to say.
        return {"StreamDescriptionSummary": {"StreamName": "endless", "StreamARN": "arn:endless",
                                             "StreamStatus": "ACTIVE", "RetentionPeriodHours": 1_000_000}}

    def list_shards(self, **_: object) -> dict:
        return {"Shards": [{"ShardId": f"shardId-00000000000{n}",
                            "SequenceNumberRange": {"StartingSequenceNumber": "1"}} for n in range(2)]}

    def get_shard_iterator(self, ShardId: str, **_: object) -> dict:
        return {"ShardIterator": f"{ShardId}:0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict:
        from datetime import UTC, datetime

        shard_id, start = ShardIterator.rsplit(":", 1)
        first = int(start)
        last = first + min(Limit, self.PAGE)
        if self.backlog is not None:
            last = min(last, self.backlog)
        records = [{"SequenceNumber": str(1000 + n), "PartitionKey": str(n), "ApproximateArrivalTimestamp":
                    datetime(2024, 1, 1, tzinfo=UTC), "Data": json.dumps(sensors(1, n)[0]).encode()}
                   for n in range(first, last)]
        self.read[shard_id] = first + len(records)
        behind = 0 if self.backlog is not None and last >= self.backlog else self.millis_behind
        return {"Records": records, "MillisBehindLatest": behind,
                "NextShardIterator": f"{shard_id}:{first + len(records)}"}


def test_a_batch_takes_records_from_every_shard_when_all_keep_receiving(stack, redshift, tmp_path, stream):
    # Neither shard ever reaches its tip; the batch's budget (or, alike, its window) ends it. Pages are taken
    # from each shard in turn, so one busy shard cannot fill every batch while the other waits.
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__max_records=60)
    load = StreamLoad(config_module.load(path), kinesis_client=EndlessKinesis(), sleep=lambda _: None)

    summary = load.run(max_batches=1)

    (batch,) = summary.batches
    assert batch.records == 60 and not batch.at_tip
    assert all(count >= 27 for count in batch.shards.values()) and len(batch.shards) == 2, batch.shards
    rows = table_rows(redshift, stream)
    assert len(rows) == 60 and len({r[3] for r in rows}) == 60
    # Each shard's checkpoint is its last record parsed, not what was read ahead.
    assert load.checkpoints() == {shard: str(1000 + count - 1) for shard, count in batch.shards.items()}


def test_a_run_caught_up_with_steady_traffic_commits_after_a_window_and_ends(stack, redshift, tmp_path, stream):
    # Every page holds new records, yet each is at the tip: the run must not chase them for RUN_BATCH_SECONDS.
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__window_seconds=0.3)
    load = StreamLoad(config_module.load(path), kinesis_client=EndlessKinesis(millis_behind=0),
                      sleep=lambda _: None)

    started = time.monotonic()
    summary = load.run()

    assert time.monotonic() - started < 10
    (batch,) = summary.batches
    assert batch.at_tip and batch.records > 0 and len(batch.shards) == 2
    assert len(table_rows(redshift, stream)) == batch.records


@both_implementations
def test_a_lingering_run_commits_what_arrives_while_it_runs_and_ends_on_a_window_that_brings_nothing(
        stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__window_seconds=0.1)
    load = StreamLoad(config_module.load(path))
    put(kinesis, stream, sensors(10))
    real_batch = load.batch
    batches = []

    def batch(*args, **kwargs):
        result = real_batch(*args, **kwargs)
        batches.append(result.records)
        if len(batches) == 1:  # records that land while the run runs, after its first commit
            put(kinesis, stream, sensors(7, offset=100))
        return result

    load.batch = batch
    summary = load.run(linger=600)

    assert batches == [10, 7, 0]  # the third window brought nothing: the run ended, long before 600 s
    assert summary.records == 17 and len(table_rows(redshift, stream)) == 17
    # Without linger, the first batch at the tip ends the run.
    put(kinesis, stream, sensors(3, offset=200))
    batches.clear()
    assert load.run().records == 3 and batches == [3]


@both_implementations
def test_a_run_loads_a_whole_backlog_even_when_its_window_closes_inside_the_tip_pages(stack, redshift, tmp_path,
                                                                                     stream):
    # Each shard's one page holds its whole backlog and reaches the tip, and the window closes at once: the
    # run must still parse both pages to their ends before it may call itself caught up.
    kinesis = EndlessKinesis(millis_behind=0, backlog=10_000)
    kinesis.PAGE = 10_000
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__window_seconds=0.05)
    load = StreamLoad(config_module.load(path), kinesis_client=kinesis, sleep=lambda _: None)

    summary = load.run()

    assert summary.records == 20_000 and summary.batches[-1].at_tip
    assert len(table_rows(redshift, stream)) == 20_000


def test_record_timestamp_is_loaded_when_no_filter_drops_it(stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream)
    document = yaml.safe_load(path.read_text())
    document["filters"] = [f for f in document["filters"] if f["type"] != "drop_fields"]
    path.write_text(yaml.safe_dump(document))
    put(kinesis, stream, sensors(3))
    StreamLoad(config_module.load(path)).run()
    stamps = redshift.execute(f'SELECT "$record_timestamp" FROM sensor_schema.{stream}').fetchall()
    assert len(stamps) == 3 and all(s[0] is not None for s in stamps)


def test_merge_mode_updates_a_replayed_record_instead_of_adding_it(stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream, out__mode="merge")
    put(kinesis, stream, sensors(30))
    StreamLoad(config_module.load(path)).run()
    redshift.execute(f"UPDATE sensor_schema.{stream} SET status = 'STALE'")
    redshift.execute("DELETE FROM sensor_schema.pipeline_shard_checkpoint WHERE stream = %s", (stream,))
    assert StreamLoad(config_module.load(path)).run().records == 30  # every record replayed
    rows = table_rows(redshift, stream)
    assert len(rows) == 30 and {r[2] for r in rows} == {"OK"}


def test_redshift_merge_is_generated_as_delete_then_insert_of_the_last_row_per_key():
    from psycopg import sql

    from pipeline.warehouse.dialects.redshift import Redshift

    target, stage = sql.Identifier("sensor_schema", "sensor_data"), sql.Identifier("pl_stage_sensor_data")
    dialect = Redshift()
    rendered = [s.as_string(None) for s in (*dialect.merge_stage(stage, target, ["uuid", "status"], "pl_seq"),
                                            *dialect.merge_from_stage(target, stage, ["uuid", "status"], ["uuid"],
                                                                      "pl_seq"))]
    assert rendered == [
        'CREATE TEMP TABLE "pl_stage_sensor_data" (LIKE "sensor_schema"."sensor_data")',
        'ALTER TABLE "pl_stage_sensor_data" ADD COLUMN "pl_seq" bigint',
        'DELETE FROM "sensor_schema"."sensor_data" USING "pl_stage_sensor_data" WHERE '
        '"sensor_schema"."sensor_data"."uuid" = "pl_stage_sensor_data"."uuid"',
        'INSERT INTO "sensor_schema"."sensor_data" ("uuid", "status") SELECT "uuid", "status" FROM '
        '(SELECT "uuid", "status", ROW_NUMBER() OVER (PARTITION BY "uuid" ORDER BY "pl_seq" DESC) AS pl_rank '
        'FROM "pl_stage_sensor_data") AS latest WHERE pl_rank = 1',
    ]


def test_a_record_redshift_refuses_is_rejected_with_its_shard_and_sequence_and_the_batch_commits(
        stack, kinesis, redshift, tmp_path, stream):
    path = write_config(tmp_path / f"{stream}.yml", stream)  # status is varchar(16), stop_on_invalid_record false
    put(kinesis, stream, [*sensors(20), {"sensorId": 7, "currentTemperature": 20, "status": "x" * 17},
                          *sensors(20, offset=50)])

    summary = StreamLoad(config_module.load(path)).run()

    assert summary.records == 41 and summary.rows == 40 and summary.rejected == 1
    assert len(table_rows(redshift, stream)) == 40
    source, sequence, column, error = redshift.execute(
        f"SELECT source, sequence_number, column_name, error FROM sensor_schema.{stream}_rejected").fetchone()
    assert source.startswith(f"{stream}/shardId-") and sequence and column == "status"
    assert "refuse" in error and "String length exceeds DDL length" in error
    assert StreamLoad(config_module.load(path)).run().records == 0


def test_a_small_redshift_batch_goes_in_by_multi_row_insert_and_a_large_one_is_staged(
        stack, kinesis, redshift, tmp_path, stream, monkeypatch):
    from pipeline import stream as stream_module
    from pipeline.warehouse import staging

    staged = []
    real_put = staging.put
    monkeypatch.setattr(staging, "put", lambda *args: staged.append(args[2]) or real_put(*args))
    monkeypatch.setattr(stream_module, "INSERT_MAX_ROWS", 30)
    path = write_config(tmp_path / f"{stream}.yml", stream, exec__max_records=40)
    # Values an INSERT and a staged CSV must both keep: backslashes before t and n, quotes, a tab.
    odd = [{"sensorId": i, "currentTemperature": 1, "status": status}
           for i, status in enumerate(["C:\\temp\\new", 'say "hi"', "a\tb", "\\N"])]
    put(kinesis, stream, [*odd, *sensors(16)])

    StreamLoad(config_module.load(path)).run()
    assert staged == []  # 20 rows: one INSERT, nothing staged
    put(kinesis, stream, [*odd, *sensors(36, offset=100)])
    StreamLoad(config_module.load(path)).run()
    assert len(staged) == 1  # 40 rows: past INSERT_MAX_ROWS, staged and copied from S3

    statuses = [row[2] for row in table_rows(redshift, stream)]
    assert len(statuses) == 60
    for value in ("C:\\temp\\new", 'say "hi"', "a\tb", "\\N"):
        assert statuses.count(value) == 2, value


def test_with_stop_on_invalid_record_a_refused_record_stops_the_run_naming_it_and_commits_nothing(
        stack, kinesis, redshift, tmp_path, stream):
    from pipeline.errors import RecordError

    path = write_config(tmp_path / f"{stream}.yml", stream)
    document = yaml.safe_load(path.read_text())
    document["in"]["parser"]["stop_on_invalid_record"] = True
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    put(kinesis, stream, [*sensors(5), {"sensorId": 7, "currentTemperature": 20, "status": "é" * 9}])

    with pytest.raises(RecordError) as raised:
        StreamLoad(config_module.load(path)).run()

    assert raised.value.source.startswith(f"{stream}/shardId-") and raised.value.column == "status"
    assert isinstance(raised.value.position, str)  # the record's sequence number
    assert redshift.execute("SELECT count(*) FROM sensor_schema.pipeline_shard_checkpoint WHERE stream = %s",
                            (stream,)).fetchone()[0] == 0


def hologres_config(path: Path, stream: str, mode: str = "append") -> Path:
    document = yaml.safe_load(write_config(path, stream).read_text())
    document["out"] = {"type": "hologres", "url": "{{ env.HOLOGRES_URL }}", "table": f"public.{path.stem}",
                       "mode": mode, "primary_key": ["uuid"]}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_a_stream_into_hologres_commits_rows_and_checkpoints_in_one_multi_dml_transaction(
        stack, kinesis, hologres, tmp_path, stream):
    path = hologres_config(tmp_path / f"{stream}.yml", stream)
    put(kinesis, stream, [*sensors(30), b"{not json"])

    summary = StreamLoad(config_module.load(path)).run()

    assert summary.rows == 30 and summary.rejected == 1
    assert hologres.execute(f"SELECT count(DISTINCT uuid) FROM public.{stream}").fetchone()[0] == 30
    assert hologres.execute(f"SELECT count(*) FROM public.{stream}_rejected").fetchone()[0] == 1
    assert hologres.execute("SELECT sum(records) FROM public.pipeline_shard_checkpoint WHERE stream = %s",
                            (stream,)).fetchone()[0] == 31
    assert StreamLoad(config_module.load(path)).run().records == 0


def test_a_stream_merge_into_hologres_is_refused_with_the_fix(stack, kinesis, tmp_path, stream):
    from pipeline.errors import WarehouseError

    path = hologres_config(tmp_path / f"{stream}.yml", stream, mode="merge")

    with pytest.raises(WarehouseError) as raised:
        StreamLoad(config_module.load(path)).run()

    assert "temporary table" in str(raised.value) and "append" in str(raised.value)


# ----------------------------------------------------------------- records lost at the source, streams made anew


class TrimmedKinesis:
    """The session's Kinesis with its shards trimmed below a sequence number, as retention trims them (moto
    never expires records): an iterator that would start below the trim point starts at it."""

    def __init__(self, client, floor: int):
        self._client = client
        self.floor = floor

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def get_shard_iterator(self, **arguments):
        kind = arguments.get("ShardIteratorType")
        start = int(arguments.get("StartingSequenceNumber", 0))
        if kind == "TRIM_HORIZON" or (kind == "AT_SEQUENCE_NUMBER" and start < self.floor) or (
                kind == "AFTER_SEQUENCE_NUMBER" and start < self.floor - 1):
            arguments = {**arguments, "ShardIteratorType": "AT_SEQUENCE_NUMBER",
                         "StartingSequenceNumber": str(self.floor)}
        return self._client.get_shard_iterator(**arguments)


def one_shard_stream(kinesis) -> str:
    name = f"s{uuid.uuid4().hex[:10]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    return name


def age_watch(conn, stream: str, hours: float) -> None:
    """As if the last run that read the shard ran ``hours`` ago."""
    conn.execute("UPDATE sensor_schema.pipeline_stream_watch SET verified_through = verified_through - "
                 f"interval '{hours} hours' WHERE stream = %s", (stream,))


@pytest.mark.parametrize("on_data_loss", ["fail", "warn"])
def test_records_expired_before_they_were_read_stop_the_run_or_are_reported(stack, kinesis, redshift, tmp_path,
                                                                               on_data_loss):
    from pipeline.errors import SourceError

    stream = one_shard_stream(kinesis)
    path = write_config(tmp_path / f"{stream}.yml", stream, in__on_data_loss=on_data_loss)
    put(kinesis, stream, sensors(10))
    assert StreamLoad(config_module.load(path)).run().records == 10
    put(kinesis, stream, sensors(10, offset=10))
    sequences = [int(r["SequenceNumber"]) for r in kinesis.get_records(ShardIterator=kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"])[
        "Records"]]
    # Two days later, retention (24 h) has trimmed the shard up to the 16th record: 5 were never read.
    age_watch(redshift, stream, 48)
    trimmed = TrimmedKinesis(kinesis, sequences[15])

    if on_data_loss == "fail":
        with pytest.raises(SourceError) as raised:
            StreamLoad(config_module.load(path), kinesis_client=trimmed).run()
        message = str(raised.value)
        assert f"{stream}/shardId-000000000000" in message
        assert f"after sequence {sequences[9]}" in message and f"up to sequence {sequences[15]}" in message
        assert "arrived between" in message and "on_data_loss: warn" in message
        assert [loss.before for loss in raised.value.losses] == [str(sequences[15])]
        assert len(table_rows(redshift, stream)) == 10  # nothing more loaded
        return
    summary = StreamLoad(config_module.load(path), kinesis_client=trimmed).run()
    assert summary.records == 5 and [loss.before for loss in summary.data_loss] == [str(sequences[15])]
    assert summary.data_loss[0].after == str(sequences[9])
    assert len(table_rows(redshift, stream)) == 15
    again = StreamLoad(config_module.load(path), kinesis_client=trimmed).run()
    assert again.records == 0 and not again.data_loss  # reported once


def test_an_idle_stream_whose_checkpoint_aged_out_has_lost_nothing_when_a_run_saw_its_tip_meanwhile(
        stack, kinesis, redshift, tmp_path):
    stream = one_shard_stream(kinesis)
    path = write_config(tmp_path / f"{stream}.yml", stream)
    put(kinesis, stream, sensors(5))
    StreamLoad(config_module.load(path)).run()
    first = int(kinesis.get_records(ShardIterator=kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"])[
        "Records"][-1]["SequenceNumber"])
    age_watch(redshift, stream, 30)
    load = StreamLoad(config_module.load(path))
    load.pending()  # a sensor's look finds nothing new and says so (the watch row was stale)
    put(kinesis, stream, sensors(3, offset=5))
    # Retention has since trimmed the checkpoint's record, but nothing arrived between it and the look.
    summary = StreamLoad(config_module.load(path), kinesis_client=TrimmedKinesis(kinesis, first + 1)).run()
    assert summary.records == 3 and not summary.data_loss


def test_a_stream_created_again_under_its_name_stops_the_run_or_is_read_from_its_start(stack, kinesis, redshift,
                                                                                     tmp_path):
    from pipeline.errors import SourceError

    stream = one_shard_stream(kinesis)
    path = write_config(tmp_path / f"{stream}.yml", stream)
    put(kinesis, stream, sensors(20))
    assert StreamLoad(config_module.load(path)).run().records == 20
    old_uuids = {r[3] for r in table_rows(redshift, stream)}
    kinesis.delete_stream(StreamName=stream)
    kinesis.get_waiter("stream_not_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    put(kinesis, stream, sensors(5, offset=100))

    with pytest.raises(SourceError) as raised:
        StreamLoad(config_module.load(path)).run()
    assert "was created again" in str(raised.value) and "on_stream_recreated: restart" in str(raised.value)
    assert len(table_rows(redshift, stream)) == 20

    document = yaml.safe_load(path.read_text())
    document["in"]["on_stream_recreated"] = "restart"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    summary = StreamLoad(config_module.load(path)).run()
    assert summary.records == 5
    rows = table_rows(redshift, stream)
    assert len(rows) == 25
    assert len({r[3] for r in rows} - old_uuids) == 5  # the new stream's uuids are not the old one's
    assert StreamLoad(config_module.load(path)).run().records == 0


def test_a_sensor_look_still_answers_when_its_note_of_the_tip_cannot_be_written(stack, kinesis, tmp_path, stream,
                                                                               monkeypatch):
    import psycopg

    path = write_config(tmp_path / f"{stream}.yml", stream)
    put(kinesis, stream, sensors(3))
    StreamLoad(config_module.load(path)).run()
    load = StreamLoad(config_module.load(path))

    def refused(*_args, **_kwargs):
        raise psycopg.errors.InsufficientPrivilege("permission denied for table pipeline_stream_watch")

    monkeypatch.setattr(load, "_vouch", refused)
    lags = load.pending()

    assert len(lags) == 2 and not any(lag.has_records for lag in lags.values())
