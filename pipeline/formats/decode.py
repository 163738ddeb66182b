"""Byte streams of an object: decompression, charsets and header lines.

Every function here takes an iterable of ``bytes`` chunks and streams: memory is bounded by
one chunk (and, for :func:`split_header`, by the header lines), never by the object.
"""

from __future__ import annotations

import bz2
import codecs
import io
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain
from typing import Any

GZIP_MAGIC = b"\x1f\x8b\x08"
BZIP2_MAGIC = b"BZh"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame (RFC 8878, 3.1.1)
# The decoders an ``in.decoders`` list may name: each is recognised from the bytes, named or not.
DECODERS = ("gzip", "bzip2", "zstd")
UTF8_BOM = codecs.BOM_UTF8

# Output is produced in pieces of this size so a small, highly compressed object cannot balloon memory.
_OUTPUT_PIECE = 1 << 20
# A bzip2 stream is "BZh", a block size digit, then a block or end-of-stream magic number.
_BZIP2_BLOCK_MAGICS = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")
_SNIFF_BYTES = 10

# Java/Embulk charset names (lower-cased) to Python codecs.
_CODECS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "ascii",
    "ascii": "ascii",
    # Windows-31J is what Japanese files called Shift_JIS really are: cp932 adds NEC and IBM extensions
    # (①, ㈱, 髙) that strict Shift_JIS cannot decode, and it is what Embulk's guess writes as MS932.
    "ms932": "cp932",
    "windows-31j": "cp932",
    "cp932": "cp932",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "euc-jp": "euc_jp",
    "eucjp": "euc_jp",
    "euc_jp": "euc_jp",
    "iso-2022-jp": "iso2022_jp",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-15": "iso8859_15",
    "windows-1252": "cp1252",
    "cp1252": "cp1252",
    "euc-kr": "euc_kr",
    "ms949": "cp949",
    "windows-949": "cp949",
    "gbk": "gbk",
    "gb2312": "gb2312",
    "gb18030": "gb18030",
    "big5": "big5",
    "utf-16": "utf-16",
    "utf-16le": "utf-16-le",
    "utf-16be": "utf-16-be",
    "utf-32": "utf-32",
    "utf-32le": "utf-32-le",
    "utf-32be": "utf-32-be",
}

# Codecs in which CR, LF and every ASCII byte only ever stand for themselves, so lines can be split as bytes.
ASCII_COMPATIBLE_CODECS = frozenset(
    {"utf-8", "ascii", "cp932", "euc_jp", "latin-1", "iso8859_15", "cp1252", "euc_kr", "cp949", "gbk",
     "gb2312", "gb18030", "big5"}
)


def python_codec(charset: str) -> str:
    """The Python codec for an Embulk (Java) charset name such as ``UTF-8``, ``MS932`` or ``EUC-JP``."""
    codec = _CODECS.get(charset.strip().lower())
    if codec is None:
        known = ", ".join(sorted({"UTF-8", "MS932", "Shift_JIS", "EUC-JP", "ISO-8859-1", "UTF-16"}))
        raise ValueError(f"unknown charset {charset!r} (known charsets include {known})")
    return codec


def compression(head: bytes) -> str | None:
    """``gzip``, ``bzip2`` or ``zstd`` by an object's first bytes (at least 10 of them), else None."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if _is_bzip2(head):
        return "bzip2"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def check_decoders(section: Any) -> None:
    """``in.decoders``: each entry names a decoder of :data:`DECODERS` (which the bytes would select anyway)."""
    from pipeline.errors import ConfigError

    for decoder in section.sequence("decoders", default=[]):
        if not (isinstance(decoder, Mapping) and decoder.get("type") in DECODERS and len(decoder) == 1):
            raise ConfigError(section.at("decoders"), "each decoder must be one of "
                              + ", ".join(f"{{type: {name}}}" for name in DECODERS))


def decompress(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress gzip, bzip2 or zstd content, recognised by its magic bytes; pass anything else through."""
    iterator = iter(chunks)
    head = b""
    for chunk in iterator:
        head += chunk
        if len(head) >= _SNIFF_BYTES:
            break
    stream = chain([head], iterator)
    kind = compression(head)
    if kind == "gzip":
        yield from _gunzip(stream)
    elif kind == "bzip2":
        yield from _bunzip2(stream)
    elif kind == "zstd":
        yield from _unzstd(stream)
    else:
        yield from (chunk for chunk in stream if chunk)


def _is_bzip2(head: bytes) -> bool:
    return (
        head.startswith(BZIP2_MAGIC)
        and head[3:4] in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9")
        and head[4:10] in _BZIP2_BLOCK_MAGICS
    )


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    member = None  # the decompressor of the gzip member being read, None between members
    try:
        for data in chunks:
            while data:
                if member is None:
                    # Zero bytes between or after members are padding that gzip itself ignores.
                    data = data.lstrip(b"\0")
                    if not data:
                        break
                    member = zlib.decompressobj(wbits=47)
                piece = member.decompress(data, _OUTPUT_PIECE)
                yield from _nonempty(piece)
                data = member.unconsumed_tail
                while not data and not member.eof and len(piece) == _OUTPUT_PIECE:
                    piece = member.decompress(b"", _OUTPUT_PIECE)
                    yield from _nonempty(piece)
                if member.eof:
                    data = member.unused_data
                    member = None
        if member is not None:
            yield from _nonempty(member.flush())
            if not member.eof:
                raise ValueError("gzip data is truncated: the stream ends inside a compressed member")
    except zlib.error as exc:
        raise ValueError(f"corrupt gzip data: {exc}") from exc


