"""Dagster resources: AWS clients and warehouse connections, configured from the environment.

Every secret reaches Dagster as a ``dg.EnvVar``, so the UI shows the variable's name and never its
value. Left unset, AWS settings fall back to the standard AWS chain (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, instance and container roles ...), as the engine does.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import dagster as dg
import psycopg
from pydantic import Field

from pipeline.config import AwsSettings, OutputConfig


class AwsResource(dg.ConfigurableResource):
    """Where and as whom to call AWS; a pipeline config's own ``in`` settings take precedence."""

    endpoint: str | None = Field(default=None, description="Endpoint URL (moto, MinIO); unset: the AWS chain.")
    region: str | None = Field(default=None, description="AWS region; unset: the AWS chain.")
    access_key_id: str | None = Field(default=None, description="Set with dg.EnvVar; unset: the AWS chain.")
    secret_access_key: str | None = Field(default=None, description="Set with dg.EnvVar; unset: the AWS chain.")
    session_token: str | None = Field(default=None, description="Set with dg.EnvVar; unset: the AWS chain.")

    def settings(self, pipeline: AwsSettings | None = None) -> AwsSettings:
        """This resource's settings, overridden by what a pipeline config says explicitly."""
        mine = AwsSettings(
            endpoint=self.endpoint,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            session_token=self.session_token,
        )
        if pipeline is None:
            return mine
        if pipeline.access_key_id is not None:
            # Keys come as a set: never mix a config's key id with the resource's secret.
            mine = dataclasses.replace(mine, access_key_id=pipeline.access_key_id,
                                       secret_access_key=pipeline.secret_access_key,
                                       session_token=pipeline.session_token)
        return dataclasses.replace(mine, endpoint=pipeline.endpoint or mine.endpoint,
                                   region=pipeline.region or mine.region)

    def _client(self, service: str, pipeline: AwsSettings | None) -> Any:
        aws_environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        return _cached_client(service, self.settings(pipeline), aws_environment)


@functools.lru_cache(maxsize=32)
def _cached_client(service: str, settings: AwsSettings, aws_environment: tuple[tuple[str, str], ...]) -> Any:
    """One boto3 client per service, settings and AWS environment: creating one costs 0.3 to 0.8 s.

    boto3 clients are thread-safe, and the default chain refreshes role credentials by itself, so a
    sensor that ticks every 30 s in the code server reuses its client instead of paying that each tick.
    """
    from pipeline.sources import aws

    return aws.client(service, **settings.client_kwargs())


class S3Resource(AwsResource):
    """S3, for listing objects (sensors) and reading them (loads), and the SQS queue a bucket notifies."""

    def client(self, pipeline: AwsSettings | None = None) -> Any:
        return self._client("s3", pipeline)

    def sqs(self, pipeline: AwsSettings | None = None) -> Any:
        """SQS, for ``in.notifications.queue`` (the sensor drains it)."""
        return self._client("sqs", pipeline)


class KinesisResource(AwsResource):
    """Kinesis Data Streams, for looking past the checkpoints (sensors) and reading records (loads)."""

    def client(self, pipeline: AwsSettings | None = None) -> Any:
        return self._client("kinesis", pipeline)


class KmsResource(AwsResource):
    """KMS, to report the state of the key an SSE-KMS object is encrypted with."""

    def client(self, pipeline: AwsSettings | None = None) -> Any:
        return self._client("kms", pipeline)

    def key_state(self, key_id: str, pipeline: AwsSettings | None = None) -> str:
        """``Enabled``, ``Disabled``, ``PendingDeletion`` ...; a refusal is reported, not raised."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            metadata = self.client(pipeline).describe_key(KeyId=key_id)["KeyMetadata"]
        except ClientError as error:
            return f"unknown ({error.response.get('Error', {}).get('Code', 'error')})"
        except BotoCoreError as error:
            return f"unknown ({type(error).__name__})"
        return str(metadata.get("KeyState", "unknown"))


class WarehouseResource(dg.ConfigurableResource):
    """A PostgreSQL-protocol warehouse (Hologres, Redshift, PostgreSQL).

    ``conninfo`` is set with ``dg.EnvVar`` (the variable the config's ``out.url`` names), so the
    UI and run config show the variable's name only. Unset, the config's own ``out`` is used.
    """

    conninfo: str | None = Field(
        default=None, description="libpq URL or key=value string; set with dg.EnvVar, never as a literal."
    )

    def connect(self, output: OutputConfig) -> psycopg.Connection:
        """An autocommit connection for checks and sensors; loads open their own through the engine.

        ``output`` is the resolved ``out`` of a config, which took its conninfo from this resource.
        """
        from pipeline.warehouse.connection import connect

        return connect(output.conninfo, dialect=output.type, autocommit=True)
