"""The timestamp format of a column's values, as Embulk's TimeFormatGuess finds it.

Each value is matched against four shapes, in Embulk's order: a date with an optional time and
zone (year-month-day, month-day-year or day-month-year, with ``-``, ``/`` or ``.``), RFC 2822
(``Fri, 20 Feb 2015 22:02:34 GMT``), Apache's log format (``07/Mar/2004:16:05:50 -0800``) and
asctime (``Fri May 11 21:44:53 2001``). Values are then grouped by shape (parts and delimiters,
not their options), the largest group wins, and its first value's format is completed from the
others: a fraction's width, a zone's colon, and day-month-year where any value can only be that.

The specification is embulk-util-guess's TestTimeFormatGuess (``pipeline_tests/formats/test_timeguess.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_MONTH = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_WEEKDAY = "Sun|Mon|Tue|Wed|Thu|Fri|Sat"
_ZONE = r"(?P<zone>Z|[+-][0-9]{2}(?::?[0-9]{2})?|[A-Z]{1,3})"

_RFC2822 = re.compile(
    rf"(?P<wday>(?:{_WEEKDAY}), )?[0-9]{{2}} (?:{_MONTH}) [0-9]{{4}}"
    rf"(?P<time> [0-9]{{2}}:[0-9]{{2}}(?P<sec>:[0-9]{{2}})? {_ZONE})?")
_APACHE = re.compile(rf"[0-9]{{2}}/(?:{_MONTH})/[0-9]{{4}}:[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} [+-][0-9]{{4}}")
_ASCTIME = re.compile(rf"(?:{_WEEKDAY}) (?:{_MONTH}) [ 0-9][0-9] [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} [0-9]{{4}}")

_YEAR = "(?P<year>[1-4][0-9]{3})"
_MONTH_NUM = "(?P<month>1[0-2]|0?[1-9])"
_DAY = "(?P<day>3[01]|[12][0-9]|0?[1-9])"
_DATES = [  # Embulk's order: YMD with a delimiter, without, MDY, DMY
    ("YMD", re.compile(rf"{_YEAR}(?P<d>[-/.]){_MONTH_NUM}(?P=d){_DAY}")),
    ("YMD", re.compile(r"(?P<year>[1-4][0-9]{3})(?P<d>)(?P<month>0[1-9]|1[0-2])(?P<day>0[1-9]|[12][0-9]|3[01])")),
    ("MDY", re.compile(rf"{_MONTH_NUM}(?P<d>[-/.]){_DAY}(?P=d){_YEAR}")),
    ("DMY", re.compile(rf"{_DAY}(?P<d>[-/.]){_MONTH_NUM}(?P=d){_YEAR}")),
]
_TIME = re.compile(
    r"(?P<dt>: |_|T|\. ?| )(?P<hour>[ 0-9]?[0-9])"
    r"(?:(?P<td>[:-])(?P<minute>[0-9]{2})(?:(?P=td)(?P<second>[0-9]{2})(?:(?P<fd>[.,])(?P<frac>[0-9]{1,9}))?)?)?")
_ZONE_AFTER = re.compile(rf"(?P<space> ?){_ZONE}")


@dataclass
class Match:
    """One value's format: ``shape`` groups values that can share it; the rest are its options."""

    shape: tuple
    order: str = ""
    delimiter: str = ""
    parts: dict[str, str] = field(default_factory=dict)
    fraction_digits: int = 0
    zone_colon: bool | None = None
    fixed: str | None = None  # RFC 2822, Apache and asctime: the whole format

    def format(self) -> str:
        if self.fixed is not None:
            return self.fixed
        d = self.delimiter
        date = {"YMD": f"%Y{d}%m{d}%d", "MDY": f"%m{d}%d{d}%Y", "DMY": f"%d{d}%m{d}%Y"}[self.order]
        text = date
        if "hour" in self.parts:
            text += self.parts["dt"] + self.parts["hour"]
            if "minute" in self.parts:
                text += self.parts["td"] + "%M"
                if "second" in self.parts:
                    text += self.parts["td"] + "%S"
                    if self.fraction_digits:
                        text += self.parts["fd"] + ("%L" if self.fraction_digits <= 3 else "%N")
        if self.zone_colon is not None:
            text += self.parts.get("zone_space", "") + ("%:z" if self.zone_colon else "%z")
        return text


