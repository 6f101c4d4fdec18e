"""Load-profile CSV: intervals, offsets, and errors naming the line."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from headend.billing import parse_profile_csv, read_profile_csv
from headend.errors import ProfileError


def ts(s: str) -> int:
    return int(datetime.fromisoformat(s).astimezone(UTC).timestamp())


def test_hourly_local_time():
    p = parse_profile_csv("timestamp,kwh\n2024-01-01T00:00,1.5\n2024-01-01T01:00,0\n", utc_offset=480)
    assert p.interval_s == 3600
    assert p.points == ((ts("2024-01-01T00:00+08:00"), D("1.5")), (ts("2024-01-01T01:00+08:00"), D(0)))


def test_offsets_are_converted_to_the_tariffs_local_time():
    # the same instants written in UTC, and across a DST change in New York (-05:00 -> -04:00)
    p = parse_profile_csv(
        "timestamp,kwh\n2023-12-31T16:00:00Z,1\n2023-12-31T17:00:00+00:00,2\n", utc_offset=480
    )
    assert p.points[0][0] == ts("2024-01-01T00:00+08:00")
    dst = "timestamp,kwh\n2024-03-10T01:00-05:00,1\n2024-03-10T03:00-04:00,1\n2024-03-10T04:00-04:00,1\n"
    assert parse_profile_csv(dst, utc_offset=-300).interval_s == 3600


def test_fifteen_minutes(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text(
        "\ufefftimestamp,kwh\r\n2024-01-01 00:00,1\r\n2024-01-01 00:15,2\r\n\r\n2024-01-01 00:30,3\r\n"
    )
    p = read_profile_csv(f)
    assert p.interval_s == 900 and [k for _, k in p.points] == [1, 2, 3]


@pytest.mark.parametrize(
    "body, message",
    [
        ("", "empty"),
        ("time,kwh\n", "line 1: the header must be 'timestamp,kwh'"),
        ("timestamp,kwh\n2024-01-01T00:00,1\n", "at least two rows"),
        ("timestamp,kwh\n2024-01-01T00:00,1\n2024-01-01T00:30,1\n", "line 3: .* 30 minutes .* 60 or 15"),
        (
            "timestamp,kwh\n2024-01-01T00:00,1\n2024-01-01T01:00,1\n2024-01-01T01:15,1\n",
            "line 4: .*15 minutes after the previous row, expected 60 minutes",
        ),
        (
            "timestamp,kwh\n2024-01-01T00:00,1\n2024-01-01T01:00,1\n2024-01-01T03:00,1\n",
            "line 4: .*120 minutes",
        ),
        (
            "timestamp,kwh\n2024-01-01T00:00,1\n2024-01-01T01:00,1\n2024-01-01T01:00,1\n",
            "line 4: .*not after",
        ),
        ("timestamp,kwh\n2024-01-01T00:00,1\nyesterday,1\n", "line 3: timestamp 'yesterday' is not ISO 8601"),
        ("timestamp,kwh\n2024-01-01T00:00,-1\n2024-01-01T01:00,1\n", "line 2: kwh '-1' must be"),
        ("timestamp,kwh\n2024-01-01T00:00,abc\n", "line 2: kwh 'abc' is not a number"),
        ("timestamp,kwh\n2024-01-01T00:00,1,2\n", "line 2: expected 2 fields"),
        (
            "timestamp,kwh\n2024-01-01T00:30,1\n2024-01-01T01:30,1\n",
            "line 2: timestamp is not on a 60-minute boundary",
        ),
        ("timestamp,kwh\n2024-01-01T00:00,1\n2024-01-01T01:00,nan\n", "line 3: kwh 'nan' must be"),
    ],
)
def test_bad_profiles_name_the_line(body, message):
    with pytest.raises(ProfileError, match=message):
        parse_profile_csv(body, name="p.csv")
