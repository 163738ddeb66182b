"""Page scattering: one object's body dealt to several COPY writers (Embulk's ``exec.min_output_tasks``).

A page is a record-aligned slice of the body (the fast path's guard cuts at line breaks outside quotes,
so a quoted newline never splits a record) with its offset in the body. Writers take the next page from
one bounded queue, so memory stays at a few pages per writer and a slower writer simply takes fewer.
Each writer has its own connection and transaction, and nothing commits until every writer's COPY has
ended: a page the server refuses rolls every writer back. The caller then commits the writers one after
another, each with its :class:`~pipeline.warehouse.state.Part` (the byte ranges it holds) in the same
transaction, so after a crash the ledger knows exactly which ranges are in and a rerun sends the rest.
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pipeline.warehouse.state import Part

# An object gets at most one writer per this many bytes: below it a connection costs more than it saves.
SCATTER_BYTES_PER_WRITER = 16 << 20
_POLL_SECONDS = 0.1


def writers_for(size: int, tasks: int | None, objects_at_once: int) -> int:
    """COPY writers for one object of ``size`` bytes while ``objects_at_once`` objects load side by side.

    ``tasks`` is exec.min_output_tasks (None: one per CPU core, Embulk's default). As in Embulk, pages are
    scattered only when there are fewer objects than tasks: the tasks are shared among the objects.
    """
    wanted = tasks if tasks is not None else (os.cpu_count() or 1)
    per_object = -(-wanted // max(objects_at_once, 1))
    return max(1, min(per_object, size // SCATTER_BYTES_PER_WRITER))


def unsent(pages: Iterable[bytes], done: Sequence[tuple[int, int]], counter: list[int]) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` of each page, less the byte ranges ``done`` (record-aligned, from an earlier load).

    ``counter[0]`` ends as the body's size, sent or not.
    """
    ranges = sorted(done)
    offset = 0
    for page in pages:
        start, end = offset, offset + len(page)
        offset = end
        counter[0] = offset
        if not ranges:
            yield start, page
            continue
        at = start
        for a, b in ranges:
            if b <= at or a >= end:
                continue
            if a > at:
                yield at, page[at - start:a - start]
            at = max(at, b)
        if at < end:
            yield at, page[at - start:]


@dataclass
class Writer:
    """One COPY writer: its connection (its transaction open until the caller commits) and what it wrote."""

    conn: psycopg.Connection
    part_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ranges: list[list[int]] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0

    def add(self, offset: int, size: int) -> None:
        self.nbytes += size
        if self.ranges and self.ranges[-1][1] == offset:
            self.ranges[-1][1] = offset + size
        else:
            self.ranges.append([offset, offset + size])

    @property
    def part(self) -> Part:
        return Part(tuple((a, b) for a, b in self.ranges), self.rows, self.nbytes)


class _Stop:
    pass


_END, _ABORT = _Stop(), _Stop()


def scatter(connections: Sequence[psycopg.Connection], statement: sql.Composed,
            pages: Iterable[tuple[int, bytes]]) -> list[Writer]:
    """Deal ``pages`` to one COPY per connection; return the writers with their COPYs ended, uncommitted.

    An error from ``pages`` (a read, the guard) or from any writer stops every writer and is raised here;
    the caller's connections then hold failed or unfinished transactions, which closing rolls back.
    """
    writers = [Writer(conn) for conn in connections]
    pending: queue.Queue = queue.Queue(maxsize=2 * len(writers))
    failed = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def fail(error: BaseException) -> None:
        with lock:
            errors.append(error)
        failed.set()

    def take():
        while True:
            if failed.is_set():
                return _ABORT
            try:
                return pending.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue

    def give(item) -> bool:
        while not failed.is_set():
            try:
                pending.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def work(writer: Writer) -> None:
        try:
            with writer.conn.cursor() as cur:
                with cur.copy(statement) as copy:
                    while True:
                        item = take()
                        if item is _END:
                            break
                        if item is _ABORT:
                            raise _Aborted()
                        offset, data = item
                        copy.write(data)
                        writer.add(offset, len(data))
                writer.rows = max(cur.rowcount, 0)
        except _Aborted:
            pass
        except BaseException as error:  # handed to the dealer, which raises it
            fail(error)

    threads = [threading.Thread(target=work, args=(w,), name=f"copy-writer-{i}", daemon=True)
               for i, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    try:
        for item in pages:
            if not give(item):
                break
        for _ in writers:
            if not give(_END):
                break
    except BaseException as error:
        with lock:
            errors.insert(0, error)  # the source's error is the cause; a writer's is its consequence
        failed.set()
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return writers


class _Aborted(Exception):
    """Raised inside a writer's COPY so the server ends it as failed (another writer or the source failed)."""
