"""``pipeline policy iam CONFIG`` and ``pipeline policy bucket BUCKET``: AWS policies as JSON.

``iam`` prints the least-privilege IAM policy for the credentials a pipeline runs with: list and
read its S3 prefix (or read its Kinesis stream), decrypt with the source's KMS key, write the
Redshift staging prefix. ``bucket`` prints the bucket policy of the Embulk-to-Hologres tutorial:
requests only from the listed source addresses (or VPC endpoints), and only over TLS.

For event-driven loads (``in.notifications``), ``queue CONFIG`` prints the SQS queue's access policy
(``aws sqs set-queue-attributes --attributes Policy=...``) and ``notification CONFIG`` the bucket's
notification configuration (``aws s3api put-bucket-notification-configuration``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="policy", metavar="KIND", required=True)
    iam = sub.add_parser("iam", help="least-privilege IAM policy for running a pipeline config",
                         description="Print the least-privilege IAM policy (JSON) for running CONFIG.")
    iam.add_argument("config", help="pipeline config (YAML)")
    iam.add_argument("--kms-key", metavar="ARN",
                     help="KMS key the source is encrypted with (SSE-KMS objects or an encrypted stream)")
    iam.add_argument("--account", help="AWS account id for ARNs (default: $AWS_ACCOUNT_ID, else '*')")
    iam.add_argument("--region", help="AWS region for ARNs (default: in.region, $AWS_REGION, "
                                      "$AWS_DEFAULT_REGION, else '*')")
    for kind, about in (("queue", "SQS queue policy: the bucket may send its object-created events"),
                        ("notification", "bucket notification configuration: object-created events to the queue")):
        events = sub.add_parser(kind, help=about, description=f"Print the {about} (JSON), for in.notifications.")
        events.add_argument("config", help="pipeline config (YAML) with in.notifications.queue")
        events.add_argument("--account", help="AWS account id of the queue (default: from the queue's URL, "
                                               "else $AWS_ACCOUNT_ID)")
        events.add_argument("--region", help="AWS region of the queue (default: from the queue's URL, else "
                                             "in.region, $AWS_REGION, $AWS_DEFAULT_REGION)")
    bucket = sub.add_parser("bucket", help="bucket policy: allow-listed source addresses, TLS only",
                            description="Print the S3 bucket policy (JSON) that denies requests from outside "
                                        "the listed addresses and requests without TLS.")
    bucket.add_argument("bucket", help="bucket name")
    bucket.add_argument("--allow-ip", action="append", dest="allow_ips", required=True, metavar="CIDR",
                        type=_cidr, help="source address or CIDR allowed to use the bucket (repeatable)")
    bucket.add_argument("--vpce", action="append", dest="vpc_endpoints", default=[], metavar="ID",
                        help="VPC endpoint id (vpce-...) whose requests are also allowed (repeatable)")


def run(args: argparse.Namespace) -> int:
    from pipeline import security

    if args.policy == "iam":
        from pipeline import config as config_module

        # Only the structure matters here: an unset secret must not stop a policy from being written.
        environ, unset = _environ_for_structure(args.config)
        config = config_module.load(args.config, environ=environ)
        region = args.region or config.input.aws.region or os.environ.get("AWS_REGION") \
            or os.environ.get("AWS_DEFAULT_REGION") or "*"
        account = args.account or os.environ.get("AWS_ACCOUNT_ID") or "*"
        document = security.iam_policy(config, account=account, region=region, kms_key=args.kms_key)
        text = json.dumps(document)
        needed = [name for name in unset if _PLACEHOLDER.format(name=name) in text]
        if needed:
            raise config_module.ConfigError("", f"the policy depends on {', '.join(needed)}: set it and run again")
    elif args.policy in ("queue", "notification"):
        document = _notifications(args)
    else:
        document = security.bucket_policy(args.bucket, args.allow_ips, args.vpc_endpoints)
    print(json.dumps(document, indent=2))
    return 0


def _notifications(args: argparse.Namespace) -> dict:
    from pipeline import config as config_module
    from pipeline import registry
    from pipeline.sources import sqs

    environ, _ = _environ_for_structure(args.config)
    config = config_module.load(args.config, environ=environ)
    source = config.input
    if not registry.in_s3(source) or source.notifications is None:
        raise config_module.ConfigError("in.notifications", "is not set: name the SQS queue the bucket notifies, "
                                                            "as {queue: NAME} (see the README)")
    region = args.region or source.aws.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    try:
        arn = sqs.queue_arn(source.notifications.queue, region=region,
                            account=args.account or os.environ.get("AWS_ACCOUNT_ID"))
    except ValueError as error:
        raise config_module.ConfigError("in.notifications.queue", str(error)) from None
    if args.policy == "queue":
        return sqs.queue_policy(arn, source.bucket)
    return sqs.notification_configuration(arn, source.path_prefix)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address or CIDR block") from None


_PLACEHOLDER = "postgresql://unset.invalid/{name}"


def _environ_for_structure(path: str) -> tuple[dict[str, str], list[str]]:
    """The environment with a stand-in for each variable the config needs that is unset, and their names.

    A policy never needs the warehouse's secret, so ``pipeline policy`` works without it.
    """
    import re
    from pathlib import Path

    environ = dict(os.environ)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return environ, []  # load() reports the missing file
    unset = []
    # Only variables without a default: a default must still apply.
    without_default = r"\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\$\{([A-Za-z_][A-Za-z0-9_]*)\}"
    for liquid, shell in re.findall(without_default, text):
        name = liquid or shell
        if name not in environ:
            # A .invalid host never resolves (RFC 6761), so the stand-in passes the transport checks.
            environ[name] = _PLACEHOLDER.format(name=name)
            unset.append(name)
    return environ, unset
