"""S3 event notifications read from an SQS queue: which objects a message announces, and when it may go.

A message is one of (AWS, "Event message structure" and "EventBridge event message structure"):

- S3's own notification: ``{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
  "s3": {"bucket": {"name": ...}, "object": {"key": ..., "eTag": ..., "size": ..., "sequencer": ...}}}]}``.
  The key is URL-encoded (a space is ``+``), so it is decoded with ``unquote_plus``;
- the same, wrapped by SNS (``{"Type": "Notification", "Message": "<the JSON above>"}``) when the bucket
  notifies a topic the queue subscribes to without raw delivery;
- EventBridge's (``{"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": ...},
  "object": {"key": ..., "etag": ...}}}``), whose key is not encoded;
- ``s3:TestEvent``, which S3 sends once when the notification is configured: nothing to load.

A notification is a hint, never the record of what loaded: the ledger decides. A duplicate, a late
or an out-of-order message (an older ETag than the object now has) loads nothing new, and a message
is deleted only once the ledger holds the object's current version (``pipeline.follow``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from pipeline.errors import SourceError

MAX_MESSAGES = 10  # ReceiveMessage's largest batch
# While a message's object loads, no other receive sees it; it comes back after this if the consumer dies.
VISIBILITY_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Announcement:
    """One object version a notification names."""

    key: str
    etag: str | None = None  # without quotes
    size: int | None = None
    sequencer: str | None = None


@dataclass
class Message:
    """One received SQS message and what it says."""

    message_id: str
    receipt_handle: str
    announced: list[Announcement] = field(default_factory=list)
    # Why the message announces nothing to load ("" when it does, or when it only names other buckets).
    ignored: str = ""
    unrecognised: bool = False  # not an S3 notification at all: left in the queue (its redrive policy decides)
    sent_at: float | None = None  # SentTimestamp, seconds since the epoch
    receive_count: int = 1  # ApproximateReceiveCount: more than 1 once it came back after a visibility timeout


def parse(body: str, bucket: str) -> tuple[list[Announcement], str, bool]:
    """``(announcements, why nothing, unrecognised)`` for one message body, for objects in ``bucket``."""
    try:
        document = json.loads(body)
    except ValueError:
        return [], "the body is not JSON", True
    if not isinstance(document, dict):
        return [], "the body is not a JSON object", True
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        return parse(document["Message"], bucket)  # through SNS, without raw message delivery
    if document.get("Event") == "s3:TestEvent":
        return [], "S3's test event (sent when the notification was configured)", False
    if isinstance(document.get("Records"), list):
        return _records(document["Records"], bucket)
    if document.get("source") == "aws.s3" and isinstance(document.get("detail"), dict):
        return _eventbridge(document, bucket)
    return [], "not an S3 event notification", True


def _records(records: list[Any], bucket: str) -> tuple[list[Announcement], str, bool]:
    found: list[Announcement] = []
    others: set[str] = set()
    for record in records:
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            continue
        s3 = record.get("s3") or {}
        obj = s3.get("object") or {}
        name = (s3.get("bucket") or {}).get("name")
        event = str(record.get("eventName", ""))
        if name != bucket:
            others.add(str(name))
        elif event.startswith("ObjectCreated:") and isinstance(obj.get("key"), str):
            found.append(Announcement(unquote_plus(obj["key"]), _etag(obj.get("eTag")), _size(obj.get("size")),
                                      obj.get("sequencer")))
        else:
            others.add(f"{event or 'an event'} (only ObjectCreated events load)")
    if found:
        return found, "", False
    return [], "names " + ", ".join(sorted(others)) if others else "holds no S3 records", False


def _eventbridge(document: dict[str, Any], bucket: str) -> tuple[list[Announcement], str, bool]:
    detail = document["detail"]
    name = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    if name != bucket:
        return [], f"names bucket {name}", False
    if document.get("detail-type") != "Object Created" or not isinstance(obj.get("key"), str):
        return [], f"is an EventBridge {document.get('detail-type')!r} event (only Object Created loads)", False
    return [Announcement(obj["key"], _etag(obj.get("etag")), _size(obj.get("size")), obj.get("sequencer"))], "", False


def _etag(value: Any) -> str | None:
    return value.strip('"') if isinstance(value, str) and value else None


def _size(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Queue:
    """The SQS queue a pipeline's bucket notifies: receive, delete, hide for longer."""

    def __init__(self, client: Any, queue: str, bucket: str):
        self.client = client
        self.bucket = bucket
        self.name = queue
        self._url = queue if queue.startswith(("https://", "http://")) else None

    @property
    def url(self) -> str:
        if self._url is None:
            try:
                self._url = self.client.get_queue_url(QueueName=self.name)["QueueUrl"]
            except Exception as error:  # botocore's ClientError or BotoCoreError
                raise _error(error, self.name, "finding") from error
        return self._url

    def receive(self, wait_seconds: float, *, limit: int = MAX_MESSAGES,
                visibility_timeout: int = VISIBILITY_TIMEOUT_SECONDS) -> list[Message]:
        """At most ``limit`` messages, waiting up to ``wait_seconds`` (SQS long polling) for the first."""
        try:
            response = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=max(1, min(limit, MAX_MESSAGES)),
                WaitTimeSeconds=max(0, min(int(wait_seconds), 20)), VisibilityTimeout=visibility_timeout,
                MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"])
        except Exception as error:
            raise _error(error, self.name, "receiving from") from error
        messages = []
        for raw in response.get("Messages", []):
            announced, why, unrecognised = parse(raw.get("Body", ""), self.bucket)
            attributes = raw.get("Attributes") or {}
            sent = attributes.get("SentTimestamp")
            messages.append(Message(raw["MessageId"], raw["ReceiptHandle"], announced, why, unrecognised,
                                    int(sent) / 1000 if sent else None,
                                    int(attributes.get("ApproximateReceiveCount", 1))))
        return messages

    def drain(self, limit: int, visibility_timeout: int = VISIBILITY_TIMEOUT_SECONDS, *,
              until: float | None = None) -> Iterator[Message]:
        """What is in the queue now, up to ``limit`` messages, without waiting for more.

        With ``until`` (a ``time.monotonic()`` instant), an empty queue is long-polled a second at a time
        until the first message arrives or ``until`` is less than a second away; what arrives with or
        after that first message is taken as above.
        """
        taken = 0
        while taken < limit:
            wait = 1 if not taken and until is not None and time.monotonic() + 1 <= until else 0
            batch = self.receive(wait, limit=limit - taken, visibility_timeout=visibility_timeout)
            if not batch:
                if wait:
                    continue
                return
            taken += len(batch)
            yield from batch

    def delete(self, messages: list[Message]) -> list[str]:
        """Delete ``messages``; returns the ids SQS did not delete (they come back, and the ledger decides)."""
        failed: list[str] = []
        for start in range(0, len(messages), MAX_MESSAGES):
            batch = messages[start:start + MAX_MESSAGES]
            try:
                response = self.client.delete_message_batch(QueueUrl=self.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch)])
            except Exception as error:
                raise _error(error, self.name, "deleting from") from error
            failed += [batch[int(entry["Id"])].message_id for entry in response.get("Failed", [])]
        return failed


