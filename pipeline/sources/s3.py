"""S3 as a source: list objects under a prefix, and read them as a stream of byte chunks.

Listing follows Embulk's S3 input: ``path_prefix``, ``last_path`` (here ``start_after``),
``path_match_pattern`` (``pattern``) and ``total_file_count_limit`` (``limit``). Reads never
hold a whole object in memory; a connection cut mid-body resumes with a ranged GET pinned to
the ETag that was listed, so the bytes delivered are exactly the object's bytes or an error.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pipeline.errors import SourceError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
# Consecutive failed attempts (without a byte of progress) before a read gives up.
READ_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 10.0

# Error codes worth another attempt after botocore's own retries gave up.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "KMS.ThrottlingException",
        "KMS.KeyUnavailableException",
        "KMS.DependencyTimeoutException",
    }
)

# What each KMS refusal means for the person who has to fix it.
_KMS_ADVICE = {
    "KMS.DisabledException": "the key is disabled; enable it (kms:EnableKey)",
    "KMS.NotFoundException": "the key does not exist in this account and region",
    "KMS.KMSInvalidStateException": (
        "the key is not usable (pending deletion or import); cancel the deletion and enable it"
    ),
    "KMS.InvalidKeyUsageException": "the key is not an ENCRYPT_DECRYPT key",
}
_KMS_ACCESS_ADVICE = "the reading credentials need kms:Decrypt on the key (key policy or IAM policy)"


@dataclass(frozen=True)
class S3Object:
    """One object version as listed or described; ``etag`` is without quotes."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime
    sse: str | None = None
    kms_key_id: str | None = None
    version_id: str | None = None
    storage_class: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def list_objects(
    client: Any,
    bucket: str,
    prefix: str,
    *,
    start_after: str | None = None,
    pattern: str | re.Pattern[str] | None = None,
    limit: int | None = None,
    page_size: int = 1000,
    accept: Callable[[S3Object], bool] | None = None,
) -> Iterator[S3Object]:
    """Yield the objects under ``prefix`` in lexical key order, one page at a time.

    ``start_after`` skips keys up to and including it (Embulk's ``last_path``); ``pattern`` is a
    regular expression searched in each key (``path_match_pattern``); ``limit`` caps how many
    matching objects are yielded (``total_file_count_limit``); ``accept`` may pass over (or refuse,
    raising) an object before it counts. Keys ending in "/" are folder markers and are skipped. The
    next page is requested only when the caller asks for more.
    """
    if limit is not None and limit <= 0:
        return
    from botocore.exceptions import BotoCoreError, ClientError

    matcher = re.compile(pattern) if isinstance(pattern, str) else pattern
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        request["StartAfter"] = start_after
    yielded = 0
    while True:
        # Without a pattern every listed key counts, so never ask for more than the limit needs.
        wanted = page_size if limit is None or matcher else min(page_size, limit - yielded)
        try:
            page = client.list_objects_v2(MaxKeys=wanted, **request)
        except (ClientError, BotoCoreError) as error:
            raise _listing_error(error, bucket, prefix) from error
        for entry in page.get("Contents", ()):
            key = entry["Key"]
            if key.endswith("/") or (matcher and not matcher.search(key)):
                continue
            found = S3Object(
                bucket=bucket,
                key=key,
                size=entry["Size"],
                etag=entry.get("ETag", "").strip('"'),
                last_modified=entry["LastModified"],
                storage_class=entry.get("StorageClass"),
            )
            if accept is not None and not accept(found):
                continue
            yield found
            yielded += 1
            if limit is not None and yielded >= limit:
                return
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        request["ContinuationToken"] = token
        request.pop("StartAfter", None)


# Objects GetObject cannot read until they are restored.
ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


def acceptor(source: Any, warn: Callable[[str], None]) -> Callable[[S3Object], bool]:
    """Embulk's rules for a listed object of ``source`` (an S3InputConfig): path, last_path, use_modified_time,
    zero-size objects (passed over) and skip_glacier_objects."""

    def accept(obj: S3Object) -> bool:
        if obj.size == 0 or not source.wanted(obj.key, obj.last_modified):
            return False
        if obj.storage_class in ARCHIVED_CLASSES:
            if not source.skip_glacier_objects:
                raise SourceError(f"{obj.uri} is stored in {obj.storage_class} and cannot be read until it is "
                                  "restored; restore it, or set in.skip_glacier_objects: true to pass over such "
                                  "objects, as in Embulk")
            warn(f"{obj.uri}: stored in {obj.storage_class}, passed over (in.skip_glacier_objects)")
            return False
        return True

    return accept


