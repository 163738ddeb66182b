"""``in: {type: file}``: files on local disk, Embulk's built-in local file input.

::

    in:
      type: file
      path_prefix: ./data/book_order_   # every regular file whose path starts with this, in the directory
      last_path: ./data/book_order_03.csv   # optional: files up to this path are not listed
      follow_symlinks: false             # true: symbolic links to files and directories are followed
      parser: {type: csv, ...}           # any parser: csv, jsonl, parquet

Files are listed under the prefix's directory, its subdirectories included, in path order; empty
files are passed over, as empty S3 objects are. A file's version is its size and modification time
(nanoseconds): the ledger loads each version once, and a file rewritten in place, even with the
same bytes, is a new version. A file that changes while it is read fails its load, naming it, as an
S3 object that changes does; nothing of it commits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, SourceError
from pipeline.formats.decode import check_decoders

TYPE = "file"
CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class FileInputConfig:
    path_prefix: str  # absolute
    parser: Any = None
    last_path: str | None = None  # absolute
    follow_symlinks: bool = False
    aws: Any = None  # AwsSettings of the standard chain: a file input reaches AWS only for Redshift's S3 staging
    type: str = TYPE
    path_match_pattern: str | None = field(default=None, init=False)  # not a key of Embulk's file input

    @property
    def uri(self) -> str:
        return f"file://{self.path_prefix}"

    def object_uri(self, key: str) -> str:
        return f"file://{key}"


def configure(section: Any, require_parser: bool, *, parser: Callable[[Any, bool], Any], aws: Any
              ) -> FileInputConfig:
    prefix = section.string("path_prefix", required=True)
    if not prefix:
        raise ConfigError(section.at("path_prefix"), "must name a directory or a path prefix, as in Embulk")
    last_path = section.string("last_path")
    check_decoders(section)
    config = FileInputConfig(
        path_prefix=_absolute(prefix),
        parser=parser(section, require_parser),
        last_path=None if last_path is None else _absolute(last_path),
        follow_symlinks=section.boolean("follow_symlinks", False),
        aws=aws,
    )
    section.done()
    return config


def _absolute(path: str) -> str:
    """``path`` made absolute against the working directory, keeping a trailing separator (a directory)."""
    absolute = os.path.abspath(os.path.expanduser(path))
    return absolute + os.sep if path.endswith(os.sep) and not absolute.endswith(os.sep) else absolute


@dataclass(frozen=True)
class FileObject:
    key: str  # the absolute path
    size: int
    mtime_ns: int

    @property
    def etag(self) -> str:
        return f"{self.size:x}-{self.mtime_ns:x}"

    @property
    def uri(self) -> str:
        return f"file://{self.key}"


class FileBlob:
    """One file version for a reader; a file whose size or modification time moved while it was read fails."""

    def __init__(self, obj: FileObject, counted: Callable[[int], None] | None = None, *, limit: int | None = None):
        self.obj = obj
        self.counted = counted
        self.limit = limit
        self.cut = False

    @property
    def uri(self) -> str:
        return self.obj.uri

    @property
    def size(self) -> int:
        return self.obj.size

    def _check(self, handle: Any) -> None:
        now = os.fstat(handle.fileno())
        if (now.st_size, now.st_mtime_ns) != (self.obj.size, self.obj.mtime_ns):
            raise SourceError(f"{self.uri} changed since it was listed (size or modification time); the new "
                              "version is loaded from its start by the next run")

    def _open(self) -> Any:
        try:
            return open(self.obj.key, "rb")
        except OSError as error:
            raise SourceError(f"cannot read {self.uri}: {error.strerror}") from None

    def _raw(self) -> Iterator[bytes]:
        handle = self._open()
        try:
            self._check(handle)
            read = 0
            while chunk := handle.read(CHUNK_SIZE):
                if self.counted is not None:
                    self.counted(len(chunk))
                yield chunk
                read += len(chunk)
                if self.limit is not None and read >= self.limit:
                    self.cut = True
                    return
            self._check(handle)
        finally:
            handle.close()

    def chunks(self) -> Iterator[bytes]:
        from pipeline.formats.decode import decompress

        try:
            yield from decompress(self._raw())
        except ValueError as error:
            raise SourceError(f"{self.uri}: cannot decompress: {error}") from None

    def read(self, start: int, stop: int) -> bytes:
        handle = self._open()
        try:
            self._check(handle)
            handle.seek(start)
            data = handle.read(max(0, stop - start))
        finally:
            handle.close()
        if self.counted is not None:
            self.counted(len(data))
        return data


class FileStore:
    in_s3 = False

    def __init__(self, source: FileInputConfig):
        self.source = source

    def listed(self, warn: Callable[[str], None]) -> list[FileObject]:
        prefix = self.source.path_prefix
        directory = prefix if prefix.endswith(os.sep) else os.path.dirname(prefix)
        if not os.path.isdir(directory):
            raise SourceError(f"in.path_prefix {prefix}: there is no directory {directory}")
        found = [obj for obj in self._walk(Path(directory)) if obj.key.startswith(prefix)]
        last = self.source.last_path
        return sorted((obj for obj in found if obj.size > 0 and (last is None or obj.key > last)),
                      key=lambda obj: obj.key)

    def _walk(self, directory: Path) -> Iterator[FileObject]:
        follow = self.source.follow_symlinks
        for root, directories, files in os.walk(directory, followlinks=follow,
                                                onerror=self._unreadable):
            if not follow:
                directories[:] = [d for d in directories if not os.path.islink(os.path.join(root, d))]
            for name in files:
                path = os.path.join(root, name)
                if not follow and os.path.islink(path):
                    continue
                try:
                    info = os.stat(path)
                except OSError:
                    continue  # removed since the directory was read, or a broken link
                if os.path.isfile(path):
                    yield FileObject(os.path.abspath(path), info.st_size, info.st_mtime_ns)

    @staticmethod
    def _unreadable(error: OSError) -> None:
        raise SourceError(f"cannot list {error.filename}: {error.strerror}")

    def named(self, key: str) -> FileObject:
        path = os.path.abspath(key)
        if not path.startswith(self.source.path_prefix):
            raise SourceError(f"{path} is not under in.path_prefix {self.source.path_prefix}")
        try:
            info = os.stat(path)
        except OSError as error:
            raise SourceError(f"cannot read file://{path}: {error.strerror}") from None
        return FileObject(path, info.st_size, info.st_mtime_ns)

    def first(self) -> FileObject | None:
        listed = self.listed(lambda message: None)
        return listed[0] if listed else None

    def blob(self, obj: FileObject, counted: Callable[[int], None] | None = None, *,
             limit: int | None = None) -> FileBlob:
        return FileBlob(obj, counted, limit=limit)


def store(source: FileInputConfig, client: Callable[[], Any]) -> FileStore:
    return FileStore(source)
