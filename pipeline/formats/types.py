"""Embulk column types: check a parsed value and give the text PostgreSQL reads for it.

``normalize`` is the slow path's authority on what a value means. The fast path lets the server
parse the same text, which is only allowed when :func:`postgres_parses_natively` says the server
reads every value ``normalize`` accepts with the same meaning.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from pipeline.schema import Column

Normalizer = Callable[[str], str]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# PostgreSQL skips C-locale isspace() around numbers and booleans; Python's \s would also allow U+3000.
_SPACE = "[ \t\n\r\f\v]*"
_LONG = re.compile(f"{_SPACE}([+-]?[0-9]+){_SPACE}")
_DOUBLE = re.compile(f"{_SPACE}([+-]?(?:[0-9]+\\.?[0-9]*|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?){_SPACE}")
_PLAIN_DECIMAL = re.compile(r"-?[0-9]{1,300}(?:\.[0-9]{1,300})?")
_DOUBLE_WORDS = {
    "nan": "NaN", "+nan": "NaN", "-nan": "NaN",
    "infinity": "Infinity", "+infinity": "Infinity", "-infinity": "-Infinity",
    "inf": "Infinity", "+inf": "Infinity", "-inf": "-Infinity",
}
_PG_SPACE_CHARS = " \t\n\r\f\v"

# Embulk's boolean words (CsvParserPlugin's TRUE_STRINGS and the guess's FALSE_STRINGS), any case.
TRUE_WORDS = frozenset({"true", "yes", "y", "on", "1", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "off", "0", "f"})


def normalize(raw: str | None, column: Column) -> str | None:
    """Check ``raw`` against ``column``'s type and return the text to send in COPY (None stays None).

    Raises :class:`ValueError` with a short reason, e.g. ``not a 64-bit integer``.
    """
    if raw is None or column.type == "string":
        return raw
    return normalizer(column)(raw)


def normalizer(column: Column) -> Normalizer:
    """The function :func:`normalize` applies to non-null values of ``column``; call it in hot loops."""
    if column.type == "timestamp":
        return _timestamp_normalizer(column.format, column.timezone, column.date)
    found = _BY_TYPE.get(column.type)
    if found is None:
        raise ValueError(f"unknown column type {column.type!r}")
    return found


def _same(raw: str) -> str:
    return raw


def _long(raw: str) -> str:
    # Plain digits short enough to fit are already canonical; most values take this path.
    if raw.isdigit() and raw.isascii() and len(raw) < 19 and (raw[0] != "0" or len(raw) == 1):
        return raw
    match = _LONG.fullmatch(raw)
    if match is None:
        raise ValueError("not a 64-bit integer")
    digits = match.group(1).lstrip("+-").lstrip("0")
    if len(digits) > 19:
        raise ValueError("not a 64-bit integer: out of range")
    value = int(match.group(1))
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("not a 64-bit integer: out of range")
    return str(value)


def _double(raw: str) -> str:
    # A plain decimal this short is always in range, and PostgreSQL reads it exactly as written.
    if _PLAIN_DECIMAL.fullmatch(raw):
        return raw
    match = _DOUBLE.fullmatch(raw)
    if match is None:
        word = _DOUBLE_WORDS.get(raw.strip(_PG_SPACE_CHARS).lower())
        if word is None:
            raise ValueError("not a double precision number")
        return word
    text = match.group(1)
    value = float(text)
    if math.isinf(value):
        raise ValueError("out of range for double precision")
    if value == 0.0 and re.search("[1-9]", re.split("[eE]", text)[0]):
        raise ValueError("out of range for double precision: too close to zero")
    return text


def _boolean(raw: str) -> str:
    word = raw.strip(_PG_SPACE_CHARS).lower()
    if word in TRUE_WORDS:
        return "true"
    if word in FALSE_WORDS:
        return "false"
    raise ValueError("not a boolean (true/false, yes/no, y/n, on/off, 1/0, t/f)")


_JSON_STRING_OR_SPACE = re.compile(r'("(?:[^"\\]|\\.)*")|[ \t\n\r]+', re.DOTALL)
_JSON_SPACE = re.compile(r"[ \t\n\r]")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _json(raw: str) -> str:
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ValueError(f"not valid JSON: {reason}") from None
    if "\\u" in raw:
        _check_json_strings(value)
    if not _JSON_SPACE.search(raw):
        return raw
    # Drop insignificant whitespace only, so numbers and key order stay exactly as written.
    return _JSON_STRING_OR_SPACE.sub(lambda match: match.group(1) or "", raw)


def _check_json_strings(value: object) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts = [item]
        elif isinstance(item, dict):
            texts = list(item)
            stack.extend(item.values())
            texts = [key for key in texts if isinstance(key, str)]
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in texts:
            if "\x00" in text:
                raise ValueError("not valid JSON: \\u0000 cannot be stored by PostgreSQL")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("not valid JSON: unpaired UTF-16 surrogate escape") from None


# ---------------------------------------------------------------------------------------------
# Timestamps: Embulk formats are Ruby strptime patterns, compiled here to one regular expression.

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
                "october", "november", "december")
_WEEKDAYS = "sun|mon|tue|wed|thu|fri|sat"
_WEEKDAY_NAMES = "sunday|monday|tuesday|wednesday|thursday|friday|saturday"
_OFFSET = r"[+-][0-9]{2}(?::?[0-9]{2}(?::?[0-9]{2})?)?"
# Ruby's %z reads zone names too (UT, GMT, JST ...), as TimeFormatGuess's formats expect.
_ZONE_OFFSET = f"(?P<z>{_OFFSET}|Z|[A-Za-z]{{2,5}})"
_ZONE_NAME = f"(?P<z>{_OFFSET}|[A-Za-z][A-Za-z0-9_/+-]*)"

_DIRECTIVES: dict[str, str] = {
    "Y": r"(?P<Y>[0-9]{4})",
    "y": r"(?P<y>[0-9]{2})",
    "m": r"(?P<m>[0-9]{1,2})",
    "d": r"(?P<d>[0-9]{1,2})",
    # Blank-padded: a leading space takes the field's second place, as Ruby's strptime reads it.
    "e": r"(?P<d> [0-9]|[0-9]{1,2})",
    "j": r"(?P<j>[0-9]{1,3})",
    "H": r"(?P<H>[0-9]{1,2})",
    "k": r"(?P<H> [0-9]|[0-9]{1,2})",
    "I": r"(?P<I>[0-9]{1,2})",
    "l": r"(?P<I> [0-9]|[0-9]{1,2})",
    "M": r"(?P<M>[0-9]{1,2})",
    "S": r"(?P<S>[0-9]{1,2})",
    "p": r"(?P<p>[AaPp][Mm])",
    "P": r"(?P<p>[AaPp][Mm])",
    "b": f"(?P<b>{'|'.join(_MONTHS)})",
    "h": f"(?P<b>{'|'.join(_MONTHS)})",
    "B": f"(?P<B>{'|'.join(_MONTH_NAMES)})",
    "a": f"(?:{_WEEKDAYS})",
    "A": f"(?:{_WEEKDAY_NAMES})",
    "s": r"(?P<s>-?[0-9]{1,15})",
    "Q": r"(?P<Q>-?[0-9]{1,18})",
    "z": _ZONE_OFFSET,
    ":z": _ZONE_OFFSET,
    "::z": _ZONE_OFFSET,
    "Z": _ZONE_NAME,
    "n": r"\s+",
    "t": r"\s+",
    "%": "%",
}
_COMPOSITES = {"T": "%H:%M:%S", "X": "%H:%M:%S", "R": "%H:%M", "F": "%Y-%m-%d", "D": "%m/%d/%y",
               "x": "%m/%d/%y", "r": "%I:%M:%S %p"}
_DIRECTIVE = re.compile(r"%([0-9]*)(::z|:z|[A-Za-z%])|(\s+)|([^%\s]+)|(%)")

# Abbreviations Embulk users meet most; IANA names (Asia/Tokyo) go through zoneinfo.
_ZONE_ABBREVIATIONS = {
    "UTC": 0, "GMT": 0, "Z": 0, "UT": 0, "JST": 540, "KST": 540, "HKT": 480, "SGT": 480,
    "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420, "MDT": -360, "PST": -480, "PDT": -420,
    "CET": 60, "CEST": 120, "BST": 60, "EET": 120, "EEST": 180, "WET": 0, "WEST": 60,
}
# PostgreSQL refuses zone displacements of 16 hours or more.
_MAX_OFFSET_MINUTES = 16 * 60

_ISO_TIMESTAMP = re.compile(
    r"(?P<Y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
    r"(?:[T ](?P<H>[0-9]{1,2}):(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]+))?)?"
    r"[ \t]*(?P<z>[+-][0-9]{2}(?::?[0-9]{2})?|Z)?)?"
)


@functools.lru_cache(maxsize=256)
def compile_timestamp_format(format: str) -> re.Pattern[str]:
    """A regular expression for an Embulk timestamp format; ValueError if unsupported.

    Ruby ``strptime`` directives (``%Y-%m-%d %H:%M:%S %z``), or Embulk's ``java:`` formats
    (``java:yyyy-MM-dd HH:mm:ss XXX``, java.time's DateTimeFormatter letters).
    """
    pieces: list[str] = []
    ruby = java_to_ruby(format[len("java:"):]) if format.startswith("java:") else format
    _append_pattern(ruby, format, pieces)
    try:
        return re.compile("".join(pieces), re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"timestamp format {format!r} cannot be used: {exc}") from None


# java.time letters (by the length of their run) and the strptime directive each reads as.
_JAVA_LETTERS: dict[str, dict[int, str] | str] = {
    "y": {1: "%Y", 2: "%y", 4: "%Y"}, "u": {1: "%Y", 2: "%y", 4: "%Y"},
    "M": {1: "%m", 2: "%m", 3: "%b", 4: "%B"}, "L": {1: "%m", 2: "%m", 3: "%b", 4: "%B"},
    "d": {1: "%d", 2: "%d"}, "D": {1: "%j", 2: "%j", 3: "%j"},
    "H": {1: "%H", 2: "%H"}, "k": {1: "%H", 2: "%H"}, "h": {1: "%I", 2: "%I"}, "K": {1: "%I", 2: "%I"},
    "m": {1: "%M", 2: "%M"}, "s": {1: "%S", 2: "%S"}, "a": "%p",
    "E": {1: "%a", 2: "%a", 3: "%a", 4: "%A"},
    "X": "%z", "x": "%z", "Z": "%z", "O": "%z", "z": "%Z", "V": "%Z",
}


def java_to_ruby(pattern: str) -> str:
    """A java.time DateTimeFormatter pattern as the strptime directives that read the same text."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "'":
            end = pattern.find("'", index + 1)
            if end < 0:
                raise ValueError(f"java format {pattern!r} has an unclosed quote")
            literal = pattern[index + 1:end] or "'"
            out.append(literal.replace("%", "%%"))
            index = end + 1
            continue
        run = len(pattern) - len(pattern[index:].lstrip(char)) - index if char.isalpha() else 1
        if not char.isalpha():
            out.append("%%" if char == "%" else char)
        elif char == "S":
            out.append(f"%{run}N")
        elif char in _JAVA_LETTERS:
            table = _JAVA_LETTERS[char]
            directive = table if isinstance(table, str) else table.get(min(run, max(table)))
            if directive is None:
                raise ValueError(f"java format {pattern!r}: {char * run} is not supported")
            out.append(directive)
        else:
            raise ValueError(f"java format {pattern!r}: the letter {char!r} is not supported")
        index += run
    return "".join(out)


def _append_pattern(format: str, whole: str, pieces: list[str]) -> None:
    for match in _DIRECTIVE.finditer(format):
        width, name, space, literal, lone = match.groups()
        if space is not None:
            pieces.append(r"[ \t]+")
        elif literal is not None:
            pieces.append(re.escape(literal))
        elif lone is not None:
            raise ValueError(f"timestamp format {whole!r} ends with a lone %")
        elif name in ("N", "L"):
            pieces.append(f"(?P<f>[0-9]{{1,{int(width)}}})" if width else r"(?P<f>[0-9]+)")
        elif name in _COMPOSITES:
            _append_pattern(_COMPOSITES[name], whole, pieces)
        elif name in _DIRECTIVES:
            pieces.append(_DIRECTIVES[name])
        else:
            raise ValueError(f"timestamp format {whole!r} uses %{name}, which is not supported")


@functools.lru_cache(maxsize=256)
def _timestamp_normalizer(format: str | None, timezone: str = "UTC", date: str = "1970-01-01") -> Normalizer:
    pattern = _ISO_TIMESTAMP if format is None else compile_timestamp_format(format)
    expected = "an ISO 8601 timestamp" if format is None else f"timestamp format {format}"
    check_zone(timezone)
    defaults = _date_parts(date)
    # A value without a zone is in ``timezone``; UTC is the session's zone, so no offset need be written.
    zone = None if timezone.upper() in ("UTC", "Z") else timezone

    def normalize_timestamp(raw: str) -> str:
        match = pattern.fullmatch(raw.strip(_PG_SPACE_CHARS))
        if match is None:
            raise ValueError(f"does not match {expected}")
        parts = match.groupdict()
        if defaults is not None:
            for key, value in defaults.items():
                if not any(parts.get(name) is not None for name in _DATE_DIRECTIVES[key]):
                    parts[key] = value
        if zone is not None and parts.get("z") is None and parts.get("s") is None and parts.get("Q") is None:
            parts["z"] = zone
        return _timestamp_text(parts)

    return normalize_timestamp


# Which directives give each part of a date (a format without any of them takes the default date's).
_DATE_DIRECTIVES = {"Y": ("Y", "y"), "m": ("m", "b", "B", "j"), "d": ("d", "j")}


def _date_parts(date: str) -> dict[str, str] | None:
    match = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", date)
    if match is None:
        raise ValueError(f"date {date!r} must be YYYY-MM-DD")
    if date == "1970-01-01":
        return None  # what the parts default to anyway
    return {"Y": match.group(1), "m": match.group(2), "d": match.group(3)}


def check_zone(name: str) -> None:
    """ValueError unless ``name`` is a zone a value may be read in: UTC, an offset, an abbreviation, IANA."""
    _zone_minutes(name, datetime(2000, 1, 1))


def _timestamp_text(parts: dict[str, str | None]) -> str:
    fraction = (parts.get("f") or "").rstrip("0")
    if parts.get("s") is not None or parts.get("Q") is not None:
        return _epoch_text(parts, fraction)
    year = _year(parts)
    month = _month(parts)
    day = int(parts.get("d") or 1)
    hour = _hour(parts)
    minute = int(parts.get("M") or 0)
    second = int(parts.get("S") or 0)
    # Hour 24 and second 60 roll over into the next day and minute, as Embulk's parsers read them.
    if minute > 59 or second > 60 or hour > 24:
        raise ValueError("not a valid time of day")
    try:
        if parts.get("j") is not None:
            moment = datetime(year, 1, 1) + timedelta(days=int(parts["j"] or 0) - 1)
            if moment.year != year or int(parts["j"] or 0) < 1:
                raise ValueError
        else:
            moment = datetime(year, month, day)
    except (ValueError, OverflowError):
        raise ValueError("not a valid date") from None
    # 24:00:00 and leap second 60 roll over the way PostgreSQL reads them.
    moment += timedelta(hours=hour, minutes=minute, seconds=second)
    text = _datetime_text(moment)
    if fraction:
        text += "." + fraction
    zone = parts.get("z")
    if zone is not None:
        text += _offset_text(_zone_minutes(zone, moment))
    return text


def _datetime_text(moment: datetime) -> str:
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}")