def _error(error: BaseException, queue: str, doing: str) -> SourceError:
    code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code", "")
    hint = {
        "AWS.SimpleQueueService.NonExistentQueue": "the queue does not exist in this account and region",
        "QueueDoesNotExist": "the queue does not exist in this account and region",
        "AccessDenied": "the credentials need sqs:GetQueueUrl, sqs:ReceiveMessage and sqs:DeleteMessage on it "
                        "(`pipeline policy iam CONFIG` prints them)",
    }.get(code, "")
    return SourceError(f"SQS queue {queue} (in.notifications.queue): {doing} it failed: {error}"
                       + (f"; {hint}" if hint else ""))


# ----------------------------------------------------------------- what real AWS needs (`pipeline policy`)


def queue_arn(queue: str, *, region: str | None, account: str | None) -> str:
    """The queue's ARN, from its URL (``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``) or its name."""
    import re

    match = re.match(r"https?://[^/]*?(?:sqs[.-]([a-z0-9-]+)\.[^/]+)?/(\d+)/([^/]+)$", queue)
    if match:
        region = match.group(1) or region
        account, queue = match.group(2), match.group(3)
    if not region or not account or "*" in (region, account):
        raise ValueError(f"the ARN of queue {queue} needs its region and account: give --region and --account, "
                         "or the queue's URL in in.notifications.queue")
    return f"arn:aws:sqs:{region}:{account}:{queue}"


def queue_policy(arn: str, bucket: str) -> dict[str, Any]:
    """The queue's access policy: the bucket (of this account) may send to it; nobody without TLS.

    AWS's walkthrough ("Configuring a bucket for notifications") grants s3.amazonaws.com SQS:SendMessage
    on the queue, on the condition of the bucket's ARN and the bucket owner's account.
    """
    account = arn.split(":")[4]
    return {"Version": "2012-10-17", "Id": f"{bucket}-object-created", "Statement": [
        {"Sid": "BucketSendsObjectCreated", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
         "Action": "SQS:SendMessage", "Resource": arn,
         "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:*:*:{bucket}"},
                       "StringEquals": {"aws:SourceAccount": account}}},
        {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "SQS:*", "Resource": arn,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    ]}


def notification_configuration(arn: str, prefix: str) -> dict[str, Any]:
    """The bucket's notification configuration: every object created under ``prefix`` goes to the queue.

    S3's filter knows a prefix and a suffix, not a regex: in.path_match_pattern is applied to each
    announced key by the consumer, as it is to each listed one.
    """
    queue: dict[str, Any] = {"Id": "pipeline-object-created", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}
    if prefix:
        queue["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    return {"QueueConfigurations": [queue]}
