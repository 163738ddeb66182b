"""What an SQS message from a bucket's notifications announces: S3's own shape, SNS-wrapped, EventBridge's."""

from __future__ import annotations

import json

from pipeline.sources.sqs import Announcement, parse

BUCKET = "bob-embulk-demo"


def s3_event(key: str, *, bucket: str = BUCKET, event: str = "ObjectCreated:Put", etag: str = "abc") -> dict:
    """As S3 sends it (AWS, "Event message structure"), trimmed to the fields a consumer reads."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "ap-northeast-1",
        "eventTime": "2026-12-03T00:00:00.000Z", "eventName": event,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": key, "size": 1024, "eTag": etag, "sequencer": "0A1B2C3D4E5F678901"}}}]}


def test_s3_notification_key_is_url_decoded() -> None:
    # S3 URL-encodes the key in the event (a space as '+', ':' as %3A).
    body = json.dumps(s3_event("original-data/book+order%3A2026+%E4%BA%BA.csv"))
    assert parse(body, BUCKET) == ([Announcement("original-data/book order:2026 人.csv", "abc", 1024,
                                                 "0A1B2C3D4E5F678901")], "", False)


def test_sns_envelope_is_unwrapped() -> None:
    body = json.dumps({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:ap-northeast-1:1:t",
                       "Message": json.dumps(s3_event("a/b.csv"))})
    assert [a.key for a in parse(body, BUCKET)[0]] == ["a/b.csv"]


def test_eventbridge_object_created_key_is_taken_as_is() -> None:
    body = json.dumps({"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
                       "account": "1", "time": "2026-12-03T00:00:00Z", "region": "ap-northeast-1",
                       "resources": [f"arn:aws:s3:::{BUCKET}"],
                       "detail": {"version": "0", "bucket": {"name": BUCKET},
                                  "object": {"key": "raw/2026-12-03T00:00:00+x.csv", "size": 5, "etag": "e1",
                                             "sequencer": "00"}, "reason": "PutObject"}})
    assert parse(body, BUCKET)[0] == [Announcement("raw/2026-12-03T00:00:00+x.csv", "e1", 5, "00")]


def test_test_event_other_buckets_and_removals_announce_nothing_and_are_recognised() -> None:
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-12-03T00:00:00Z",
                             "Bucket": BUCKET, "RequestId": "r", "HostId": "h"})
    for body in (test_event, json.dumps(s3_event("a.csv", bucket="another")),
                 json.dumps(s3_event("a.csv", event="ObjectRemoved:Delete"))):
        announced, why, unrecognised = parse(body, BUCKET)
        assert announced == [] and why and not unrecognised, body


def test_a_message_that_is_no_s3_notification_is_unrecognised() -> None:
    for body in ("not json", "[1, 2]", json.dumps({"hello": "world"})):
        announced, why, unrecognised = parse(body, BUCKET)
        assert announced == [] and unrecognised and why, body


def notified_config(tmp_path, queue: str, prefix: str = "landing/"):
    path = tmp_path / "events.yml"
    path.write_text(f"""
in:
  type: s3
  bucket: {BUCKET}
  path_prefix: {prefix}
  notifications: {{queue: '{queue}'}}
  parser: {{type: csv, columns: [{{name: a, type: string}}]}}
out: {{type: hologres, url: 'postgresql://u:p@127.0.0.1:5432/d', table: public.t, mode: insert_direct}}
""", encoding="utf-8")
    return path


def test_policy_queue_lets_only_the_bucket_send_and_only_over_tls(tmp_path, capsys) -> None:
    from pipeline.cli import main

    url = "https://sqs.ap-northeast-1.amazonaws.com/123456789012/book-events"
    assert main(["policy", "queue", str(notified_config(tmp_path, url))]) == 0
    policy = json.loads(capsys.readouterr().out)
    allow, deny = policy["Statement"]
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"} and allow["Action"] == "SQS:SendMessage"
    assert allow["Resource"] == deny["Resource"] == "arn:aws:sqs:ap-northeast-1:123456789012:book-events"
    assert allow["Condition"] == {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:*:*:{BUCKET}"},
                                  "StringEquals": {"aws:SourceAccount": "123456789012"}}
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_policy_notification_filters_on_the_prefix_and_needs_the_queue_arn(tmp_path, capsys, monkeypatch) -> None:
    from pipeline.cli import main

    monkeypatch.delenv("AWS_ACCOUNT_ID", raising=False)
    path = notified_config(tmp_path, "book-events")
    assert main(["policy", "notification", str(path), "--region", "ap-northeast-1"]) == 1
    assert "needs its region and account" in capsys.readouterr().err
    assert main(["policy", "notification", str(path), "--region", "ap-northeast-1", "--account", "42"]) == 0
    assert json.loads(capsys.readouterr().out) == {"QueueConfigurations": [{
        "Id": "pipeline-object-created", "QueueArn": "arn:aws:sqs:ap-northeast-1:42:book-events",
        "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix",
                                                                             "Value": "landing/"}]}}}]}


def test_notifications_config_is_checked_where_it_is_written(tmp_path) -> None:
    import pytest

    from pipeline import config
    from pipeline.errors import ConfigError

    loaded = config.load(notified_config(tmp_path, "book-events"))
    assert loaded.input.notifications == config.NotificationsConfig("book-events", 300.0)
    for queue in ("ftp://x/y", "https://sqs.x.amazonaws.com/q"):  # not a queue URL
        with pytest.raises(ConfigError) as refused:
            config.load(notified_config(tmp_path, queue))
        assert refused.value.path == "in.notifications.queue"
    text = notified_config(tmp_path, "q").read_text().replace("{queue: 'q'}", "{queue: q, sweep_interval: 1s}")
    (tmp_path / "events.yml").write_text(text)
    with pytest.raises(ConfigError, match="at least 5 seconds") as refused:
        config.load(tmp_path / "events.yml")
    assert refused.value.path == "in.notifications.sweep_interval"
    (tmp_path / "events.yml").write_text(text.replace("sweep_interval: 1s", "visibility: 1"))
    with pytest.raises(ConfigError, match="unknown key"):
        config.load(tmp_path / "events.yml")


def test_policy_iam_lets_the_pipeline_read_and_delete_its_notifications(tmp_path, capsys) -> None:
    from pipeline.cli import main

    url = "https://sqs.ap-northeast-1.amazonaws.com/123456789012/book-events"
    assert main(["policy", "iam", str(notified_config(tmp_path, url))]) == 0
    statements = {s["Sid"]: s for s in json.loads(capsys.readouterr().out)["Statement"]}
    assert statements["ReadObjectNotifications"] == {
        "Sid": "ReadObjectNotifications", "Effect": "Allow",
        "Action": ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage"],
        "Resource": "arn:aws:sqs:ap-northeast-1:123456789012:book-events"}
    assert main(["policy", "iam", str(notified_config(tmp_path, "book-events"))]) == 0
    statements = {s["Sid"]: s for s in json.loads(capsys.readouterr().out)["Statement"]}
    assert statements["ReadObjectNotifications"]["Resource"].endswith(":book-events")
