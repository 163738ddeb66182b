"""The fast path's guard: pass an object's bytes to the server only while they mean to it what they mean to Embulk.

The fast path streams an object's bytes into ``COPY ... (FORMAT csv)``, and PostgreSQL's CSV parser
accepts things Embulk's tokenizer (and our checked reader, ``pipeline.formats.csv``) reads
otherwise or refuses: text after a closing quote (``"a"aa`` becomes ``aaa``), spaces around a
quoted value (kept by the server, dropped or refused by Embulk), a quote inside an unquoted field
(the server opens a quoted section there), a backslash escape (the server's escape is the quote),
an empty line (the server reads a row of NULLs, Embulk skips it), a quoted value over
``max_quoted_size_limit``, a quoted ``null_string`` (NULL to Embulk) and a quoted value spanning
lines whose line break is not the ``newline`` option's (Embulk writes that one). :func:`guard`
passes the chunks through unchanged and raises :class:`NotPlain` at the first sign of any of these,
so the caller rolls the COPY back and reads the object with the checked path, which judges each
record as Embulk does.

The test is cheap because well-formed CSV has a simple shape: every quote character belongs to a
quoted field that opens where a field starts, holds doubled quotes only, and closes where a field
ends. Split on the quote character (in C), the even pieces are the text outside quotes; joined with
a NUL for each quoted field, one regular expression finds a field that opens or closes anywhere
but next to a delimiter or line break. Bytes are looked at in record-aligned segments: a segment
ends at the last line break outside quotes (an even number of quotes before it), so a quoted field
never straddles two segments.
"""

import re
from collections.abc import Iterable, Iterator

# A quoted field longer than this (or a run of lines inside one quote) is left to the checked path.
MAX_CARRY_BYTES = 16 << 20
_TRIES = 16  # line breaks tried, from the end of a buffer, for one outside quotes


class NotPlain(ValueError):
    """The bytes hold something the server's CSV parser would read differently from Embulk."""