def _year(parts: dict[str, str | None]) -> int:
    if parts.get("Y") is not None:
        year = int(parts["Y"] or 0)
        if year < 1:
            raise ValueError("not a valid date: year 0")
        return year
    if parts.get("y") is not None:
        short = int(parts["y"] or 0)
        return 1900 + short if short >= 69 else 2000 + short
    return 1970


def _month(parts: dict[str, str | None]) -> int:
    if parts.get("b") is not None:
        return _MONTHS.index((parts["b"] or "").lower()) + 1
    if parts.get("B") is not None:
        return _MONTH_NAMES.index((parts["B"] or "").lower()) + 1
    return int(parts.get("m") or 1)


def _hour(parts: dict[str, str | None]) -> int:
    if parts.get("I") is None:
        return int(parts.get("H") or 0)
    hour = int(parts["I"] or 0)
    if not 1 <= hour <= 12:
        raise ValueError("not a valid time of day")
    meridian = (parts.get("p") or "").lower()
    if meridian == "pm" and hour != 12:
        return hour + 12
    if meridian == "am" and hour == 12:
        return 0
    return hour


def _epoch_text(parts: dict[str, str | None], fraction: str) -> str:
    """%s or %Q (millis), with a fraction after them adding to it with its sign, as Embulk reads them."""
    from decimal import Decimal

    seconds = parts.get("s")
    raw = seconds if seconds is not None else parts["Q"] or "0"
    total = Decimal(int(raw)) / (1 if seconds is not None else 1000)
    if fraction:
        total += (-1 if raw.startswith("-") else 1) * Decimal("0." + fraction)
    whole = int(total.to_integral_value(rounding="ROUND_FLOOR"))
    extra = format(total - whole, "f")[2:11].rstrip("0") if total != whole else ""
    try:
        moment = datetime(1970, 1, 1) + timedelta(seconds=whole)
    except OverflowError:
        raise ValueError("epoch seconds out of range") from None
    return _datetime_text(moment) + ("." + extra if extra else "") + "+00:00"


