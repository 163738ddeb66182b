"""Embulk's TimeFormatGuess, case by case from embulk-util-guess's TestTimeFormatGuess (method names below).

Every guessed format must also read its values back: each case is normalized with our reader.
"""

from __future__ import annotations

import pytest

from pipeline.formats.guess import value_type
from pipeline.formats.timeguess import guess_time_format
from pipeline.formats.types import normalize
from pipeline.schema import Column

SINGLE = {
    # testFormatDelims
    "2014-01-01 01:01:01.000000001": "%Y-%m-%d %H:%M:%S.%N",
    "2014-01-01 01:01:01.000001": "%Y-%m-%d %H:%M:%S.%N",
    "2014-01-01 01:01:01.001": "%Y-%m-%d %H:%M:%S.%L",
    "2014-01-01 01:01:01": "%Y-%m-%d %H:%M:%S",
    "2014-01-01 01:01": "%Y-%m-%d %H:%M",
    "2014-01-01": "%Y-%m-%d",
    "2014/01/01 01-01-01,000000001": "%Y/%m/%d %H-%M-%S,%N",
    "2014/01/01 01-01-01,001": "%Y/%m/%d %H-%M-%S,%L",
    "2014/01/01 01-01-01": "%Y/%m/%d %H-%M-%S",
    "2014/01/01 01-01": "%Y/%m/%d %H-%M",
    "2014/01/01": "%Y/%m/%d",
    "2014.01.01.01:01:01.000000001": "%Y.%m.%d.%H:%M:%S.%N",
    "2014.01.01.01:01:01.001": "%Y.%m.%d.%H:%M:%S.%L",
    "2014.01.01.01:01:01": "%Y.%m.%d.%H:%M:%S",
    "2014.01.01.01:01": "%Y.%m.%d.%H:%M",
    "2014.01.01": "%Y.%m.%d",
    "2014.01.01. 01:01:01,000000001": "%Y.%m.%d. %H:%M:%S,%N",
    "2014.01.01. 01:01:01,001": "%Y.%m.%d. %H:%M:%S,%L",
    "2014.01.01. 01:01:01": "%Y.%m.%d. %H:%M:%S",
    "2014.01.01. 01:01": "%Y.%m.%d. %H:%M",
    # testFormatYmdOrders
    "01/01/2014": "%m/%d/%Y",
    "01.01.2014": "%m.%d.%Y",
    "13/01/2014": "%d/%m/%Y",
    "21/01/2014": "%d/%m/%Y",
    "21/01/2014 01-01-01,000000001": "%d/%m/%Y %H-%M-%S,%N",
    "21/01/2014 01-01-01,001": "%d/%m/%Y %H-%M-%S,%L",
    "21/01/2014 01-01-01": "%d/%m/%Y %H-%M-%S",
    "21/01/2014 01-01": "%d/%m/%Y %H-%M",
    # testFormatBorders
    "2014-12-31 23:59:59.999999999": "%Y-%m-%d %H:%M:%S.%N",
    # testFormatIso8601
    "1981-04-05": "%Y-%m-%d",
    "2007-04-06T13": "%Y-%m-%dT%H",
    "2007-04-06T00:00": "%Y-%m-%dT%H:%M",
    "2007-04-05T24:00": "%Y-%m-%dT%H:%M",
    "2007-04-06T13:47:30": "%Y-%m-%dT%H:%M:%S",
    "2007-04-06T13:47:30Z": "%Y-%m-%dT%H:%M:%S%z",
    "2007-04-06T13:47:30+00": "%Y-%m-%dT%H:%M:%S%z",
    "2007-04-06T13:47:30+00:00": "%Y-%m-%dT%H:%M:%S%:z",
    "2007-04-06T13:47:30+0000": "%Y-%m-%dT%H:%M:%S%z",
    "2007-04-06T13:47:30-01": "%Y-%m-%dT%H:%M:%S%z",
    "2007-04-06T13:47:30-01:30": "%Y-%m-%dT%H:%M:%S%:z",
    "2007-04-06T13:47:30-0130": "%Y-%m-%dT%H:%M:%S%z",
    # testFormatRfc2822
    "Fri, 20 Feb 2015 22:02:34 UT": "%a, %d %b %Y %H:%M:%S %z",
    "Fri, 20 Feb 2015 22:02:34 GMT": "%a, %d %b %Y %H:%M:%S %z",
    "20 Feb 2015 22:02:34 GMT": "%d %b %Y %H:%M:%S %z",
    "20 Feb 2015 22:02 GMT": "%d %b %Y %H:%M %z",
    "Fri, 20 Feb 2015 22:02 GMT": "%a, %d %b %Y %H:%M %z",
    "20 Feb 2015": "%d %b %Y",
    "Fri, 20 Feb 2015": "%a, %d %b %Y",
    "Fri, 20 Feb 2015 22:02 +0000": "%a, %d %b %Y %H:%M %z",
    "Fri, 20 Feb 2015 22:02 +00:00": "%a, %d %b %Y %H:%M %:z",
    "Fri, 20 Feb 2015 22:02 +00": "%a, %d %b %Y %H:%M %z",
    # testFormatApacheClf
    "07/Mar/2004:16:05:50 -0800": "%d/%b/%Y:%H:%M:%S %z",
    # testFormatAnsiCAsctime
    "Fri May 11 21:44:53 2001": "%a %b %e %H:%M:%S %Y",
}


