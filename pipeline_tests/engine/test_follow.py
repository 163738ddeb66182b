"""Event-driven S3 (`pipeline run --follow` with in.notifications): moto's bucket notifications into its SQS.

Each test has a bucket and a queue of its own, so no other test's objects reach its queue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import config as config_module
from pipeline.batch import RunSummary
from pipeline.follow import ObjectFollow
from pipeline_tests.books import COLUMNS
from pipeline_tests.conftest import _aws_client, notifying_bucket
from pipeline_tests.engine.test_batch import count, rows_csv

pytestmark = pytest.mark.stack

WAIT_SECONDS = 120.0  # a condition's bound; a loaded host only makes the wait longer, never the outcome different
HEADER = "order_id,user_id,book_id,book_name,order_cnt,order_amt\n"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def sqs(stack) -> Any:
    return _aws_client(stack, "sqs")


@pytest.fixture
def events(stack, s3, sqs, unique) -> Iterator[dict[str, str]]:
    """A bucket that notifies a queue of its own of every created object."""
    bucket, queue = f"{unique}-bucket", f"{unique}-events"
    url = notifying_bucket(stack, s3, sqs, bucket, queue)
    yield {"bucket": bucket, "queue": queue, "url": url}
    sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def unique() -> str:
    import uuid

    return f"f{uuid.uuid4().hex[:10]}"


def write_config(path: Path, bucket: str, queue: str, table: str, *, sweep: str = "1h", **parser: Any) -> Path:
    document = {
        "in": {"type": "s3", "bucket": bucket, "path_prefix": "landing/",
               "notifications": {"queue": queue, "sweep_interval": sweep},
               "parser": {"type": "csv", "skip_header_lines": 1, "columns": COLUMNS, **parser}},
        "out": {"type": "hologres", "url": "{{ env.HOLOGRES_URL }}", "table": f"public.{table}",
                "mode": "insert_direct", "primary_key": ["order_id"]},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def in_queue(sqs, url: str) -> int:
    """Messages still in the queue, visible or being handled."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


class Following:
    """An ObjectFollow on a thread, with every run it made."""

    def __init__(self, config_path: Path):
        self.runs: list[RunSummary] = []
        self.lines: list[str] = []
        self.stop = threading.Event()
        self.follower = ObjectFollow(config_module.load(config_path), emit=self.lines.append, on_run=self.runs.append,
                                     poll_seconds=1)
        self.summary: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        try:
            self.summary = self.follower.follow(self.stop)
        except BaseException as error:  # reported by close()
            self.error = error

    def close(self) -> Any:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the follower did not stop"
        if self.error is not None:
            raise self.error
        return self.summary


def test_an_announced_object_loads_and_its_message_goes_only_after_the_commit(stack, s3, sqs, hologres, events,
                                                                                 tmp_path, unique):
    path = write_config(tmp_path / "follow.yml", events["bucket"], events["queue"], unique)
    following = Following(path)
    try:
        wait_for(lambda: following.runs, "the start-up sweep")  # an empty prefix: nothing loaded
        s3.put_object(Bucket=events["bucket"], Key="landing/a.csv", Body=(HEADER + rows_csv(0, 50)).encode())
        wait_for(lambda: any(r.loaded for r in following.runs), "the announced object's run")
        assert count(hologres, unique) == 50
        wait_for(lambda: in_queue(sqs, events["url"]) == 0, "the message's deletion")
        # Outside the prefix: the message goes, nothing loads.
        s3.put_object(Bucket=events["bucket"], Key="elsewhere/b.csv", Body=(HEADER + rows_csv(50, 5)).encode())
        wait_for(lambda: in_queue(sqs, events["url"]) == 0, "the outside message's deletion")
    finally:
        summary = following.close()
    assert count(hologres, unique) == 50
    # Three messages: S3's test event (sent when the notification was configured), a.csv and b.csv.
    assert summary.objects == 1 and summary.rows == 50 and summary.deleted == summary.messages == 3