def start_after(source: Any, cursor: str | None) -> str | None:
    """Where a listing of ``source`` starts: after the cursor, and never at or before last_path."""
    bounds = [key for key in (cursor, source.last_path) if key]
    return max(bounds) if bounds else None


def describe(client: Any, obj: S3Object) -> S3Object:
    """Return ``obj`` completed with HeadObject's view: size, ETag, encryption and version."""
    from botocore.exceptions import BotoCoreError, ClientError

    request: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version_id:
        request["VersionId"] = obj.version_id
    try:
        head = client.head_object(**request)
    except (ClientError, BotoCoreError) as error:
        raise _object_error(error, obj, "describing") from error
    return replace(
        obj,
        size=head["ContentLength"],
        etag=head.get("ETag", "").strip('"'),
        last_modified=head.get("LastModified", obj.last_modified),
        sse=head.get("ServerSideEncryption"),
        kms_key_id=head.get("SSEKMSKeyId"),
        version_id=head.get("VersionId", obj.version_id),
    )


def read_object(
    client: Any, obj: S3Object, *, chunk_size: int | None = None, attempts: int = READ_ATTEMPTS
) -> Iterator[bytes]:
    """Yield the bytes of ``obj`` in chunks of at most ``chunk_size``.

    A cut connection, a timeout, a 5xx or SlowDown resumes from the exact offset reached, with
    capped exponential backoff; ``attempts`` bounds the consecutive failures without progress.
    Every GET carries ``If-Match`` with the object's ETag, so a changed object is an error and
    never a mix of two versions.
    """
    yield from _RangeReader(client, obj, attempts).chunks(0, None, chunk_size or CHUNK_SIZE)


def read_sample(client: Any, obj: S3Object, nbytes: int) -> tuple[bytes, bool]:
    """Return the first ``nbytes`` of ``obj`` and whether that is the whole object."""
    if nbytes <= 0:
        raise ValueError("nbytes must be positive")
    reader = _RangeReader(client, obj, READ_ATTEMPTS)
    data = b"".join(reader.chunks(0, nbytes, CHUNK_SIZE))
    return data, reader.total is not None and len(data) >= reader.total


def _mid_body_errors() -> tuple[type[BaseException], ...]:
    from botocore import exceptions as botocore_errors
    from urllib3 import exceptions as urllib3_errors

    return (
        botocore_errors.ResponseStreamingError,
        botocore_errors.IncompleteReadError,
        botocore_errors.HTTPClientError,
        botocore_errors.ConnectionError,
        urllib3_errors.HTTPError,
        ConnectionError,
        TimeoutError,
    )