@pytest.mark.parametrize(("value", "expected"), SINGLE.items())
def test_one_value_gets_embulks_format_and_reads_back_with_it(value, expected):
    assert guess_time_format([value]) == expected
    normalize(value, Column("t", "timestamp", format=expected))


@pytest.mark.parametrize(("values", "expected"), [
    # testMultiple
    (["Fri, 20 Feb 2015 22:02 +00", "Fri, 20 Feb 2015 22:03 +00:00", "Fri, 20 Feb 2015 22:04 Z",
      "Fri, 20 Feb 2015 22:05 +0000"], "%a, %d %b %Y %H:%M %z"),
    (["Fri, 20 Feb 2016 22:00 Z", "Fri, 20 Feb 2016 22:01 -05:00", "Fri, 20 Feb 2016 22:02 +01:00",
      "Fri, 20 Feb 2016 22:03 +01:00", "Fri, 20 Feb 2016 22:03:03 +00:00", "Fri, 20 Feb 2016 22:04:04 +03:00",
      "Fri, 20 Feb 2016 22:04 +12:00", "Fri, 20 Feb 2016 22:05 +02:00", "Fri, 20 Feb 2016 22:06 +10",
      "Fri, 20 Feb 2016 22:06 Z", "Fri, 20 Feb 2016 22:07 +1230"], "%a, %d %b %Y %H:%M %:z"),
    # testFormatMergeFrequency
    (["2014-01-01", "2014-01-01 00:00:00", "2014-01-01 00:00:00"], "%Y-%m-%d %H:%M:%S"),
    (["2014-01-01 00:00:00 +0000", "2014-01-01 00:00:00 +0000", "2014-01-01 00:00:00 +00:00"],
     "%Y-%m-%d %H:%M:%S %z"),
    # testFormatMergeDmy
    (["01/01/2014"], "%m/%d/%Y"),
    (["01/01/2014", "01/01/2014", "13/01/2014"], "%d/%m/%Y"),
    (["01.01.2014", "01.01.2014", "13.01.2014"], "%d.%m.%Y"),
    (["01/01/2014", "01/01/2014", "13.01.2014"], "%m/%d/%Y"),
    # testMergeTimeFormat
    (["2021-12-1 24:30:30", "2021-12-1  4:30:30", "2021-12-1 24:30:30", "2021-12-1 24:30:30"],
     "%Y-%m-%d %k:%M:%S"),
])
def test_several_values_get_the_format_of_the_largest_group_completed_from_the_others(values, expected):
    assert guess_time_format(values) == expected


@pytest.mark.parametrize("value", ["2020@12@12", "hello", "12345", "2014-13-01", ""])
def test_what_is_not_a_time_has_no_format(value):
    assert guess_time_format([value]) is None


def test_a_column_is_a_timestamp_only_when_every_value_reads_with_the_guessed_format():
    # Embulk would type it %Y-%m-%d %H:%M:%S and reject the first row at load; a string loses nothing.
    assert value_type(["2014-01-01", "2014-01-01 00:00:00", "2014-01-01 00:00:00"]) == ("string", None)
    assert value_type(["13/01/2014", "01/02/2014"]) == ("timestamp", "%d/%m/%Y")
    assert value_type(["Fri, 20 Feb 2015 22:02:34 GMT"]) == ("timestamp", "%a, %d %b %Y %H:%M:%S %z")
