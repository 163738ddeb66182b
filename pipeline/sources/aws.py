"""boto3 clients configured once for every AWS call the pipeline makes.

Arguments left as ``None`` fall back to the standard AWS chain: environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_DEFAULT_REGION`` ...), shared config files,
instance and container roles. boto3 is imported inside :func:`client` so that importing this
module costs nothing.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from typing import Any

# Enough pooled connections for parallel object loads plus a prefetching reader each.
MAX_POOL_CONNECTIONS = 32
# botocore's own retries of a whole call (throttling, 5xx, connection errors).
MAX_ATTEMPTS = 8
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60


def client(
    service: str,
    *,
    endpoint: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    retry_mode: str = "standard",
) -> Any:
    """Return a boto3 client for ``service`` ("s3", "kinesis", "kms" ...).

    ``retry_mode`` is botocore's: "standard" or "adaptive" (adds client-side rate limiting).
    """
    import boto3
    from botocore.config import Config

    if retry_mode not in ("standard", "adaptive"):
        raise ValueError(f"retry_mode must be 'standard' or 'adaptive', not {retry_mode!r}")
    options: dict[str, Any] = {
        "retries": {"mode": retry_mode, "max_attempts": MAX_ATTEMPTS},
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "max_pool_connections": MAX_POOL_CONNECTIONS,
        "tcp_keepalive": True,
    }
    if service == "s3" and _custom_endpoint(service, endpoint):
        # Stand-ins for S3 (moto, MinIO) serve buckets in the path, not as virtual hosts.
        options["s3"] = {"addressing_style": "path"}
    import botocore.session

    core = botocore.session.get_session()
    # Each new session would parse botocore's JSON service models again (0.06-0.2 s a client).
    core.register_component("data_loader", _shared_loader())
    if service == "kinesis":
        # Arrival times stay UTC: botocore's default converts each one to local time, per record.
        core.register_component("response_parser_factory", _utc_parser_factory())
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        region_name=region,
        botocore_session=core,
    )
    return session.client(service, endpoint_url=endpoint, config=Config(**options))


_lock = threading.Lock()
_loader: Any = None


def _shared_loader() -> Any:
    global _loader
    with _lock:
        if _loader is None:
            from botocore.loaders import create_loader

            _loader = create_loader()
        return _loader


def _utc_parser_factory() -> Any:
    from botocore.parsers import ResponseParserFactory

    factory = ResponseParserFactory()
    factory.set_parser_defaults(timestamp_parser=_utc_timestamp)
    return factory


def _utc_timestamp(value: Any) -> datetime:
    """Kinesis sends epoch seconds; anything else goes to botocore's own parser."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


def _custom_endpoint(service: str, endpoint: str | None) -> bool:
    service_variable = f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"
    return bool(endpoint or os.environ.get(service_variable) or os.environ.get("AWS_ENDPOINT_URL"))
