"""Fault-injecting proxies that sit in front of the stack's services, outside the code under test.

``HttpFaultProxy`` forwards HTTP to moto and, for a seeded share of the requests, answers with an
S3 error (503 SlowDown, 500 InternalError) or sends the response headers and only part of the body
before dropping the connection. ``TcpProxy`` forwards raw TCP (PostgreSQL) and can cut every
connection open through it, the way a server restart or a network failure does.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te",
               "trailer", "upgrade"}

S3_ERRORS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "internal": (500, "InternalError", "We encountered an internal error. Please try again."),
}


def _reset(sock: socket.socket) -> None:
    """Drop a connection at once, as a crashed peer or a middlebox would (RST where the kernel can)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)  # also wakes a thread blocked in recv() on it
    except OSError:
        pass
    sock.close()


class HttpFaultProxy:
    """An HTTP reverse proxy to ``upstream`` that fails a seeded share of the requests.

    ``choose(method, path)`` returns None (forward faithfully), "slowdown", "internal" or "cut"
    (forward, then deliver only half of the body and reset the connection). ``faults`` counts what
    was injected.
    """

    def __init__(self, upstream: str, choose: Callable[[str, str], str | None]):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.choose = choose
        self.faults: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="http-fault-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HttpFaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self.lock:
            fault = self.choose(handler.command, handler.path)
            if fault:
                self.faults[fault] += 1
        if fault in S3_ERRORS:
            status, code, message = S3_ERRORS[fault]
            payload = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                       f"<Message>{message}</Message></Error>").encode()
            handler.send_response(status)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        handler.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() not in ("server", "date"):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command == "HEAD":
            return
        if fault == "cut" and len(data) > 1:
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            _reset(handler.connection)
            return
        handler.wfile.write(data)


def seeded_s3_faults(seed: int, *, share: float = 0.2, cut_share: float = 0.2) -> Callable[[str, str], str | None]:
    """About ``share`` of all requests get SlowDown or InternalError; ``cut_share`` of object GETs are cut."""
    rng = random.Random(seed)

    def choose(method: str, path: str) -> str | None:
        draw = rng.random()
        if draw < share:
            return rng.choice(["slowdown", "internal"])
        # Path-style addressing: /bucket/key is an object, /bucket?list-type=2 a listing.
        is_object_get = method == "GET" and "/" in path.split("?")[0].strip("/")
        if is_object_get and draw < share + cut_share:
            return "cut"
        return None

    return choose


class TcpProxy:
    """Forwards TCP connections to ``upstream``; ``cut_all()`` resets every open connection.

    ``cut_after(nbytes)`` arms a cut: once one connection has sent ``nbytes`` more to the server
    (a COPY under way), every connection is cut, so the fault lands mid-statement, not between two.
    """

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.armed: int | None = None
        self.cut_done = threading.Event()
        self.hold_bytes: int | None = None
        self.hold_patterns: list[bytes] = []
        self.held = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True, name="tcp-proxy")

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def __enter__(self) -> TcpProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.closed.set()
        self.release.set()
        self.listener.close()
        self.cut_all()

    def cut_all(self) -> int:
        """Reset every connection open through the proxy; returns how many were cut."""
        with self.lock:
            sockets = list(self.open)
            self.open.clear()
        for sock in sockets:
            _reset(sock)
        return len(sockets) // 2

    def cut_after(self, nbytes: int) -> None:
        with self.lock:
            self.armed = nbytes

    def hold_after(self, nbytes: int) -> None:
        """Stop forwarding to the server once the connections have sent ``nbytes`` more to it (``held``
        is set then), so a fault from outside can land mid-statement at a point fixed by bytes, not time."""
        with self.lock:
            self.hold_bytes = nbytes

    def hold_at(self, *patterns: bytes) -> None:
        """Stop forwarding to the server at the first chunk holding the last of ``patterns``, once the
        ones before it were seen in that order (e.g. b"COPY", b"COMMIT": the commit of a batch)."""
        with self.lock:
            self.hold_patterns = list(patterns)

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self.lock:
                self.open.update((client, server))
            for source, sink, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, upstream), daemon=True).start()

    def _holds(self, data: bytes) -> bool:
        with self.lock:
            if self.hold_patterns and self.hold_patterns[0] in data:
                self.hold_patterns.pop(0)
                return not self.hold_patterns
        return False

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(65536):
                if upstream and self.hold_patterns and self._holds(data):
                    self.held.set()
                    self.release.wait()
                    return
                if upstream and self.hold_bytes is not None:
                    with self.lock:
                        self.hold_bytes = None if self.hold_bytes <= len(data) else self.hold_bytes - len(data)
                        hold = self.hold_bytes is None
                    if hold:
                        self.held.set()
                        self.release.wait()
                        return
                if upstream and self.armed is not None:
                    with self.lock:
                        self.armed = None if self.armed <= len(data) else self.armed - len(data)
                        fire = self.armed is None
                    if fire:
                        self.cut_all()
                        self.cut_done.set()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open.discard(source)
                self.open.discard(sink)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # a bare close() would not wake the other pump's recv()
                with contextlib.suppress(OSError):
                    sock.close()
