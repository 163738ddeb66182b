"""Policies for ``pipeline policy``: the least-privilege IAM policy a pipeline needs, and the S3 bucket
policy of the Embulk-to-Hologres tutorial (allow-listed source addresses, TLS only), as plain dicts.

The transport rules (TLS to AWS and to the warehouse) that config validation applies are
:mod:`pipeline.transport`'s.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from pipeline import registry
from pipeline.config import PipelineConfig

POLICY_VERSION = "2012-10-17"


# --------------------------------------------------------------------------- policies


def _arn(service: str, region: str, account: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


def kms_key_arn(key: str, region: str, account: str) -> str:
    """An ARN for ``key`` given as an ARN, a key id or an ``alias/...`` name."""
    if key.startswith("arn:"):
        return key
    if key.startswith("alias/"):
        # IAM evaluates kms:Decrypt against the key, not the alias: an alias only narrows by name.
        return _arn("kms", region, account, key)
    return _arn("kms", region, account, f"key/{key}")


def _kms_statement(sid: str, actions: list[str], key: str, region: str, account: str,
                   via_service: str | None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions}
    if key.startswith("alias/"):
        # A policy on an alias ARN matches nothing: match keys by the alias they are reached through.
        statement["Resource"] = _arn("kms", region, account, "key/*")
        statement["Condition"] = {"ForAnyValue:StringEquals": {"kms:ResourceAliases": key}}
    else:
        statement["Resource"] = kms_key_arn(key, region, account)
    if via_service:
        # Only through the service (S3, Kinesis) on the caller's behalf, never a direct KMS call.
        operator = "StringLike" if region == "*" else "StringEquals"
        statement.setdefault("Condition", {})[operator] = {"kms:ViaService": f"{via_service}.{region}.amazonaws.com"}
    return statement


def iam_policy(config: PipelineConfig, *, account: str = "*", region: str = "*",
               kms_key: str | None = None) -> dict[str, Any]:
    """The least-privilege IAM policy for running ``config``: read its source, write its staging area.

    ``kms_key`` is the key the source objects are encrypted with (SSE-KMS); the staging area's key
    comes from ``out.s3_staging.sse_kms_key_id``.
    """
    statements: list[dict[str, Any]] = []
    source = config.input
    if registry.in_s3(source):
        prefix = source.path_prefix
        listing: dict[str, Any] = {
            "Sid": "ListSourcePrefix",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{source.bucket}",
        }
        if prefix:
            listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
        statements.append(listing)
        statements.append({
            "Sid": "ReadSourceObjects",
            "Effect": "Allow",
            # GetObjectVersion: on a versioned bucket reads are pinned to the version HeadObject saw.
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"arn:aws:s3:::{source.bucket}/{prefix}*",
        })
        if kms_key:
            statements.append(_kms_statement("DecryptSourceObjects", ["kms:Decrypt"], kms_key, region, account,
                                             "s3"))
        if source.notifications is not None:
            from pipeline.sources.sqs import queue_arn

            queue = source.notifications.queue
            try:
                arn = queue_arn(queue, region=region, account=account)
            except ValueError:  # a name, and no region or account given: any queue of that name
                arn = _arn("sqs", region, account, queue.rsplit("/", 1)[-1])
            statements.append({
                "Sid": "ReadObjectNotifications",
                "Effect": "Allow",
                "Action": ["sqs:GetQueueUrl", "sqs:ReceiveMessage", "sqs:DeleteMessage"],
                "Resource": arn,
            })
    elif registry.is_stream(source):
        statements.append({
            "Sid": "ReadSourceStream",
            "Effect": "Allow",
            "Action": ["kinesis:DescribeStreamSummary", "kinesis:DescribeStream", "kinesis:ListShards",
                       "kinesis:GetShardIterator", "kinesis:GetRecords"],
            "Resource": _arn("kinesis", region, account, f"stream/{source.stream}"),
        })
        if kms_key:
            # A stream with server-side encryption: GetRecords decrypts through Kinesis.
            statements.append(_kms_statement("DecryptSourceStream", ["kms:Decrypt"], kms_key, region, account,
                                             "kinesis"))
    staging = config.output.s3_staging
    if staging is not None:
        statements.append({
            "Sid": "WriteRedshiftStaging",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": f"arn:aws:s3:::{staging.bucket}/{staging.prefix}*",
        })
        if staging.sse_kms_key_id:
            statements.append(_kms_statement("EncryptRedshiftStaging", ["kms:GenerateDataKey"],
                                             staging.sse_kms_key_id, region, account, "s3"))
    return {"Version": POLICY_VERSION, "Statement": statements}


def bucket_policy(bucket: str, allow_ips: Iterable[str], vpc_endpoints: Iterable[str] = ()) -> dict[str, Any]:
    """The bucket policy of the Embulk-to-Hologres tutorial: only listed sources, only over TLS.

    Requests from outside ``allow_ips`` are denied unless they come through one of
    ``vpc_endpoints`` (whose traffic carries private addresses, not the listed public ones).
    """
    cidrs = [str(ipaddress.ip_network(cidr, strict=False)) for cidr in allow_ips]
    if not cidrs:
        raise ValueError("at least one --allow-ip is required")
    resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    outside: dict[str, Any] = {"NotIpAddress": {"aws:SourceIp": cidrs}}
    endpoints = list(vpc_endpoints)
    if endpoints:
        outside["StringNotEquals"] = {"aws:SourceVpce": endpoints}
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "DenyOutsideAllowedSources",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": resources,
                "Condition": outside,
            },
            {
                "Sid": "DenyWithoutTLS",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": resources,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }
