"""Security rules shared by config validation and ``pipeline policy``.

Transport: data and credentials leave the machine only over TLS. An AWS endpoint that is not on
the loopback interface must be ``https://``; a warehouse that is not on the loopback interface
(or a Unix socket) needs ``sslmode`` of at least ``require``. Anything weaker is refused at config
validation unless the config says ``allow_insecure: true`` for that side.

Policies: the least-privilege IAM policy a pipeline needs, and the S3 bucket policy of the
Embulk-to-Hologres tutorial (allow-listed source addresses, TLS only), as plain dicts.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.config import KinesisInputConfig, PipelineConfig, S3InputConfig
from pipeline.errors import ConfigError

# sslmode values that encrypt the connection whatever the server prefers.
STRONG_SSLMODES = ("require", "verify-ca", "verify-full")
# libpq's default when neither the conninfo nor PGSSLMODE says: falls back to plaintext.
LIBPQ_DEFAULT_SSLMODE = "prefer"
# Names that can never resolve (RFC 6761), so nothing can be sent to them: the Dagster layer's
# placeholders for unset variables live here.
_UNREACHABLE_SUFFIX = ".invalid"
_HOSTNAME = re.compile(r"[A-Za-z0-9.:-]+")

POLICY_VERSION = "2012-10-17"


# --------------------------------------------------------------------------- transport


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; a Unix socket directory also stays on the machine."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost" or host.startswith("/") or host.startswith("@"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _unreachable(host: str) -> bool:
    return host.strip().rstrip(".").lower().endswith(_UNREACHABLE_SUFFIX)


def redact_url(url: str) -> str:
    """``url`` without any user or password in it, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def aws_endpoint_variables(config: PipelineConfig) -> tuple[str, ...]:
    """The ``AWS_ENDPOINT_URL_<SERVICE>`` variables boto3 reads for the services this pipeline calls."""
    services = ["S3", "KMS"] if isinstance(config.input, S3InputConfig) else ["KINESIS"]
    if config.output.s3_staging is not None:
        services += [s for s in ("S3", "KMS") if s not in services]
    return tuple(f"AWS_ENDPOINT_URL_{service}" for service in services)


def check_transport(config: PipelineConfig, environ: Mapping[str, str], out_keys: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` when AWS or the warehouse would be reached without TLS.

    ``environ`` is the environment the pipeline will run with (``AWS_ENDPOINT_URL``, ``PGSSLMODE``
    ...); ``out_keys`` are the keys written under ``out``, so the error names the one to change.
    """
    _check_aws(config, environ)
    _check_warehouse(config, environ, set(out_keys))


def _check_aws(config: PipelineConfig, environ: Mapping[str, str]) -> None:
    aws = config.input.aws
    if aws.allow_insecure:
        return
    if aws.endpoint:
        candidates = [(aws.endpoint, "in.endpoint", "in.endpoint")]
    else:
        # boto3 prefers the service's own variable, then the general one: check every one it may use.
        names = [*aws_endpoint_variables(config), "AWS_ENDPOINT_URL"]
        candidates = [(environ[name], f"in.endpoint (unset, so {name} is used)", name)
                      for name in names if environ.get(name)]
    for url, path, where in candidates:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https" or is_loopback(host) or _unreachable(host):
            continue
        raise ConfigError(
            path,
            f"{redact_url(url)} is not https and {host or 'its host'} is not a loopback address: "
            f"AWS credentials and data would cross the network in the clear. Use an https:// endpoint in "
            f"{where}, or set in.allow_insecure: true if this network is trusted.",
        )


def _check_warehouse(config: PipelineConfig, environ: Mapping[str, str], out_keys: set[str]) -> None:
    from psycopg.conninfo import conninfo_to_dict

    output = config.output
    if output.allow_insecure:
        return
    params = conninfo_to_dict(output.conninfo)
    # libpq falls back to PGHOST / PGHOSTADDR / PGSSLMODE, and to a local Unix socket with no host at all.
    hosts = [h for value in (params.get("host") or environ.get("PGHOST") or "",
                             params.get("hostaddr") or environ.get("PGHOSTADDR") or "")
             for h in str(value).split(",") if h.strip()]
    remote = [h for h in hosts if not is_loopback(h) and not _unreachable(h)]
    if not remote:
        return
    sslmode = str(params.get("sslmode") or environ.get("PGSSLMODE") or LIBPQ_DEFAULT_SSLMODE)
    if sslmode in STRONG_SSLMODES:
        return
    if "sslmode" in out_keys:
        path, fix = "out.sslmode", "set out.sslmode: require (or verify-full)"
    elif "url" in out_keys:
        path, fix = "out.url", "add ?sslmode=require (or verify-full) to out.url, or set out.sslmode: require"
    else:
        path, fix = "out.sslmode", "set out.sslmode: require (or verify-full)"
    # A password with an unencoded @ or / shifts into the host: name the host only when it looks like one.
    host = remote[0] if _HOSTNAME.fullmatch(remote[0]) else "a host that is not on this machine"
    said = f"sslmode={sslmode}" if params.get("sslmode") or environ.get("PGSSLMODE") else "no sslmode"
    raise ConfigError(
        path,
        f"{said} lets the connection to {host} fall back to plaintext, with the password and data in the "
        f"clear: {fix}, or set out.allow_insecure: true if this network is trusted.",
    )


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
    if isinstance(source, S3InputConfig):
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
    elif isinstance(source, KinesisInputConfig):
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
