"""A protocol-aware proxy that puts a target's rules in front of PostgreSQL.

Each client connection gets one backend connection and two threads: the *driver* reads the client's
messages and hands statements (``Query`` and ``Parse``) to the target's :class:`Rules`, which forward
them, rewrite them, refuse them or run a few statements of their own first; the *pump* forwards what
the backend answers. While the driver runs statements of its own (:meth:`Session.backend_exec`) the
pump hands the answers to the driver instead of the client ("capture"), so the client sees only the
answer to what it sent. Databases without rules are spliced through untouched.

The rules call the session, so this module does not import them: :class:`Options` carries the function
that makes a flavor's rules (:func:`pipeline.local.standin.flavors.rules_for`), and :class:`Hooks` is what
a session asks of them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.local.standin import wire

log = logging.getLogger(__name__)

Message = tuple[bytes, bytes]


class StandinSQLError(Exception):
    """A statement the stand-in ran for itself failed; ``messages`` are the backend's answer."""

    def __init__(self, fields: dict[str, str], messages: list[Message]):
        super().__init__(fields.get("M", "error"))
        self.fields = fields
        self.messages = messages


class Hooks(Protocol):
    """What a session asks of its target's rules (pipeline.local.standin.rules.Rules)."""

    def on_query(self, sql: str) -> None: ...

    def on_parse(self, name: str, sql: str, oids: list[int]) -> None: ...

    def on_bind(self, statement: str) -> None: ...

    def rewrite_error(self, fields: dict[str, str]) -> dict[str, str]: ...


@dataclass
class Options:
    """What every session of one proxy process shares."""

    upstream: tuple[str, int]
    flavors: dict[str, str]  # database name -> flavor ("hologres", "redshift")
    rules_for: Callable[[str, Session], Hooks]  # a flavor's rules for a session
    side_conninfo: str = ""  # a conninfo with {database}: the stand-in's own connections (load-error rows)
    settings: dict[str, str] = field(default_factory=dict)


