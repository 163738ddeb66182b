"""Read ahead of the consumer so network reads overlap with loading into the warehouse."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

# How long a blocked producer waits before checking again whether the consumer has gone.
_POLL_SECONDS = 0.1

_CHUNK, _END, _ERROR = "chunk", "end", "error"

T = TypeVar("T")


def prefetch(chunks: Iterable[T], depth: int = 4) -> Generator[T, None, None]:
    """Yield ``chunks`` (object bytes, Kinesis pages) in order while a thread reads up to ``depth`` ahead.

    An exception raised by ``chunks`` is raised here after the chunks that preceded it. When
    the consumer stops early (closes this generator), the producer stops after the read in
    progress, closes ``chunks`` and is joined, so no thread outlives the generator.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    ahead: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    consumer_gone = threading.Event()

    def put(item: tuple[str, object]) -> bool:
        while not consumer_gone.is_set():
            try:
                ahead.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(chunks)
        try:
            for chunk in source:
                if not put((_CHUNK, chunk)):
                    return
            put((_END, None))
        except BaseException as error:  # handed to the consumer, which decides what it means
            put((_ERROR, error))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="prefetch", daemon=True)
    producer.start()
    try:
        while True:
            kind, item = ahead.get()
            if kind == _CHUNK:
                yield item  # type: ignore[misc]
            elif kind == _END:
                return
            else:
                raise item  # type: ignore[misc]
    finally:
        consumer_gone.set()
        # Free the queue so a producer blocked on put() notices at once.
        while True:
            try:
                ahead.get_nowait()
            except queue.Empty:
                break
        producer.join()
