"""Rows staged to S3 for targets without COPY FROM STDIN (Redshift), and their cleanup.

A staged file is gzip CSV of COPY text lines: every value quoted, NULL an unquoted ``\\N``. Staged keys
end in ``.csv.gz`` after a fixed-width name, so no staged key is a prefix of another (Redshift's
COPY FROM reads a key prefix).
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Sequence

from pipeline.config import S3StagingConfig
from pipeline.errors import SourceError
from pipeline.warehouse.copy import text_values
from pipeline.warehouse.dialects.base import CopyFormat

log = logging.getLogger(__name__)

STAGED_FORMAT = CopyFormat(csv=True, delimiter=",", quote='"', null_as="\\N", compression="GZIP")


def staged_csv(lines: Sequence[str]) -> bytes:
    """COPY text lines as gzip CSV: every value quoted, NULL as an unquoted \\N."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=5) as out:
        for line in lines:
            out.write((",".join(_csv_field(v) for v in text_values(line)) + "\n").encode("utf-8"))
    return buffer.getvalue()


def _csv_field(value: str | None) -> str:
    return "\\N" if value is None else '"' + value.replace('"', '""') + '"'


def put(s3, staging: S3StagingConfig, key: str, body: bytes) -> str:
    """Upload ``body`` under the staging prefix (SSE-KMS when configured); its s3:// URI."""
    extra = {}
    if staging.sse_kms_key_id:
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": staging.sse_kms_key_id}
    full = f"{staging.prefix}{key}"
    try:
        s3.put_object(Bucket=staging.bucket, Key=full, Body=body, **extra)
    except Exception as error:  # botocore ClientError and connection errors alike
        raise SourceError(f"cannot stage to s3://{staging.bucket}/{full}: {error}") from None
    return f"s3://{staging.bucket}/{full}"


def delete(s3, uris: Sequence[str]) -> None:
    """Remove staged files after their transaction ended; a failure only costs storage, so it is logged."""
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            try:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
            except Exception as error:  # botocore ClientError and connection errors alike
                log.warning("could not delete %d staged files in s3://%s (%s); they hold nothing the target needs",
                            len(chunk), bucket, error)
