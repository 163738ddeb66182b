"""AWS clients (botocore's, as boto3 makes them) configured once for every AWS call the pipeline makes.

Arguments left as ``None`` fall back to the standard AWS chain: environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_DEFAULT_REGION`` ...), shared config files,
instance and container roles. botocore is imported inside :func:`client` so that importing this
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
    auth_method: str = "default",
    profile_name: str | None = None,
    profile_file: str | None = None,
    role_arn: str | None = None,
    external_id: str | None = None,
    duration_in_seconds: int = 3600,
    session_name: str = "embulk",
    path_style_access: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
) -> Any:
    """Return a boto3 client for ``service`` ("s3", "kinesis", "kms" ...).

    ``retry_mode`` is botocore's: "standard" or "adaptive" (adds client-side rate limiting).
    ``auth_method`` is Embulk's: where the credentials come from (see :func:`_credential_providers`).
    """
    from botocore import UNSIGNED
    from botocore.config import Config

    if retry_mode not in ("standard", "adaptive"):
        raise ValueError(f"retry_mode must be 'standard' or 'adaptive', not {retry_mode!r}")
    options: dict[str, Any] = {
        "retries": {"mode": retry_mode, "max_attempts": max_attempts},
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "max_pool_connections": MAX_POOL_CONNECTIONS,
        "tcp_keepalive": True,
    }
    if service == "s3" and (path_style_access or _custom_endpoint(service, endpoint)):
        # Stand-ins for S3 (moto, MinIO) serve buckets in the path, not as virtual hosts.
        options["s3"] = {"addressing_style": "path"}
    if auth_method == "anonymous":
        options["signature_version"] = UNSIGNED
    import botocore.session

    core = botocore.session.get_session()
    if profile_file:
        core.set_config_variable("credentials_file", profile_file)
    if auth_method in ("env", "instance", "assume_role"):
        from botocore.credentials import CredentialResolver

        core.register_component("credential_provider", CredentialResolver(_credential_providers(
            auth_method, region=region, endpoint=endpoint, role_arn=role_arn, external_id=external_id,
            duration_in_seconds=duration_in_seconds, session_name=session_name)))
    # Each new session would parse botocore's JSON service models again (0.06-0.2 s a client).
    core.register_component("data_loader", _shared_loader())
    if service == "kinesis":
        # Arrival times stay UTC: botocore's default converts each one to local time, per record.
        core.register_component("response_parser_factory", _utc_parser_factory())
    if auth_method == "profile" and profile_name:
        core.set_config_variable("profile", profile_name)
    # botocore's own client, as boto3 would make it: boto3 adds only the transfer helpers (upload_file ...),
    # which the engine does not use, and its import (s3transfer) is a tenth of `pipeline run`'s start-up.
    return core.create_client(service, region_name=region, endpoint_url=endpoint, aws_access_key_id=access_key_id,
                              aws_secret_access_key=secret_access_key, aws_session_token=session_token,
                              config=Config(**options))


def _credential_providers(auth_method: str, *, region: str | None, endpoint: str | None, role_arn: str | None,
                          external_id: str | None, duration_in_seconds: int, session_name: str) -> list[Any]:
    """The only places credentials may come from, for the auth_methods that name one.

    ``env``: the AWS_ variables alone. ``instance``: the EC2 instance profile alone. ``assume_role``:
    STS AssumeRole with the default chain's credentials, refreshed before they expire.
    """
    from botocore.credentials import (
        CredentialProvider,
        EnvProvider,
        InstanceMetadataFetcher,
        InstanceMetadataProvider,
        RefreshableCredentials,
    )

    if auth_method == "env":
        return [EnvProvider()]
    if auth_method == "instance":
        return [InstanceMetadataProvider(iam_role_fetcher=InstanceMetadataFetcher(timeout=2, num_attempts=2))]

    class AssumeRole(CredentialProvider):
        METHOD = "assume-role"

        def load(self) -> Any:
            return RefreshableCredentials.create_from_metadata(metadata=fetch(), refresh_using=fetch,
                                                               method=self.METHOD)

    def fetch() -> dict[str, str]:
        sts = client("sts", endpoint=_sts_endpoint(endpoint), region=region)
        request: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name,
                                   "DurationSeconds": duration_in_seconds}
        if external_id:
            request["ExternalId"] = external_id
        granted = sts.assume_role(**request)["Credentials"]
        return {"access_key": granted["AccessKeyId"], "secret_key": granted["SecretAccessKey"],
                "token": granted["SessionToken"], "expiry_time": granted["Expiration"].isoformat()}

    return [AssumeRole()]


def _sts_endpoint(endpoint: str | None) -> str | None:
    """A custom endpoint (moto, a VPC endpoint) serves STS too when it was given for the service."""
    return os.environ.get("AWS_ENDPOINT_URL_STS") or endpoint


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
