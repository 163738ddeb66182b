"""De-aggregation of records written by the Kinesis Producer Library (KPL).

The KPL packs many user records into one Kinesis record: the 4 magic bytes ``F3 89 9A C2``, a
protobuf ``AggregatedRecord`` message, then the 16-byte MD5 digest of that message::

    message AggregatedRecord {
      repeated string partition_key_table = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records = 3;
    }
    message Record {
      required uint64 partition_key_index = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes data = 3;
      repeated Tag tags = 4;      // Tag {required string key = 1; optional string value = 2;}
    }

A record without the magic bytes, with a wrong digest or with a malformed message is a plain
record: :func:`deaggregate` returns ``None`` and the caller passes the bytes on unchanged, so a
corrupt aggregate reaches the parser (and the rejected records) instead of vanishing.

The protobuf subset needed here (varints and length-delimited fields) is decoded by hand to
avoid a dependency; :func:`aggregate` encodes the same format for tests and local producers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST_SIZE = 16

# protobuf wire types
_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One record as the producer put it, before the KPL packed it."""

    partition_key: str
    data: bytes
    explicit_hash_key: str | None = None


class _Malformed(ValueError):
    """The bytes after the magic prefix are not a valid AggregatedRecord."""


def is_aggregated(data: bytes) -> bool:
    """True when ``data`` carries the KPL magic prefix and a matching MD5 digest."""
    if len(data) < len(MAGIC) + _DIGEST_SIZE or not data.startswith(MAGIC):
        return False
    message = data[len(MAGIC) : -_DIGEST_SIZE]
    return hashlib.md5(message, usedforsecurity=False).digest() == data[-_DIGEST_SIZE:]


def deaggregate(data: bytes) -> list[UserRecord] | None:
    """The user records packed in ``data``, in order; ``None`` when ``data`` is a plain record."""
    if not is_aggregated(data):
        return None
    try:
        return _decode_aggregated_record(memoryview(data)[len(MAGIC) : -_DIGEST_SIZE])
    except _Malformed:
        return None


def aggregate(records: Iterable[UserRecord | tuple[str, bytes]]) -> bytes:
    """Pack ``records`` into one KPL aggregated record (what the KPL would put)."""
    items = [r if isinstance(r, UserRecord) else UserRecord(r[0], r[1]) for r in records]
    partition_keys = _index_table(r.partition_key for r in items)
    hash_keys = _index_table(r.explicit_hash_key for r in items if r.explicit_hash_key is not None)
    message = bytearray()
    for key in partition_keys:
        message += _field(1, key.encode("utf-8"))
    for key in hash_keys:
        message += _field(2, key.encode("utf-8"))
    for item in items:
        body = _key(1, _VARINT) + _varint(partition_keys[item.partition_key])
        if item.explicit_hash_key is not None:
            body += _key(2, _VARINT) + _varint(hash_keys[item.explicit_hash_key])
        body += _field(3, item.data)
        message += _field(3, body)
    return MAGIC + bytes(message) + hashlib.md5(message, usedforsecurity=False).digest()


# --------------------------------------------------------------------------- decoding


def _decode_aggregated_record(message: memoryview) -> list[UserRecord]:
    partition_keys: list[str] = []
    hash_keys: list[str] = []
    raw_records: list[memoryview] = []
    for number, value in _fields(message):
        if not isinstance(value, memoryview):
            continue
        if number == 1:
            partition_keys.append(_text(value))
        elif number == 2:
            hash_keys.append(_text(value))
        elif number == 3:
            raw_records.append(value)
    return [_decode_record(raw, partition_keys, hash_keys) for raw in raw_records]


def _decode_record(
    message: memoryview, partition_keys: Sequence[str], hash_keys: Sequence[str]
) -> UserRecord:
    partition_index: int | None = None
    hash_index: int | None = None
    data: bytes | None = None
    for number, value in _fields(message):
        if number == 1 and isinstance(value, int):
            partition_index = value
        elif number == 2 and isinstance(value, int):
            hash_index = value
        elif number == 3 and isinstance(value, memoryview):
            data = bytes(value)
    if partition_index is None or data is None:
        raise _Malformed("a record lacks its partition_key_index or data")
    if partition_index >= len(partition_keys) or (hash_index is not None and hash_index >= len(hash_keys)):
        raise _Malformed("a key index points past its table")
    return UserRecord(
        partition_key=partition_keys[partition_index],
        data=data,
        explicit_hash_key=None if hash_index is None else hash_keys[hash_index],
    )


def _fields(message: memoryview) -> Iterable[tuple[int, int | memoryview]]:
    """(field number, value) for each field: a varint's value is an int, a length-delimited one's a memoryview
    (fixed-size fields are skipped); unknown fields are skipped by the callers."""
    position, end = 0, len(message)
    while position < end:
        key, position = _read_varint(message, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire_type == _VARINT:
            value, position = _read_varint(message, position)
            yield number, value
        elif wire_type == _LENGTH_DELIMITED:
            size, position = _read_varint(message, position)
            if position + size > end:
                raise _Malformed("a field runs past the end of the message")
            yield number, message[position : position + size]
            position += size
        elif wire_type in (_FIXED64, _FIXED32):
            position += 8 if wire_type == _FIXED64 else 4
            if position > end:
                raise _Malformed("a fixed-size field runs past the end of the message")
        else:
            raise _Malformed(f"unsupported wire type {wire_type}")


def _read_varint(message: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    # A uint64 takes at most 10 bytes; more is corruption, not a long number.
    for _ in range(10):
        if position >= len(message):
            raise _Malformed("a varint runs past the end of the message")
        byte = message[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
    raise _Malformed("a varint is longer than 10 bytes")


def _text(value: memoryview) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("a key is not UTF-8") from None


# --------------------------------------------------------------------------- encoding


def _index_table(keys: Iterable[str]) -> dict[str, int]:
    table: dict[str, int] = {}
    for key in keys:
        table.setdefault(key, len(table))
    return table


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _field(number: int, payload: bytes) -> bytes:
    return _key(number, _LENGTH_DELIMITED) + _varint(len(payload)) + payload
