"""The config of each built-in input (``in``): where it reads, as whom, and what its records hold.

:mod:`pipeline.config` reads the sections into these (and re-exports them); :mod:`pipeline.registry`
names the kind of each ``in.type``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.schema import Column


@dataclass(frozen=True)
class AwsSettings:
    """Where and as whom to call AWS; ``None`` means the standard AWS chain decides."""

    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    allow_insecure: bool = False
    # Embulk's auth_method: basic, env, instance, profile, anonymous, session, assume_role or default (the chain).
    auth_method: str = "default"
    profile_name: str | None = None
    profile_file: str | None = None
    # assume_role: the role, and how the session is named and how long it lasts.
    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    duration_in_seconds: int = 3600
    session_name: str = "embulk"
    path_style_access: bool = False
    # Embulk's maximum_retries: attempts after the first of each AWS call (7, as Embulk's default).
    maximum_retries: int = 7

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "region": self.region,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "session_token": self.session_token,
            "auth_method": self.auth_method,
            "profile_name": self.profile_name,
            "profile_file": self.profile_file,
            "role_arn": self.role_arn,
            "external_id": self.external_id,
            "duration_in_seconds": self.duration_in_seconds,
            "session_name": self.session_name,
            "path_style_access": self.path_style_access,
            "max_attempts": self.maximum_retries + 1,
        }


@dataclass(frozen=True)
class JsonParserConfig:
    columns: tuple[Column, ...] = ()
    stop_on_invalid_record: bool = False
    max_record_bytes: int = 1 << 20
    type: str = "json"


@dataclass(frozen=True)
class NotificationsConfig:
    """The SQS queue an S3 input's bucket sends its s3:ObjectCreated:* events to (pipeline.follow)."""

    queue: str  # name or URL
    sweep_interval: float = 300.0  # seconds between listing sweeps, for notifications that were lost


@dataclass(frozen=True)
class S3InputConfig:
    bucket: str
    path_prefix: str
    aws: AwsSettings
    path_match_pattern: str | None = None
    total_file_count_limit: int | None = None
    parser: Any = None  # the in.parser of its type (pipeline.registry), or None before guess
    # Embulk's incremental: false re-reads everything; here it makes the sensor also sweep for changed objects.
    incremental: bool = True
    type: str = "s3"
    path: str | None = None  # one object (Embulk's path); path_prefix is then the same key
    last_path: str | None = None  # keys up to this one (inclusive) are never listed, as with Embulk's last_path
    last_modified_time: datetime | None = None  # use_modified_time: objects modified before this are not listed
    skip_glacier_objects: bool = False  # else an object in Glacier stops the listing, as in Embulk
    notifications: NotificationsConfig | None = None  # event-driven loads (not an Embulk key)

    def wanted(self, key: str, last_modified: datetime) -> bool:
        """Whether a listed object is one of this input's, before path_match_pattern."""
        if self.path is not None and key != self.path:
            return False
        if self.last_path is not None and key <= self.last_path:
            return False
        return self.last_modified_time is None or last_modified >= self.last_modified_time

    def covers(self, key: str) -> bool:
        """Whether an announced key (a notification's) is one this input would list and match."""
        return (key.startswith(self.path_prefix) and (self.path is None or key == self.path)
                and (self.last_path is None or key > self.last_path)
                and (self.path_match_pattern is None or re.search(self.path_match_pattern, key) is not None))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.path_prefix}"

    def object_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class KinesisInputConfig:
    stream: str
    aws: AwsSettings
    starting_position: str = "trim_horizon"
    timestamp: str | None = None
    parser: JsonParserConfig = field(default_factory=JsonParserConfig)
    type: str = "kinesis"
    # Records that expired before they were read: stop the run (fail) or say so and go on (warn).
    on_data_loss: str = "fail"
    # The stream was deleted and created again under its name: stop (fail) or read the new one from its start.
    on_stream_recreated: str = "fail"