def _bunzip2(chunks: Iterable[bytes]) -> Iterator[bytes]:
    stream = None  # the decompressor of the bzip2 stream being read
    try:
        for data in chunks:
            while data:
                if stream is None or stream.eof:
                    # pbzip2 and `cat a.bz2 b.bz2` write several streams one after another.
                    stream = bz2.BZ2Decompressor()
                yield from _nonempty(stream.decompress(data, _OUTPUT_PIECE))
                while not stream.eof and not stream.needs_input:
                    yield from _nonempty(stream.decompress(b"", _OUTPUT_PIECE))
                data = stream.unused_data if stream.eof else b""
        if stream is None or not stream.eof:
            raise ValueError("bzip2 data is truncated: the stream ends inside a compressed block")
    except (OSError, EOFError) as exc:
        raise ValueError(f"corrupt bzip2 data: {exc}") from exc


def _unzstd(chunks: Iterator[bytes]) -> Iterator[bytes]:
    # pyarrow (a dependency for Parquet) carries libzstd: its stream reads frame after frame, bounds each
    # read by the size asked for, and fails on a stream that ends inside a frame.
    import pyarrow as pa

    source = _ChunkFile(chunks)
    stream = pa.CompressedInputStream(pa.PythonFile(source, mode="r"), "zstd")
    try:
        while piece := stream.read(_OUTPUT_PIECE):
            yield piece
    except OSError as exc:
        if exc is source.failure:  # reading the chunks failed (pyarrow re-raises that error as it was)
            raise
        message = "the stream ends inside a frame" if "Truncated" in str(exc) else str(exc)
        raise ValueError(f"corrupt zstd data: {message}") from None


class _ChunkFile(io.RawIOBase):
    """The chunks as a readable file, for pyarrow."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._pending = memoryview(b"")
        self.failure: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
            except BaseException as error:
                self.failure = error
                raise
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def _nonempty(piece: bytes) -> Iterator[bytes]:
    if piece:
        yield piece


def strip_utf8_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Drop a UTF-8 byte order mark at the start of the stream; pass every other byte through."""
    iterator = iter(chunks)
    head = b""
    for chunk in iterator:
        head += chunk
        if len(head) >= len(UTF8_BOM):
            break
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM):]
    if head:
        yield head
    for chunk in iterator:
        if chunk:
            yield chunk


def to_utf8(chunks: Iterable[bytes], charset: str) -> Iterator[bytes]:
    """Transcode a stream in ``charset`` to UTF-8, dropping a leading byte order mark.

    UTF-8 input passes through undecoded (the server validates it on the fast path). Undecodable
    input in any other charset raises :class:`ValueError` naming the byte offset.
    """
    codec = python_codec(charset)
    if codec == "utf-8":
        yield from strip_utf8_bom(chunks)
        return
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    consumed = 0
    at_start = True
    for chunk in chain(chunks, [None]):
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(b"" if chunk is None else chunk, final=chunk is None)
        except UnicodeDecodeError as exc:
            offset = consumed - pending + exc.start
            raise ValueError(f"bytes at offset {offset} are not valid {charset}: {exc.reason}") from exc
        if chunk is not None:
            consumed += len(chunk)
        if at_start and text:
            at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        if text:
            yield text.encode("utf-8")


_NEWLINE = re.compile(rb"\r\n|\r|\n")


def split_header(chunks: Iterable[bytes], skip_header_lines: int) -> tuple[list[bytes], Iterator[bytes]]:
    """Take the first ``skip_header_lines`` physical lines (LF, CRLF or CR) off a byte stream.

    Returns those lines with their line endings, and the rest of the stream unread.
    """
    iterator = iter(chunks)
    lines: list[bytes] = []
    buffer = b""
    position = 0
    exhausted = False
    while len(lines) < skip_header_lines:
        match = _NEWLINE.search(buffer, position)
        # A CR at the end of what we have may be the first half of a CRLF.
        if match is None or (match.group() == b"\r" and match.end() == len(buffer) and not exhausted):
            chunk = next(iterator, None)
            if chunk is None:
                if exhausted or match is None:
                    if position < len(buffer):
                        lines.append(buffer[position:])
                    position = len(buffer)
                    break
                exhausted = True
                continue
            buffer = buffer[position:] + chunk
            position = 0
            continue
        lines.append(buffer[position:match.end()])
        position = match.end()
    rest = buffer[position:]
    return lines, (chain([rest], iterator) if rest else iterator)
