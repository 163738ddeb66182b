"""PostgreSQL's frontend/backend protocol (version 3), as much as a rewriting proxy needs.

Messages are ``(type, body)`` pairs: ``type`` is one byte, ``body`` what follows the length word.
Nothing here interprets a message it does not have to; CopyData and result rows pass through as bytes.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608

_HEADER = struct.Struct("!cI")
_INT32 = struct.Struct("!I")
_INT16 = struct.Struct("!H")


class Closed(Exception):
    """The peer closed the connection."""


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise Closed()
        chunks += chunk
    return bytes(chunks)


def read_startup(sock: socket.socket) -> tuple[int, bytes]:
    """The first packet of a connection, after refusing TLS and GSS encryption: (code, whole packet)."""
    while True:
        (length,) = _INT32.unpack(recv_exactly(sock, 4))
        packet = _INT32.pack(length) + recv_exactly(sock, length - 4)
        (code,) = _INT32.unpack(packet[4:8])
        if code in (SSL_REQUEST, GSSENC_REQUEST):
            sock.sendall(b"N")  # neither: the stand-in speaks plain TCP on loopback, like the server behind it
            continue
        return code, packet


def startup_parameters(packet: bytes) -> dict[str, str]:
    fields = packet[8:].split(b"\0")
    return {fields[i].decode(): fields[i + 1].decode() for i in range(0, len(fields) - 1, 2) if fields[i]}


class MessageReader:
    """Reads whole messages from a socket, a batch per ``recv``."""

    def __init__(self, sock: socket.socket, size: int = 1 << 18):
        self.sock = sock
        self.buffer = bytearray()
        self.size = size

    def batches(self) -> Iterator[list[tuple[bytes, bytes]]]:
        """Each item: the complete messages one ``recv`` finished (at least one)."""
        buffer = self.buffer
        while True:
            chunk = self.sock.recv(self.size)
            if not chunk:
                return
            buffer += chunk
            messages = []
            offset = 0
            end = len(buffer)
            while end - offset >= 5:
                mtype, length = _HEADER.unpack_from(buffer, offset)
                if end - offset < length + 1:
                    break
                messages.append((mtype, bytes(buffer[offset + 5:offset + 1 + length])))
                offset += 1 + length
            if offset:
                del buffer[:offset]
            if messages:
                yield messages


def message(mtype: bytes, body: bytes = b"") -> bytes:
    return _HEADER.pack(mtype, len(body) + 4) + body


def query(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\0")


def command_complete(tag: str) -> bytes:
    return message(b"C", tag.encode() + b"\0")


def ready_for_query(status: bytes) -> bytes:
    return message(b"Z", status)


def cstring(body: bytes, offset: int = 0) -> tuple[str, int]:
    end = body.index(b"\0", offset)
    return body[offset:end].decode(), end + 1


def error_fields(body: bytes) -> dict[str, str]:
    """An ErrorResponse or NoticeResponse body as {field code: value}."""
    fields: dict[str, str] = {}
    offset = 0
    while offset < len(body) and body[offset:offset + 1] != b"\0":
        code = body[offset:offset + 1].decode()
        value, offset = cstring(body, offset + 1)
        fields[code] = value
    return fields


def error_response(fields: dict[str, str]) -> bytes:
    body = b"".join(code.encode() + value.encode() + b"\0" for code, value in fields.items()) + b"\0"
    return message(b"E", body)


def error(message_text: str, sqlstate: str, severity: str = "ERROR") -> bytes:
    return error_response({"S": severity, "V": severity, "C": sqlstate, "M": message_text})


def parse_message(body: bytes) -> tuple[str, str, list[int]]:
    """A Parse body: (statement name, query text, parameter type oids)."""
    name, offset = cstring(body)
    sql, offset = cstring(body, offset)
    (count,) = _INT16.unpack_from(body, offset)
    oids = list(struct.unpack_from(f"!{count}I", body, offset + 2))
    return name, sql, oids


def build_parse(name: str, sql: str, oids: list[int]) -> bytes:
    body = name.encode() + b"\0" + sql.encode() + b"\0" + _INT16.pack(len(oids)) + struct.pack(f"!{len(oids)}I", *oids)
    return message(b"P", body)


def bind_statement(body: bytes) -> str:
    """The prepared statement a Bind names ('' for the unnamed one)."""
    _portal, offset = cstring(body)
    statement, _ = cstring(body, offset)
    return statement


def data_row_values(body: bytes) -> list[str | None]:
    (count,) = _INT16.unpack_from(body, 0)
    offset = 2
    values: list[str | None] = []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", body, offset)
        offset += 4
        if length < 0:
            values.append(None)
            continue
        values.append(body[offset:offset + length].decode())
        offset += length
    return values


def copy_data(chunk: bytes) -> bytes:
    return _HEADER.pack(b"d", len(chunk) + 4) + chunk
