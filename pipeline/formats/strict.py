"""The fast path's guard: pass an object's bytes to the server only while they mean to it what they mean to Embulk.

The fast path streams an object's bytes into ``COPY ... (FORMAT csv)``, and PostgreSQL's CSV parser
accepts things Embulk's tokenizer (and our checked reader, ``pipeline.formats.csv``) reads
otherwise or refuses: text after a closing quote (``"a"aa`` becomes ``aaa``), spaces around a
quoted value (kept by the server, dropped or refused by Embulk), a quote inside an unquoted field
(the server opens a quoted section there), a backslash escape (the server's escape is the quote),
an empty line (the server reads a row of NULLs, Embulk skips it) and a quoted value over
``max_quoted_size_limit``. :func:`guard` passes the chunks through unchanged and raises
:class:`NotPlain` at the first sign of any of these, so the caller rolls the COPY back and reads the
object with the checked path, which judges each record as Embulk does.

The test is cheap because well-formed CSV has a simple shape: every quote character belongs to a
quoted field that opens where a field starts, holds doubled quotes only, and closes where a field
ends. Removing every such field with one regular expression (run in C) must leave no quote behind.
Bytes are looked at in record-aligned segments: a segment ends at the last line break outside
quotes (an even number of quotes before it), so a quoted field never straddles two segments.
"""

import re
from collections.abc import Iterable, Iterator

# A quoted field longer than this (or a run of lines inside one quote) is left to the checked path.
MAX_CARRY_BYTES = 16 << 20
_TRIES = 16  # line breaks tried, from the end of a buffer, for one outside quotes


class NotPlain(ValueError):
    """The bytes hold something the server's CSV parser would read differently from Embulk."""


class Guard:
    """The patterns for one set of options (single-byte delimiter and quote, as the fast path needs)."""

    def __init__(self, *, delimiter: str, quote: str, escape: str | None, max_quoted_size: int):
        d, q = re.escape(delimiter.encode()), re.escape(quote.encode())
        self.quote = quote.encode()
        start = rb"(?:(?<=[" + d + rb"\r\n])|^)"
        # Possessive: a field that does not close fails at once instead of backtracking through the segment.
        self.quoted = re.compile(start + q + rb"[^" + q + rb"]*+(?:" + q + q + rb"[^" + q + rb"]*+)*+" + q
                                 + rb"(?=[" + d + rb"\r\n]|\Z)")
        self.too_long = re.compile(start + q + rb"(?:[^" + q + rb"]|" + q + q + rb"){%d}" % (max_quoted_size + 1))
        self.max_quoted_size = max_quoted_size
        # Embulk unescapes these inside quotes where the server (whose escape is the quote) keeps both bytes.
        self.escapes = ((escape + quote).encode(), (escape + escape).encode()) if escape and escape != quote else ()

    def check(self, segment: bytes, offset: int) -> None:
        """Raise NotPlain unless ``segment`` (whole records, starting at byte ``offset``) is plain."""
        for pair in self.escapes:
            if pair in segment:
                raise NotPlain(f"the escape sequence {pair.decode()!r} at byte {offset + segment.find(pair):,}")
        if self.quote in segment:
            rest = self.quoted.sub(b"", segment)
            if self.quote in rest:
                raise NotPlain(f"a quote that does not open or close a whole field, at byte "
                               f"{offset + self.stray_quote(segment):,}")
            if len(segment) - len(rest) > self.max_quoted_size and self.too_long.search(segment):
                raise NotPlain(f"a quoted field longer than max_quoted_size_limit ({self.max_quoted_size:,})")
        if _EMPTY_LINE.search(segment):
            raise NotPlain(f"an empty line near byte {offset + _EMPTY_LINE.search(segment).start():,}")


    def stray_quote(self, segment: bytes) -> int:
        """Where the first quote outside every whole quoted field is (only after check found one)."""
        at = 0
        for match in self.quoted.finditer(segment):
            stray = segment.find(self.quote, at, match.start())
            if stray >= 0:
                return stray
            at = match.end()
        return max(segment.find(self.quote, at), 0)


# An empty line: a line break right after another (CRLF counts as one), or one at the very start.
_EMPTY_LINE = re.compile(rb"(?:\n|\r(?!\n))(?:\r\n|\n|\r)|^(?:\r\n|\n|\r)")


def guard(chunks: Iterable[bytes], *, delimiter: str, quote: str, escape: str | None,
          max_quoted_size: int) -> Iterator[bytes]:
    """Yield ``chunks`` unchanged; raise NotPlain where the server would not read them as Embulk does.

    A chunk is yielded once the records it completes have been checked, so the server never sees a
    byte before it is known to be plain; a record left open at a chunk's end is held until the next.
    """
    rules = Guard(delimiter=delimiter, quote=quote, escape=escape, max_quoted_size=max_quoted_size)
    held = b""
    offset = 0
    for chunk in chunks:
        if not chunk:
            continue
        buffer = held + chunk if held else chunk
        cut = _last_boundary(buffer, rules.quote, len(held))
        if cut <= 0:
            if len(buffer) > MAX_CARRY_BYTES:
                raise NotPlain(f"no line break outside quotes in {len(buffer):,} bytes after byte {offset:,}")
            held = buffer
            continue
        segment = buffer[:cut]
        rules.check(segment, offset)
        offset += cut
        held = buffer[cut:]
        yield segment
    if held:
        # A final record that leaves a quote open is not plain: the server's error would name no line.
        rules.check(held, offset)
        if held.count(rules.quote) % 2:
            raise NotPlain("a quoted field that is not closed before the end of the object")
        yield held


def _last_boundary(buffer: bytes, quote: bytes, searched: int) -> int:
    """Just past the last line break with an even number of quotes before it; 0 when none was found.

    Only breaks after ``searched`` bytes are new; fewer than _TRIES are tried, from the end.
    """
    end = len(buffer)
    for _ in range(_TRIES):
        at = max(buffer.rfind(b"\n", 0, end), buffer.rfind(b"\r", 0, end))
        if at < 0 or at < searched - 1:
            return 0
        # A CR whose LF has not arrived yet is no boundary: hold it.
        if buffer[at:at + 1] == b"\r" and at + 1 == len(buffer):
            end = at
            continue
        if buffer.count(quote, 0, at) % 2 == 0:
            return at + 1
        end = at
    return 0