def _zone_minutes(zone: str, moment: datetime) -> float:
    if zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        hours, minutes, seconds = int(digits[0:2]), int(digits[2:4] or 0), int(digits[4:6] or 0)
        if minutes > 59 or seconds > 59:
            raise ValueError("not a valid time zone offset")
        total = hours * 60 + minutes + seconds / 60
        if total >= _MAX_OFFSET_MINUTES:
            raise ValueError("time zone offset out of range")
        return -total if zone[0] == "-" else total
    upper = zone.upper()
    if upper in _ZONE_ABBREVIATIONS:
        return _ZONE_ABBREVIATIONS[upper]
    return _iana_minutes(zone, moment)


def _iana_minutes(name: str, moment: datetime) -> int:
    from zoneinfo import ZoneInfo

    try:
        offset = moment.replace(tzinfo=ZoneInfo(name)).utcoffset()
    except (ValueError, KeyError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None
    assert offset is not None
    return int(offset.total_seconds() // 60)


def _offset_text(minutes: float) -> str:
    sign = "-" if minutes < 0 else "+"
    total_seconds = round(abs(minutes) * 60)
    hours, rest = divmod(total_seconds, 3600)
    mins, secs = divmod(rest, 60)
    return f"{sign}{hours:02d}:{mins:02d}" + (f":{secs:02d}" if secs else "")


_BY_TYPE: dict[str, Normalizer] = {
    "string": _same, "long": _long, "double": _double, "boolean": _boolean, "json": _json,
}

# Formats whose values PostgreSQL's own timestamp input reads with the same meaning: ISO 8601 dates
# with '-', an optional time with '.' fractions and a numeric zone.
_PG_NATIVE_FORMAT = re.compile(
    r"(?:%Y-%m-%d|%F)"
    r"(?:[ T](?:%H:%M(?::%S(?:\.%[0-9]?[NL])?)?|%T(?:\.%[0-9]?[NL])?|%R)"
    r"(?: ?%:?z)?)?"
)


def postgres_parses_natively(column: Column) -> bool:
    """True when PostgreSQL reads every value :func:`normalize` accepts for ``column`` with the same meaning.

    The writer may let the server parse raw CSV (the fast path) only when this holds for all columns.
    """
    if column.type == "timestamp":
        # The session's zone is UTC: a value without a zone means UTC to the server.
        return (column.timezone.upper() in ("UTC", "Z")
                and (column.format is None or _PG_NATIVE_FORMAT.fullmatch(column.format) is not None))
    return column.type in ("string", "long", "double", "boolean", "json")
