"""Progress of a load: counters shared by the loading threads, and where they are shown.

``Progress`` counts objects, rows and bytes as a load runs (thread-safe, cheap to call per chunk)
and hands a ``Snapshot`` to a display no more often than the display asks:

- ``Bar``: on a terminal, one line rewritten in place (``\\r``) with a bar, rows, MB, rate and time left;
- ``Lines``: anywhere else, one plain line every few seconds through any ``emit(str)`` callable
  (a log, ``print``, or Dagster's ``context.log.info`` via ``to_dagster``).

``for_stream`` picks the bar when the stream is a terminal, plain lines otherwise, so the command
line needs no flag and CI logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TextIO


@dataclass(frozen=True)
class Snapshot:
    """The counters at one moment; totals are None when unknown (a stream has no end)."""

    name: str
    objects: int
    total_objects: int | None
    rows: int
    bytes: int
    total_bytes: int | None
    elapsed: float

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def fraction(self) -> float | None:
        """How much of the bytes are read, 0 to 1, when the total is known."""
        if not self.total_bytes:
            return None
        return min(self.bytes / self.total_bytes, 1.0)

    @property
    def seconds_left(self) -> float | None:
        if not self.total_bytes or self.bytes_per_second <= 0:
            return None
        return max(self.total_bytes - self.bytes, 0) / self.bytes_per_second

    def describe(self) -> str:
        """One plain line: ``3/10 objects, 1,234 rows, 12.0 MB of 40.0 MB, 2.1 MB/s, about 13 s left``."""
        parts = []
        if self.total_objects is not None:
            parts.append(f"{self.objects}/{self.total_objects} objects")
        parts.append(f"{self.rows:,} rows")
        parts.append(f"{mb(self.bytes)} of {mb(self.total_bytes)}" if self.total_bytes else mb(self.bytes))
        parts.append(f"{mb(self.bytes_per_second)}/s")
        parts.append(f"{self.rows_per_second:,.0f} rows/s")
        left = self.seconds_left
        parts.append(f"about {clock(left)} left" if left is not None else f"{clock(self.elapsed)} elapsed")
        return f"{self.name}: " + ", ".join(parts)


class Display(Protocol):
    """Where snapshots go; ``interval`` is the fewest seconds between two ``show`` calls."""

    interval: float

    def show(self, snapshot: Snapshot) -> None: ...

    def close(self, snapshot: Snapshot) -> None: ...


class Lines:
    """A plain line every ``interval`` seconds, and a last one when the load ends."""

    def __init__(self, emit: Callable[[str], None], interval: float = 5.0):
        self.emit = emit
        self.interval = interval

    def show(self, snapshot: Snapshot) -> None:
        self.emit(snapshot.describe())

    def close(self, snapshot: Snapshot) -> None:
        self.emit(snapshot.describe())


class Bar:
    """One terminal line rewritten in place; the finished line stays on screen."""

    def __init__(self, stream: TextIO, interval: float = 0.2):
        self.stream = stream
        self.interval = interval
        self._written = 0

    def render(self, snapshot: Snapshot, width: int) -> str:
        fraction = snapshot.fraction
        left = snapshot.seconds_left
        numbers = (f" {snapshot.rows:,} rows  {mb(snapshot.bytes)}"
                   + (f"/{mb(snapshot.total_bytes)}" if snapshot.total_bytes else "")
                   + f"  {mb(snapshot.bytes_per_second)}/s"
                   + (f"  {clock(left)} left" if left is not None else f"  {clock(snapshot.elapsed)}"))
        if snapshot.total_objects is not None:
            numbers = f" {snapshot.objects}/{snapshot.total_objects} obj" + numbers
        head = f"{snapshot.name} "
        if fraction is None:
            return (head + numbers)[:width]
        bar_width = max(width - len(head) - len(numbers) - 7, 0)
        if bar_width < 5:  # too narrow for a bar: the numbers matter more
            return (head + f"{fraction:4.0%}" + numbers)[:width]
        done = round(bar_width * fraction)
        return f"{head}[{'#' * done}{'.' * (bar_width - done)}] {fraction:4.0%}{numbers}"[:width]

    def show(self, snapshot: Snapshot) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        line = self.render(snapshot, width)
        # Pad over what the previous, longer line left behind.
        self.stream.write("\r" + line.ljust(self._written))
        self.stream.flush()
        self._written = len(line)

    def close(self, snapshot: Snapshot) -> None:
        self.show(snapshot)
        self.stream.write("\n")
        self.stream.flush()
        self._written = 0


class Progress:
    """Counters of one load, updated from any thread; shown through ``display`` at its own pace."""

    def __init__(self, name: str, display: Display | None, *, total_objects: int | None = None,
                 total_bytes: int | None = None, clock_: Callable[[], float] = time.monotonic):
        self.name = name
        self.display = display
        self.total_objects = total_objects
        self.total_bytes = total_bytes
        self._clock = clock_
        self.started = clock_()
        self._last_shown = self.started
        self.objects = 0
        self.rows = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def read(self, nbytes: int) -> None:
        """``nbytes`` more of the source were read."""
        self.add(nbytes=nbytes)

    def add(self, *, objects: int = 0, rows: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.objects += objects
            self.rows += rows
            self.bytes += nbytes
            now = self._clock()
            if self.display is not None and now - self._last_shown >= self.display.interval:
                self._last_shown = now
                self.display.show(self._snapshot(now))

    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot(self._clock())

    def close(self) -> None:
        """The load ended (or failed): show the final counters once."""
        with self._lock:
            if self.display is not None:
                self.display.close(self._snapshot(self._clock()))

    def _snapshot(self, now: float) -> Snapshot:
        return Snapshot(self.name, self.objects, self.total_objects, self.rows, self.bytes, self.total_bytes,
                        now - self.started)


def for_stream(stream: TextIO | None = None, *, interval: float = 5.0) -> Display:
    """A bar when ``stream`` (default stderr) is a terminal, else a plain line every ``interval`` seconds."""
    stream = stream or sys.stderr
    if stream.isatty():
        return Bar(stream)
    return Lines(lambda line: print(line, file=stream, flush=True), interval)


def to_dagster(context: Any, interval: float = 10.0) -> Lines:
    """Progress lines in a Dagster run's log (``context.log.info``), every ``interval`` seconds."""
    return Lines(context.log.info, interval)


def mb(nbytes: float | None) -> str:
    return f"{(nbytes or 0) / 1e6:.1f} MB"


def clock(seconds: float) -> str:
    """``0:07``, ``12:05``, ``1:02:03``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
