"""Timestamps read as Embulk's parsers read them, case by case from their public tests.

Sources: embulk-util-timestamp TestTimestampFormatterParse (the ``ruby:`` parser's cases) and
embulk-util-rubytime TestRubyDateTimeFormatterParse, method names below. Each expected value is the
epoch second (and nanosecond) the test asserts; a case Embulk refuses is ``None``.

Where Embulk's two parsers disagree, we follow the strict Ruby one: an impossible day (Feb 31)
is refused rather than rolled over into March, and second 60 is the next second rather than 59.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pipeline.formats.types import normalize
from pipeline.schema import Column


def instant(value: str, fmt: str, timezone: str = "UTC") -> Decimal | None:
    try:
        text = normalize(value, Column("t", "timestamp", format=fmt, timezone=timezone))
    except ValueError:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = int(moment.timestamp() // 1)
    fraction = text.split(".")[1].split("+")[0].split("-")[0] if "." in text else ""
    return Decimal(whole) + (Decimal("0." + fraction) if fraction else 0)


CASES = [
    # test__strptime__3_iso8601 / testIso8601, testIso8601LeapSeconds
    ("%Y-%m-%d", "2001-02-03", 981158400),
    ("%Y-%m-%dT%H:%M:%S", "2001-02-03T23:59:60", 981244800),
    ("%Y-%m-%dT%H:%M:%S%Z", "2001-02-03T23:59:60+09:00", 981212400),
    ("%Y-%m-%dT%H:%M:%S", "2008-12-31T23:59:60", 1230768000),  # testRubyLeapSeconds
    # testEx
    ("%F", "2001-02-29", None),
    ("%FT%T", "2001-03-01T23:59:60", 983491200),
    ("%FT%T", "2001-03-01T23:59:61", None),
    ("%m/%d/%Y", "01-31-2011", None),
    # testRubyExcessDate / testExcessDate
    ("%Y-%m-%dT%H:%M:%S", "2018-02-31T00:00:00", None),
    ("%Y-%m-%dT%H:%M:%S", "2018-11-31T00:00:00", None),
    ("%Y-%m-%dT%H:%M:%S", "2018-13-01T00:00:00", None),
    ("%Y-%m-%dT%H:%M:%S", "2018-00-01T00:00:00", None),
    ("%Y-%m-%dT%H:%M:%S", "2016-02-29T00:00:00", 1456704000),
    ("%Y-%m-%dT%H:%M:%S", "2018-02-29T00:00:00", None),
    # test__strptime__fail / testFail
    ("%Y-%m-%d", "2001-13-31", None),
    ("%Y-%m-%d", "2001-12-00", None),
    ("%Y-%m-%d", "2001-12-32", None),
    ("%H:%M:%S", "24:59:59", 89999),
    ("%H:%M:%S", "24:60:59", None),
    ("%H:%M:%S", "24:59:61", None),
    ("%I:%M:%S", "00:59:59", None),
    ("%I:%M:%S", "13:59:59", None),
    # testRubyEpochWithFraction / testEpochWithFraction, testMinus, testOrdinary
    ("%s.%N", "1500000000.123456789", Decimal("1500000000.123456789")),
    ("%Q.%N", "1500000000456.111111111", Decimal("1500000000.567111111")),
    ("%s.%L", "1500000000.123", Decimal("1500000000.123")),
    ("%Q.%L", "1500000000456.111", Decimal("1500000000.567")),
    ("%s.%N", "-1.5", Decimal("-1.5")),
    ("%s.%N", "-1.000000001", Decimal("-1.000000001")),
    ("%s", "-86400", -86400),
    ("%s", "1416365189", 1416365189),  # testUnixtimeFormat
    ("%Q", "-999", Decimal("-0.999")),
    ("%Q", "-1000", -1),
    ("%Y-%m-%dT%H:%M:%S.%N", "2007-08-01T00:00:00.777777777", Decimal("1185926400.777777777")),
    ("%Y-%m-%dT%H:%M:%S.%N", "2007-08-01T00:00:00.", None),
    ("%FT%T.%N%Z", "2002-03-14T11:22:33.123456789-09:00", Decimal("1016137353.123456789")),
    # test_strptime, testSimple, test__strptime__3_date1, test__strptime__3_rfc822 / testDate, testRfc822
    ("%Y-%m-%dT%H:%M:%S%Z", "2002-03-14T11:22:33Z", 1016104953),
    ("%Y-%m-%dT%H:%M:%S%Z", "2002-03-14T11:22:33+09:00", 1016072553),
    ("%Y-%m-%d %H:%M:%S %z", "2014-11-19 02:46:29 +0000", 1416365189),
    ("%a %b %d %H:%M:%S %Z %Y", "Thu Jul 29 16:39:41 EST 1999", 933284381),
    ("%a, %d %b %Y %H:%M:%S %Z", "Thu, 29 Jul 1999 09:54:21 UT", 933242061),
    ("%a, %d %b %Y %H:%M:%S %Z", "Thu, 29 Jul 1999 09:54:21 GMT", 933242061),
    ("%a, %d %b %Y %H:%M:%S %Z", "Thu, 29 Jul 1999 09:54:21 +0900", 933209661),
    ("%a, %d %b %Y %H:%M:%S %Z", "Thu, 29 Jul 1999 09:54:21 -0430", 933258261),
    ("%a, %d %b %Y %H:%M:%S %Z", "Thu, 29 Jul 1999 09:54:21 PDT", 933267261),  # the ruby: parser's -07:00
    ("%Y-%m-%dT%H:%M:%S%Z", "2019-05-03T00:15:24-01:23:45", 1556847549),  # testOffsets
    # testRuby__strptime__3_etc / testEtc, testWidth, testComp
    ("%I:%M:%S %p", "09:02:11 AM", 32531),
    ("%I:%M:%S %p", "09:02:11 PM", 75731),
    ("%r", "12:33:44 AM", 2024),
    ("%r", "12:33:44 PM", 45224),
    ("%r", "11:33:44 PM", 84824),
    ("%I:%M:%S %p %Z", "11:33:44 PM -04:00", 99224),
    ("%d-%b-%y", "06-DEC-99", 944438400),
    ("%A %B %d %y", "sUnDay oCtoBer 31 01", 1004486400),
    ("%y", "99", 915148800),
    ("%y", "01", 978307200),
    ("%Y%m%e", "200608 6", 1154822400),
    ("%d", "13", 1036800),
    ("%b", "Mar", 5097600),
    ("%b %d", "Mar 13", 6134400),
    ("%H:%M", "23:55", 86100),
    ("%a %H:%M", "Sun 23:55", 86100),
    ("%b %H:%M", "Aug 23:55", 18402900),
    ("%B", "Jenuary", None),
    ("%A", "Sanday", None),
]


@pytest.mark.parametrize(("fmt", "value", "expected"), CASES)
def test_a_value_is_the_instant_embulks_ruby_parser_reads(fmt, value, expected):
    got = instant(value, fmt)
    assert got == (None if expected is None else Decimal(expected)), (fmt, value, got)


@pytest.mark.parametrize(("value", "zone", "expected"), [
    # testRubyDefaultOffsets / testDefaultOffsets: the default zone for a value without one
    ("2000-03-01T05:00:00", "+09:00", 951854400),
    ("2100-03-01T05:00:00", "+09:00", 4107528000),
    ("2000-03-01T05:00:00", "Asia/Tokyo", 951854400),
])
def test_a_value_without_a_zone_is_read_in_the_default_zone(value, zone, expected):
    assert instant(value, "%Y-%m-%dT%H:%M:%S", zone) == expected


@pytest.mark.parametrize(("fmt", "value", "expected"), [
    # testDefaultOffsetsWithParsingZones / testDefaultOffsetsWithZoneParsed: the value's own zone wins
    ("%Y-%m-%dT%H:%M:%S%Z", "2000-03-01T05:00:00Z", 951886800),
    ("%Y-%m-%dT%H:%M:%S%z", "2000-03-01T05:00:00Z", 951886800),
    ("%Y-%m-%dT%H:%M:%S%:z", "2000-03-01T05:00:00Z", 951886800),
    ("%Y-%m-%dT%H:%M:%S %Z", "2000-03-01T05:00:00 JST", 951854400),
    ("%Y-%m-%dT%H:%M:%S %Z", "2000-03-01T05:00:00 UTC", 951886800),
])
def test_a_zone_in_the_value_wins_over_the_default(fmt, value, expected):
    assert instant(value, fmt, "Europe/Paris") == expected