class _RangeReader:
    """Reads one object version, resuming after failures; learns the ETag and size as it goes."""

    def __init__(self, client: Any, obj: S3Object, attempts: int):
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.client = client
        self.obj = obj
        self.attempts = attempts
        self.etag = obj.etag or None
        self.total: int | None = None

    def chunks(self, start: int, stop: int | None, chunk_size: int) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        cut_errors = _mid_body_errors()
        offset = start
        failures = 0
        while not self._done(offset, stop):
            try:
                response = self._get(offset, stop)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "InvalidRange" and offset == 0:
                    self.total = 0  # only an empty object has no byte 0
                    return
                if not _transient(error):
                    raise self._refusal(error, offset) from error
                failures = self._back_off(failures, error, offset)
                continue
            except cut_errors as error:
                failures = self._back_off(failures, error, offset)
                continue
            except BotoCoreError as error:
                raise _object_error(error, self.obj, "reading") from error
            body = response["Body"]
            cut: BaseException | None = None
            try:
                while True:
                    try:
                        chunk = body.read(chunk_size)
                    except cut_errors as error:
                        cut = error
                        break
                    except BotoCoreError as error:
                        raise _object_error(error, self.obj, "reading") from error
                    if not chunk:
                        return
                    offset += len(chunk)
                    failures = 0
                    yield chunk
            finally:
                body.close()
            failures = self._back_off(failures, cut, offset)

    def _done(self, offset: int, stop: int | None) -> bool:
        return (stop is not None and offset >= stop) or (self.total is not None and offset >= self.total)

    def _get(self, offset: int, stop: int | None) -> dict[str, Any]:
        request: dict[str, Any] = {"Bucket": self.obj.bucket, "Key": self.obj.key}
        if self.etag:
            request["IfMatch"] = f'"{self.etag}"'
        if self.obj.version_id:
            request["VersionId"] = self.obj.version_id
        ranged = offset > 0 or stop is not None
        if ranged:
            request["Range"] = f"bytes={offset}-{'' if stop is None else stop - 1}"
        response = self.client.get_object(**request)
        if self.etag is None:
            self.etag = response.get("ETag", "").strip('"') or None
        content_range = response.get("ContentRange")
        if content_range:
            self.total = int(content_range.rpartition("/")[2])
        elif ranged and offset > 0:
            response["Body"].close()
            raise SourceError(f"{self.obj.uri}: the server ignored the byte range of a resumed read")
        else:
            self.total = response["ContentLength"]
        return response

    def _back_off(self, failures: int, error: BaseException, offset: int) -> int:
        failures += 1
        if failures >= self.attempts:
            raise SourceError(
                f"reading {self.obj.uri} failed {failures} times in a row at byte {offset}: {error}"
            ) from error
        delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (failures - 1))
        delay = delay / 2 + random.uniform(0, delay / 2)
        log.info("%s: %s at byte %d; resuming in %.2f s", self.obj.uri, error, offset, delay)
        time.sleep(delay)
        return failures

    def _refusal(self, error: Any, offset: int) -> SourceError:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if code == "PreconditionFailed":
            when = "while being read" if offset else "since it was listed"
            return SourceError(
                f"{self.obj.uri} changed {when} (ETag {self.etag} is no longer current); "
                "the new version has to be read from the start"
            )
        if _kms_refusal(code, message):
            return SourceError(
                f"cannot decrypt {self.obj.uri} with KMS key {self._kms_key_id()}: "
                f"{_KMS_ADVICE.get(code, _KMS_ACCESS_ADVICE)} ({code}: {message})"
            )
        return _object_error(error, self.obj, "reading")

    def _kms_key_id(self) -> str:
        if self.obj.kms_key_id:
            return self.obj.kms_key_id
        try:
            # HeadObject needs no kms:Decrypt, so it still names the key GetObject could not use.
            return describe(self.client, self.obj).kms_key_id or "(key id not reported by S3)"
        except SourceError:
            return "(key id unknown: HeadObject failed too)"


def _transient(error: Any) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in _TRANSIENT_CODES or status >= 500


def _kms_refusal(code: str, message: str) -> bool:
    return code.startswith("KMS.") or (code == "AccessDenied" and "kms" in message.lower())


def _error_code(error: BaseException) -> tuple[str, str]:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return "", str(error)
    details = response.get("Error", {})
    return str(details.get("Code", "")), str(details.get("Message", "") or error)


def _listing_error(error: BaseException, bucket: str, prefix: str) -> SourceError:
    code, message = _error_code(error)
    where = f"s3://{bucket}/{prefix}"
    if code == "NoSuchBucket":
        return SourceError(f"S3 bucket {bucket!r} does not exist (listing {where})")
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return SourceError(
            f"access denied listing {where}: the credentials need s3:ListBucket on "
            f"arn:aws:s3:::{bucket} ({message})"
        )
    return SourceError(f"listing {where} failed: {_describe_failure(error, code, message)}")