class Guard:
    """The rules for one set of options (single-byte delimiter and quote, as the fast path needs)."""

    def __init__(self, *, delimiter: str, quote: str, escape: str | None, max_quoted_size: int,
                 null_string: str | None = None, newline: str = "\n"):
        self.quote = quote.encode()
        self.max_quoted_size = max_quoted_size
        # Embulk reads a quoted null_string as NULL; the server, as the text.
        self.quoted_null = None if null_string is None else self.quote + null_string.encode() + self.quote
        self.newline = newline.encode()
        d = re.escape(delimiter.encode())
        # In the outside text joined with NUL for each quoted field: a field that does not open right after a
        # delimiter or line break, or does not close right before one (NUL NUL is a doubled quote inside one).
        self.misplaced = re.compile(rb"[^" + d + rb"\r\n\x00]\x00|\x00[^" + d + rb"\r\n\x00]")
        q = re.escape(self.quote)
        start = rb"(?:(?<=[" + d + rb"\r\n])|^)"
        self.too_long = re.compile(start + q + rb"(?:[^" + q + rb"]|" + q + q + rb"){%d}" % (max_quoted_size + 1))
        # Embulk unescapes these inside quotes where the server (whose escape is the quote) keeps both bytes.
        self.escapes = ((escape + quote).encode(), (escape + escape).encode()) if escape and escape != quote else ()

    def check(self, segment: bytes, offset: int) -> None:
        """Raise NotPlain unless ``segment`` (whole records, starting at byte ``offset``) is plain."""
        # One-byte searches are memchr; the two-byte ones run only where their first byte occurs.
        if self.escapes and self.escapes[0][:1] in segment:
            for pair in self.escapes:
                if pair in segment:
                    raise NotPlain(f"the escape sequence {pair.decode()!r} at byte {offset + segment.find(pair):,}")
        nul = segment.find(b"\x00")
        if nul >= 0:
            raise NotPlain(f"a NUL byte at byte {offset + nul:,}")
        if segment[:1] in (b"\r", b"\n") or b"\n\n" in segment or (
                b"\r" in segment and (b"\n\r" in segment or b"\r\r" in segment)):
            raise NotPlain(f"an empty line in the {len(segment):,} bytes from byte {offset:,}")
        if self.quote not in segment:
            return
        # Split on quotes: even pieces are outside quotes, odd ones inside (whole RFC 4180 fields, in C).
        pieces = segment.split(self.quote)
        unclosed = len(pieces) % 2 == 0  # an odd number of quotes: the last one opens a field that never closes
        outside = b"\x00".join(pieces[0::2]) + (b"\x00" if unclosed else b"")
        misplaced = self.misplaced.search(outside)
        if misplaced is not None or unclosed:
            where = (f"at byte {offset + _in_segment(pieces, outside, misplaced):,}" if misplaced is not None else
                     f"in the {len(segment):,} bytes from byte {offset:,}")
            raise NotPlain(f"a quote that does not open or close a whole field, {where}")
        if self.quoted_null is not None and self.quoted_null in segment:
            raise NotPlain(f"the null_string quoted, at byte {offset + segment.find(self.quoted_null):,}")
        if (b"\n" in segment or b"\r" in segment) and self._foreign_line_break(b"".join(pieces[1::2])):
            raise NotPlain(f"a quoted value spanning lines with a line break other than the newline option's, in "
                           f"the {len(segment):,} bytes from byte {offset:,}")
        if self._longest_quoted(segment, pieces, escaped=b"\x00\x00" in outside) > self.max_quoted_size:
            raise NotPlain(f"a quoted field longer than max_quoted_size_limit ({self.max_quoted_size:,}), "
                           f"in the {len(segment):,} bytes from byte {offset:,}")

    def _foreign_line_break(self, inside: bytes) -> bool:
        """True when quoted text holds a line break Embulk would write as the newline option's, not as is."""
        crlf = inside.count(b"\r\n")
        if self.newline == b"\r\n":
            return inside.count(b"\n") != crlf or inside.count(b"\r") != crlf
        if self.newline == b"\n":
            return b"\r" in inside
        return b"\n" in inside

    def _longest_quoted(self, segment: bytes, pieces: list[bytes], *, escaped: bool) -> int:
        """At least the length of the longest quoted value (bytes, each doubled quote as one), in C."""
        if not escaped:
            return max(map(len, pieces[1::2]))
        if b"\x01" not in segment:
            # Each doubled quote as one byte, so a value with doubled quotes is one piece of its own length...
            merged = segment.replace(self.quote + self.quote, b"\x01").split(self.quote)
            # ...unless a value starts with one (its first pairs were taken from the opening quote): then count slowly.
            if len(merged) % 2 and not re.search(rb"\x01\x00", b"\x00".join(merged[0::2])):
                return max(map(len, merged[1::2]), default=0)
        match = self.too_long.search(segment)
        return self.max_quoted_size + 1 if match else 0


def _in_segment(pieces: list[bytes], outside: bytes, match: re.Match) -> int:
    """The segment's byte of the misplaced quote ``match`` found in the joined ``outside`` text."""
    closing = outside[match.start()] == 0  # NUL then a stray byte: the field's closing quote is misplaced
    nul = match.start() if closing else match.start() + 1
    field = outside.count(b"\x00", 0, nul + 1) - 1
    # Field k is pieces[2k + 1]: its opening quote follows pieces[:2k + 1], its closing one pieces[:2k + 2].
    before = pieces[:2 * field + (2 if closing else 1)]
    return sum(map(len, before)) + len(before) - 1


def guard(chunks: Iterable[bytes], *, delimiter: str, quote: str, escape: str | None, max_quoted_size: int,
          null_string: str | None = None, newline: str = "\n") -> Iterator[bytes]:
    """Yield ``chunks`` unchanged; raise NotPlain where the server would not read them as Embulk does.

    A chunk is yielded once the records it completes have been checked, so the server never sees a
    byte before it is known to be plain; a record left open at a chunk's end is held until the next.
    """
    rules = Guard(delimiter=delimiter, quote=quote, escape=escape, max_quoted_size=max_quoted_size,
                  null_string=null_string, newline=newline)
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
        rules.check(held, offset)  # a quote left open at the end is refused there too
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