def test_a_duplicate_or_stale_notification_loads_nothing(stack, s3, sqs, hologres, events, tmp_path, unique):
    path = write_config(tmp_path / "follow.yml", events["bucket"], events["queue"], unique)
    following = Following(path)
    try:
        s3.put_object(Bucket=events["bucket"], Key="landing/a.csv", Body=(HEADER + rows_csv(0, 20)).encode())
        wait_for(lambda: any(r.loaded for r in following.runs), "the first load")
        wait_for(lambda: in_queue(sqs, events["url"]) == 0, "the first message's deletion")
        before = len(following.runs)
        etag = s3.head_object(Bucket=events["bucket"], Key="landing/a.csv")["ETag"].strip('"')
        event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
            "bucket": {"name": events["bucket"]}, "object": {"key": "landing/a.csv", "eTag": etag, "size": 1}}}]}
        sqs.send_message(QueueUrl=events["url"], MessageBody=json.dumps(event))  # the same notification again
        stale = json.loads(json.dumps(event))
        stale["Records"][0]["s3"]["object"]["eTag"] = "0" * 32  # an older version's, arriving late
        sqs.send_message(QueueUrl=events["url"], MessageBody=json.dumps(stale))
        wait_for(lambda: in_queue(sqs, events["url"]) == 0, "the duplicates' deletion")
    finally:
        following.close()
    later = following.runs[before:]
    assert later and all(not r.loaded and r.up_to_date == 1 for r in later), later
    assert count(hologres, unique) == 20


def test_an_object_whose_notification_was_lost_is_loaded_by_the_sweep(stack, s3, sqs, hologres, events, tmp_path,
                                                                      unique):
    path = write_config(tmp_path / "follow.yml", events["bucket"], events["queue"], unique, sweep="5s")
    following = Following(path)
    try:
        wait_for(lambda: following.runs, "the start-up sweep")
        s3.put_object(Bucket=events["bucket"], Key="landing/lost.csv", Body=(HEADER + rows_csv(0, 7)).encode())
        sqs.purge_queue(QueueUrl=events["url"])  # the notification is lost
        wait_for(lambda: any(r.loaded for r in following.runs), "the sweep's load")
    finally:
        following.close()
    assert count(hologres, unique) == 7


def test_a_failed_load_leaves_its_message_in_the_queue(stack, s3, sqs, hologres, events, tmp_path, unique):
    path = write_config(tmp_path / "follow.yml", events["bucket"], events["queue"], unique,
                        stop_on_invalid_record=True)
    following = Following(path)
    try:
        wait_for(lambda: following.runs, "the start-up sweep")
        s3.put_object(Bucket=events["bucket"], Key="landing/bad.csv",
                      Body=(HEADER + rows_csv(0, 3) + "o9,not-a-number,6,x,1,100\n").encode())
        wait_for(lambda: any("bad.csv" in line and line.startswith("error:") for line in following.lines),
                 "the load's error")
    finally:
        following.close()
    assert count(hologres, unique) == 0
    assert in_queue(sqs, events["url"]) == 1  # back after its visibility timeout, for another try


def test_pipeline_run_follow_loads_what_lands_until_interrupted(stack, s3, sqs, hologres, events, tmp_path, unique):
    path = write_config(tmp_path / "follow.yml", events["bucket"], events["queue"], unique)
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path), "--follow"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        s3.put_object(Bucket=events["bucket"], Key="landing/cli.csv", Body=(HEADER + rows_csv(0, 11)).encode())
        wait_for(lambda: process.poll() is not None
                 or (table_exists(hologres, unique) and count(hologres, unique) == 11), "the CLI's load")
        assert process.poll() is None, process.communicate()
        wait_for(lambda: in_queue(sqs, events["url"]) == 0, "the message's deletion")
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "1 object(s) to load" in err, err
    assert count(hologres, unique) == 11


def table_exists(conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()[0]