def _object_error(error: BaseException, obj: S3Object, doing: str) -> SourceError:
    code, message = _error_code(error)
    if code in ("NoSuchKey", "404", "NoSuchVersion"):
        return SourceError(f"{obj.uri} no longer exists: it was deleted after it was listed")
    if code == "NoSuchBucket":
        return SourceError(f"S3 bucket {obj.bucket!r} does not exist ({doing} {obj.uri})")
    if code in ("AccessDenied", "403"):
        return SourceError(f"access denied {doing} {obj.uri}: the credentials need s3:GetObject ({message})")
    if code == "InvalidObjectState":
        return SourceError(f"{obj.uri} is archived ({message}); restore it before loading it")
    return SourceError(f"{doing} {obj.uri} failed: {_describe_failure(error, code, message)}")


def _describe_failure(error: BaseException, code: str, message: str) -> str:
    return f"{code}: {message}" if code else f"{type(error).__name__}: {error}"


def missing(error: SourceError) -> bool:
    """Whether ``error`` (from :func:`describe`) says the object does not exist (deleted since it was named)."""
    code = (getattr(error.__cause__, "response", None) or {}).get("Error", {}).get("Code")
    return code in ("404", "NoSuchKey", "NotFound")


class S3Blob:
    """One object version as a reader sees it (:class:`pipeline.records.Blob`); ``counted(n)`` hears of every
    ``n`` bytes read from S3, for progress."""

    def __init__(self, client: Any, obj: S3Object, counted: Callable[[int], None] | None = None, *,
                 chunk_size: int | None = None, limit: int | None = None):
        self.client = client
        self.obj = obj
        self.counted = counted
        self.chunk_size = chunk_size
        self.limit = limit  # chunks() stops after about this many bytes (a preview's sample)
        self.cut = False  # chunks() stopped at the limit

    @property
    def uri(self) -> str:
        return self.obj.uri

    @property
    def size(self) -> int:
        return self.obj.size

    def _raw(self) -> Iterator[bytes]:
        read = 0
        for chunk in read_object(self.client, self.obj, chunk_size=self.chunk_size):
            if self.counted is not None:
                self.counted(len(chunk))
            yield chunk
            read += len(chunk)
            if self.limit is not None and read >= self.limit:
                self.cut = True
                return

    def chunks(self) -> Iterator[bytes]:
        from pipeline.formats.decode import decompress
        from pipeline.sources.prefetch import prefetch

        try:
            yield from decompress(prefetch(self._raw()))
        except ValueError as error:
            raise SourceError(f"{self.uri}: cannot decompress: {error}") from None

    def read(self, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""
        data = b"".join(_RangeReader(self.client, self.obj, READ_ATTEMPTS).chunks(start, stop, CHUNK_SIZE))
        if self.counted is not None:
            self.counted(len(data))
        return data


class S3Store:
    """An S3 input's objects (:class:`pipeline.records.ObjectStore`); ``client()`` gives the S3 client."""

    in_s3 = True

    def __init__(self, source: Any, client: Callable[[], Any]):
        self.source = source
        self.client = client

    def listed(self, warn: Callable[[str], None]) -> list[S3Object]:
        source = self.source
        return list(list_objects(self.client(), source.bucket, source.path_prefix,
                                 start_after=start_after(source, None), pattern=source.path_match_pattern,
                                 limit=source.total_file_count_limit, accept=acceptor(source, warn)))

    def named(self, key: str) -> S3Object:
        from datetime import UTC

        source = self.source
        pattern = source.path_match_pattern
        if not key.startswith(source.path_prefix) or (pattern and not re.search(pattern, key)) or (
                source.path is not None and key != source.path):
            raise SourceError(f"s3://{source.bucket}/{key} is not under {source.uri} "
                              "or does not match in.path_match_pattern")
        return describe(self.client(), S3Object(source.bucket, key, 0, "", datetime.fromtimestamp(0, UTC)))

    def first(self) -> S3Object | None:
        source = self.source
        return next(list_objects(self.client(), source.bucket, source.path_prefix,
                                 start_after=start_after(source, None), pattern=source.path_match_pattern,
                                 limit=1, accept=acceptor(source, lambda message: None)), None)

    def blob(self, obj: S3Object, counted: Callable[[int], None] | None = None, *,
             limit: int | None = None) -> S3Blob:
        return S3Blob(self.client(), obj, counted, limit=limit)


def store(source: Any, client: Callable[[], Any]) -> S3Store:
    return S3Store(source, client)