class Session:
    """One client connection and its backend connection."""

    def __init__(self, client: socket.socket, options: Options):
        self.client = client
        self.options = options
        self.backend: socket.socket | None = None
        self.database = ""
        self.user = ""
        self.backend_pid = 0
        self.tx_status = b"I"
        self.rules: Hooks | None = None
        self._capture: queue.SimpleQueue | None = None
        self._out: list[bytes] = []
        self._client_lock = threading.Lock()
        self.sync_hook: Callable[[Session], None] | None = None
        self.copy_end_hook: Callable[[Session, bytes, bytes], None] | None = None
        self.status_listeners: list[Callable[[bytes], None]] = []
        self._awaiting = 1  # Query and Sync messages sent whose ReadyForQuery has not come back (startup: 1)
        self._extended = 0  # extended-protocol messages forwarded since the last Sync
        self._count_lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle

    def run(self) -> None:
        try:
            code, packet = wire.read_startup(self.client)
            if code == wire.CANCEL_REQUEST:
                with socket.create_connection(self.options.upstream) as upstream:
                    upstream.sendall(packet)
                return
            params = wire.startup_parameters(packet)
            self.user = params.get("user", "")
            self.database = params.get("database", self.user)
            self.backend = socket.create_connection(self.options.upstream)
            self.backend.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.backend.sendall(packet)
            flavor = self.options.flavors.get(self.database)
            if flavor is None:
                self._splice()
                return
            self.rules = self.options.rules_for(flavor, self)
            pump = threading.Thread(target=self._pump, name="standin-pump", daemon=True)
            pump.start()
            self._drive()
        except (wire.Closed, OSError):
            pass
        except Exception as error:
            log.exception("stand-in session for %s/%s failed", self.user, self.database)
            with contextlib.suppress(OSError):
                self._send_client(wire.error(f"the stand-in failed on this statement and closes the connection "
                                             f"(a bug in pipeline.local.standin: {error!r})", "XX000", "FATAL"))
        finally:
            for sock in (self.client, self.backend):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

    def _splice(self) -> None:
        assert self.backend is not None

        def copy(source: socket.socket, target: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while chunk := source.recv(1 << 16):
                    target.sendall(chunk)
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=copy, args=(self.backend, self.client), daemon=True)
        back.start()
        copy(self.client, self.backend)
        back.join()

    # ----------------------------------------------------------------- backend -> client

    def _pump(self) -> None:
        assert self.backend is not None and self.rules is not None
        try:
            for batch in wire.MessageReader(self.backend).batches():
                out: list[bytes] = []
                for mtype, body in batch:
                    if mtype == b"Z":
                        with self._count_lock:
                            self._awaiting -= 1
                        self.tx_status = body[:1]
                        for listener in self.status_listeners:
                            listener(self.tx_status)
                    elif mtype == b"K" and not self.backend_pid:
                        self.backend_pid = struct.unpack("!I", body[:4])[0]
                    capture = self._capture
                    if capture is not None:
                        if out:
                            self._send_client(b"".join(out))
                            out = []
                        capture.put((mtype, body))
                        continue
                    if mtype == b"E":
                        out.append(wire.error_response(self.rules.rewrite_error(wire.error_fields(body))))
                    else:
                        out.append(wire.message(mtype, body))
                if out:
                    self._send_client(b"".join(out))
        except (OSError, wire.Closed):
            pass
        finally:
            capture = self._capture
            if capture is not None:
                capture.put(None)
            with contextlib.suppress(OSError):
                self.client.shutdown(socket.SHUT_RDWR)

    def _send_client(self, data: bytes) -> None:
        with self._client_lock:
            self.client.sendall(data)

    # ----------------------------------------------------------------- client -> backend

    def _drive(self) -> None:
        assert self.rules is not None
        rules = self.rules
        for batch in wire.MessageReader(self.client).batches():
            for mtype, body in batch:
                if mtype == b"d":
                    self._out.append(wire.message(mtype, body))
                    if len(self._out) > 64:
                        self.flush()
                elif mtype == b"Q":
                    self.flush()
                    sql, _ = wire.cstring(body)
                    rules.on_query(sql)
                elif mtype == b"P":
                    self.flush()
                    name, sql, oids = wire.parse_message(body)
                    rules.on_parse(name, sql, oids)
                    self._extended += 1
                elif mtype == b"B":
                    rules.on_bind(wire.bind_statement(body))
                    self._extended += 1
                    self.forward(wire.message(mtype, body))
                elif mtype in (b"c", b"f") and self.copy_end_hook is not None:
                    copy_end, self.copy_end_hook = self.copy_end_hook, None
                    copy_end(self, mtype, body)
                elif mtype == b"S":
                    self._extended = 0
                    if self.sync_hook is not None:
                        on_sync, self.sync_hook = self.sync_hook, None
                        on_sync(self)
                    else:
                        self._expect_ready()
                        self.forward(wire.message(mtype, body))
                elif mtype == b"X":
                    self.forward(wire.message(mtype, body))
                    self.flush()
                    return
                else:
                    if mtype in (b"D", b"E", b"C", b"H"):
                        self._extended += 1
                    self.forward(wire.message(mtype, body))
            self.flush()

    def forward(self, data: bytes) -> None:
        self._out.append(data)

    def forward_query(self, sql: str) -> None:
        self._expect_ready()
        self._out.append(wire.query(sql))

    def _expect_ready(self) -> None:
        with self._count_lock:
            self._awaiting += 1

    @property
    def unsynced(self) -> bool:
        """Whether answers to earlier messages may still be on their way (pipelined extended protocol)."""
        return self._awaiting > 0 or self._extended > 0

    def send_sync(self) -> None:
        """Send Sync now, for a hook that captures what it answers."""
        self._expect_ready()
        assert self.backend is not None
        self.backend.sendall(wire.message(b"S"))

    def flush(self) -> None:
        if self._out and self.backend is not None:
            data = b"".join(self._out)
            self._out = []
            self.backend.sendall(data)

    def to_client(self, *messages: bytes) -> None:
        self._send_client(b"".join(messages))

    # ----------------------------------------------------------------- the stand-in's own statements

    def start_capture(self) -> queue.SimpleQueue:
        self.flush()
        capture: queue.SimpleQueue = queue.SimpleQueue()
        self._capture = capture
        return capture

    def collect(self, capture: queue.SimpleQueue) -> list[Message]:
        """The backend's messages up to and including ReadyForQuery; capture ends with it."""
        messages: list[Message] = []
        while True:
            item = capture.get()
            if item is None:
                self._capture = None
                raise wire.Closed()
            messages.append(item)
            if item[0] == b"Z":
                self._capture = None
                return messages

    def backend_exec(self, sql: str) -> list[Message]:
        """Run ``sql`` (simple protocol) on the backend; its answer goes to the caller, not the client."""
        capture = self.start_capture()
        assert self.backend is not None
        self._expect_ready()
        self.backend.sendall(wire.query(sql))
        return self.collect(capture)

    def exec_checked(self, sql: str) -> list[Message]:
        messages = self.backend_exec(sql)
        for mtype, body in messages:
            if mtype == b"E":
                raise StandinSQLError(wire.error_fields(body), messages)
        return messages

    def start_copy(self, sql: str) -> tuple[queue.SimpleQueue | None, list[Message]]:
        """Send a ``COPY ... FROM STDIN`` of the stand-in's making for the client to feed.

        Once the backend is in copy mode the client gets CopyInResponse, and capture goes on: PostgreSQL ends a
        failed COPY (ErrorResponse, ReadyForQuery) without waiting for the client's CopyDone, so whatever ends
        it must reach the caller's copy-end hook, never the client directly. Returns (the capture, []) once the
        copy runs, or (None, the backend's answer) when the COPY failed before it started.
        """
        capture, answer = self._enter_copy(sql)
        if capture is not None:
            self.to_client(wire.message(b"G", answer.pop()[1]))
        return capture, answer

    def _enter_copy(self, sql: str) -> tuple[queue.SimpleQueue | None, list[Message]]:
        """Send ``sql`` (a COPY FROM STDIN) with capture on: (the capture, [CopyInResponse]) once the backend is in
        copy mode, capture still on; or (None, its whole answer) when the COPY failed before it started."""
        assert self.backend is not None
        capture = self.start_capture()
        self._expect_ready()
        self.backend.sendall(wire.query(sql))
        answer: list[Message] = []
        while True:
            item = capture.get()
            if item is None:
                self._capture = None
                raise wire.Closed()
            answer.append(item)
            if item[0] == b"G":
                return capture, answer
            if item[0] == b"Z":
                self._capture = None
                return None, answer

    def end_copy(self, capture: queue.SimpleQueue, mtype: bytes, body: bytes) -> list[Message]:
        """Pass the client's CopyDone or CopyFail on (after the CopyData before it), and return how the backend
        ended the COPY."""
        assert self.backend is not None
        self.flush()
        self.backend.sendall(wire.message(mtype, body))
        return self.collect(capture)

    def copy_in(self, sql: str, chunks) -> list[Message]:
        """Run a ``COPY ... FROM STDIN`` of the stand-in's own, fed from ``chunks``; the backend's answer.

        If ``chunks`` raises, the COPY is failed (CopyFail) and the exception goes on to the caller.
        """
        assert self.backend is not None
        capture, answer = self._enter_copy(sql)
        if capture is None:
            return answer
        messages: list[Message] = answer[:-1]  # what came before CopyInResponse (notices)
        pending: list[bytes] = []
        size = 0
        try:
            for chunk in chunks:
                pending.append(wire.copy_data(chunk))
                size += len(chunk)
                if size >= 1 << 18:
                    self.backend.sendall(b"".join(pending))
                    pending, size = [], 0
                    with contextlib.suppress(queue.Empty):
                        early = capture.get_nowait()  # the backend refused already: stop sending
                        messages.append(early)
                        if early is None or early[0] == b"E":
                            break
        except BaseException as error:
            self.backend.sendall(wire.message(b"f", str(error).encode() + b"\0"))
            self.collect(capture)
            raise
        if pending:
            self.backend.sendall(b"".join(pending))
        self.backend.sendall(wire.message(b"c"))
        messages += self.collect(capture)
        return messages

    def scalar(self, sql: str) -> str | None:
        for mtype, body in self.exec_checked(sql):
            if mtype == b"D":
                return wire.data_row_values(body)[0]
        return None

    def relay(self, messages: list[Message], *, status: bytes | None = None) -> None:
        """Send the backend's ``messages`` to the client, ReadyForQuery's status replaced when given."""
        assert self.rules is not None  # only the rules relay
        out = []
        for mtype, body in messages:
            if mtype == b"Z" and status is not None:
                body = status
            if mtype == b"E":
                out.append(wire.error_response(self.rules.rewrite_error(wire.error_fields(body))))
            else:
                out.append(wire.message(mtype, body))
        self.to_client(*out)


def serve(listen: tuple[str, int], options: Options, ready: threading.Event | None = None,
          stop: threading.Event | None = None) -> None:
    """Accept connections until ``stop`` is set (or forever), a thread per session."""
    server = socket.create_server(listen, reuse_port=False)
    server.settimeout(0.5)
    if ready is not None:
        ready.set()
    with server:
        while stop is None or not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            threading.Thread(target=Session(client, options).run, name="standin-session", daemon=True).start()