def match(value: str) -> list[Match]:
    """Every format ``value`` can be read with (the four shapes may overlap)."""
    found = []
    guessed = _guess_pattern(value)
    if guessed is not None:
        found.append(guessed)
    rfc = _RFC2822.fullmatch(value)
    if rfc is not None:
        fmt = ("%a, " if rfc.group("wday") else "") + "%d %b %Y"
        if rfc.group("time"):
            fmt += " %H:%M" + (":%S" if rfc.group("sec") else "") + (" %:z" if ":" in rfc.group("zone") else " %z")
        found.append(Match(shape=("fixed", fmt), fixed=fmt))
    if _APACHE.fullmatch(value):
        found.append(Match(shape=("fixed", "apache"), fixed="%d/%b/%Y:%H:%M:%S %z"))
    if _ASCTIME.fullmatch(value):
        found.append(Match(shape=("fixed", "asctime"), fixed="%a %b %e %H:%M:%S %Y"))
    return found


def _guess_pattern(value: str) -> Match | None:
    for order, pattern in _DATES:
        date = pattern.match(value)
        if date is None:
            continue
        rest = value[date.end():]
        parts: dict[str, str] = {}
        time = _TIME.match(rest) if rest else None
        if time is not None:
            parts["dt"] = time.group("dt")
            hour = time.group("hour")
            parts["hour"] = "%k" if hour[0] == " " or len(hour) == 1 else "%H"
            if int(hour) > 24:
                continue
            for name in ("minute", "second"):
                if time.group(name) is not None:
                    if int(time.group(name)) > 60:
                        return None
                    parts[name] = time.group(name)
            if time.group("td"):
                parts["td"] = time.group("td")
            if time.group("fd"):
                parts["fd"] = time.group("fd")
            rest = rest[time.end():]
        zone_colon = None
        zone = _ZONE_AFTER.match(rest) if rest and "hour" in parts else None
        if zone is not None:
            parts["zone_space"] = zone.group("space")
            zone_colon = ":" in zone.group("zone")
            rest = rest[zone.end():]
        if rest.strip():
            continue
        shape = ("guess", "MDY" if order == "DMY" else order, date.group("d"), tuple(
            (key, parts[key]) for key in ("dt", "td", "fd", "zone_space") if key in parts),
            tuple(key for key in ("hour", "minute", "second") if key in parts), zone_colon is not None)
        return Match(shape=shape, order=order, delimiter=date.group("d"), parts=parts,
                     fraction_digits=len(time.group("frac") or "") if time is not None else 0,
                     zone_colon=zone_colon)
    return None


def guess_time_format(values: Iterable[str]) -> str | None:
    """The one format Embulk's TimeFormatGuess would give ``values``, or None when none of them is a time."""
    groups: dict[tuple, list[Match]] = {}
    for value in values:
        if not value:
            continue
        for found in match(value):
            groups.setdefault(found.shape, []).append(found)
    if not groups:
        return None
    winner = max(groups.values(), key=len)  # the largest group; the first found on a tie
    merged = winner[0]
    for other in winner[1:]:
        if merged.zone_colon is None:
            merged.zone_colon = other.zone_colon
        if merged.parts.get("hour") == "%H" and other.parts.get("hour") == "%k":
            merged.parts["hour"] = "%k"
    if merged.order == "MDY" and any(m.order == "DMY" for m in winner):
        merged.order = "DMY"  # a value that can only be day-month-year says the others are too
    # The widest fraction, so %N where any value has more than milliseconds.
    merged.fraction_digits = max(m.fraction_digits for m in winner)
    return merged.format()
