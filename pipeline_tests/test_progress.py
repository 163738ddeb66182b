"""Progress of long loads: plain lines every few seconds, a bar rewritten in place on a terminal."""

from __future__ import annotations

import io
import threading

from pipeline.progress import Bar, Lines, Progress, Snapshot, clock, for_stream


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_are_emitted_no_more_often_than_the_interval_and_once_at_the_end():
    lines: list[str] = []
    time = FakeClock()
    progress = Progress("book_order", Lines(lines.append, 5.0), total_objects=4, total_bytes=40_000_000, clock_=time)
    progress.read(10_000_000)  # 0 s in: nothing yet
    time.now += 5
    progress.add(objects=1, rows=1000, nbytes=10_000_000)
    time.now += 1
    progress.read(1)
    progress.close()
    assert lines == [
        "book_order: 1/4 objects, 1,000 rows, 20.0 MB of 40.0 MB, 4.0 MB/s, 200 rows/s, about 0:05 left",
        "book_order: 1/4 objects, 1,000 rows, 20.0 MB of 40.0 MB, 3.3 MB/s, 167 rows/s, about 0:06 left",
    ]


def test_counters_from_many_threads_add_up():
    progress = Progress("p", None)

    def work() -> None:
        for _ in range(1000):
            progress.add(rows=1, nbytes=10)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (progress.rows, progress.bytes) == (8000, 80_000)


def test_the_bar_rewrites_one_line_in_place_and_ends_it():
    screen = io.StringIO()
    bar = Bar(screen)
    half = Snapshot("book_order", 1, 2, 500, 5_000_000, 10_000_000, 2.0)
    bar.show(half)
    bar.close(Snapshot("book_order", 2, 2, 1000, 10_000_000, 10_000_000, 4.0))
    text = screen.getvalue()
    assert text.startswith("\rbook_order [") and text.endswith("\n") and text.count("\n") == 1
    assert " 50%" in text and "100%" in text and "2/2 obj" in text and "1,000 rows" in text


def test_a_stream_without_a_total_shows_elapsed_time_instead_of_time_left():
    line = Bar(io.StringIO()).render(Snapshot("sensor_data", 0, None, 250, 1_000, None, 65.0), 100)
    assert line == "sensor_data  250 rows  0.0 MB  0.0 MB/s  1:05"


def test_a_terminal_gets_the_bar_and_a_pipe_gets_lines():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(for_stream(Terminal()), Bar)
    assert isinstance(for_stream(io.StringIO()), Lines)
    assert clock(3723) == "1:02:03" and clock(7) == "0:07"
