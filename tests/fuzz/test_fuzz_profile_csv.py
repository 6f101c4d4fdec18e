"""Fuzzing the load-profile CSV import (headend.billing.parse_profile_csv) and billing what it
accepts (headend.billing.bill_profile), as ``headend bill-profile`` does.

Seeds: generated valid profiles (hourly or 15-minute, local or with offsets, decimal kWh).
The fuzzer edits their text with CSV/ISO 8601 tokens (NUL, quotes, huge fields, huge and
non-finite numbers, bad dates, offsets).

Documented errors: ``ProfileError`` from the import and ``BillingError`` from the bill
(both ``BillingError``, the CLI's ``error: ...``). Properties: nothing else is raised, each
call time-bounded; a generated profile round-trips to its exact points; an accepted profile
steps by one interval; every bill of an accepted profile adds up (total = sum of lines).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from headend.billing import bill_profile, parse_profile_csv, parse_tariff
from headend.errors import BillingError, ProfileError
from tests.fuzz.support import bounded, fuzz, mutated_text

TARIFF = parse_tariff(
    """
format = "open-ami-tariff"
currency = "CNY"
utc_offset = 480
periods = ["peak", "valley"]
[calendar]
day_profiles = [[["00:00", "valley"], ["08:00", "peak"], ["20:00", "valley"]]]
week_profiles = [[0, 0, 0, 0, 0, 0, 0]]
[tiers]
max_kwh = [200, 400]
surcharge = [0, "0.05", "0.3"]
[energy]
peak = "0.5"
valley = "0.3"
[demand]
monthly = "10"
[minimum]
monthly = "3"
"""
)


@st.composite
def profiles(draw):
    """(csv text, utc_offset, [(unix ts, Decimal kWh)])."""
    interval = draw(st.sampled_from([900, 3600]))
    offset = draw(st.sampled_from([0, 480, -300, 330]))
    n = draw(st.integers(2, 60))
    start = draw(st.integers(0, 2 * 10**9 // interval)) * interval - offset * 60
    kwh = draw(st.lists(st.decimals(0, 10**6, places=3), min_size=n, max_size=n))
    written = draw(st.sampled_from(["local", "Z", "+08:00", "-05:30"]))
    lines = ["timestamp,kwh"]
    for i in range(n):
        ts = start + i * interval
        if written == "local":
            stamp = datetime.fromtimestamp(ts + offset * 60, UTC).replace(tzinfo=None).isoformat()
        else:
            tz = UTC if written == "Z" else timezone(timedelta(minutes=480 if written == "+08:00" else -330))
            stamp = datetime.fromtimestamp(ts, tz).isoformat()
        lines.append("%s,%s" % (stamp, kwh[i]))
    return "\n".join(lines) + "\n", offset, [(start + i * interval, kwh[i]) for i in range(n)]


NUMBERS = ["1e999999999", "-0", "0e-999999999", "1e40", "999999999.999", "1000000000", "NaN", "sNaN",
           "-1e-9", "Infinity", "1_0", " 5 ", "0x10", "1e99999999999999999999"]  # fmt: skip


@st.composite
def hostile_kwh(draw):
    """A valid profile with one row's kWh replaced by a hostile number."""
    text, offset, points = draw(profiles())
    lines = text.splitlines()
    i = draw(st.integers(1, len(lines) - 1))
    lines[i] = lines[i].split(",")[0] + "," + draw(st.sampled_from(NUMBERS))
    return "\n".join(lines), offset


@fuzz(200)
@given(profiles())
def test_generated_profiles_round_trip(case):
    text, offset, points = case
    p = bounded(parse_profile_csv, text, offset)
    assert list(p.points) == points and p.interval_s == points[1][0] - points[0][0]


def check(text: str, offset: int, seen: set) -> None:
    try:
        p = bounded(parse_profile_csv, text, offset)
    except ProfileError as e:
        seen.add("profile:" + re.sub(r"'.*'", "V", str(e).split(": ", 1)[1])[:16])
        return
    seen.add("ok")
    assert all(b[0] - a[0] == p.interval_s for a, b in zip(p.points, p.points[1:], strict=False))
    try:
        bill = bounded(bill_profile, TARIFF, p)
    except BillingError:
        seen.add("bill:refused")
        return
    seen.add("bill:ok")
    for m in bill.months:
        assert isinstance(m.total, Decimal) and m.total.is_finite()


def test_mutated_profiles_raise_only_profile_or_billing_errors():
    seen: set = set()

    @fuzz(400)
    @given(profiles().flatmap(lambda c: st.tuples(mutated_text(c[0]), st.just(c[1]))) | hostile_kwh())
    def run(case):
        check(case[0], case[1], seen)

    run()
    assert {"ok", "bill:ok"} <= seen and len(seen) >= 6, seen


def test_seeds_of_the_bugs_found_are_profile_errors():
    """Each was an undocumented exception before (csv.Error; decimal.InvalidOperation in the bill)."""
    for text in (
        "timestamp,kwh\n" + "x" * 200_000 + ",1\n",
        "timestamp,kwh\n2024-01-01T00:00,1e999999999\n2024-01-01T01:00,1\n",
    ):
        try:
            bounded(parse_profile_csv, text)
        except ProfileError:
            continue
        raise AssertionError("accepted: %r" % text[:60])
