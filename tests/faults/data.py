"""Seeded data sets written straight through the storage layer: meters with 15-minute readings
(cumulative registers, two rates) and a sprinkling of what VEE must catch (gaps, a register that
goes down, a spike, a repeated timestamp), postpaid accounts on a TOU tariff, and load profiles."""

from __future__ import annotations

import json
import random

from headend.db.storage import Storage
from headend.ingest.store import READING_COLUMNS
from tests.headend.billrun_support import add_account, hourly, tou_rates

FEB = 1706745600  # 2024-02-01 00:00 UTC
MAR = 1709251200  # 2024-03-01 00:00 UTC
IV = 900


def reading_row(meter: str, seq: int, ts: int, imp: list[int], flags: int = 0, received_at=None) -> tuple:
    row = dict(
        meter_id=meter,
        seq=seq,
        ts=ts,
        received_at=ts + 5 if received_at is None else received_at,
        interval=IV,
        imp=json.dumps(imp),
        exp=json.dumps([0] * len(imp)),
        q="[0,0,0,0]",
        inst=None,
        balance=None,
        flags=flags,
        tariff=None,
        raw=b"%s:%d" % (meter.encode(), seq),
    )
    return tuple(row[c] for c in READING_COLUMNS)


def meter_series(meter: str, start: int, days: int, rng: random.Random, faults: bool = True) -> list[tuple]:
    """One meter's readings every 15 minutes for ``days`` days from ``start`` (an interval end)."""
    regs = [rng.randrange(10_000, 90_000), rng.randrange(10_000, 90_000)]
    out, seq = [], 0
    gap = set()
    if faults:
        g = rng.randrange(96, days * 96 - 96)
        gap = set(range(g, g + rng.choice((2, 6, 30))))  # short (linear) or long (like-day) gaps
    for i in range(days * 96):
        ts = start + i * IV
        hour = (ts % 86400) // 3600
        rate = 0 if 8 <= hour < 20 else 1
        regs[rate] += rng.randrange(20, 80)
        if faults and i == days * 48 + 200:
            regs[rate] += 4000  # a spike: one interval of 40 to 80 times the usual
        if i in gap:
            continue
        seq += 1
        imp = list(regs)
        if faults and i == days * 48:
            imp = [imp[0] - 5000, imp[1]]  # a register going down: fails, gets estimated
        out.append(reading_row(meter, seq, ts, imp))
    if faults:
        seq += 1
        dup = list(out[len(out) // 3])
        dup[1], dup[-1] = seq, b"%s:%d" % (meter.encode(), seq)
        out.append(tuple(dup))  # the same ts again under a new seq: the duplicate rule
    return out


def vee_fleet(db: str, meters: int, days: int, seed: int) -> None:
    rng = random.Random(seed)
    with Storage(db) as st:
        for i in range(meters):
            m = "v%03d" % i
            st.add_meter(m, "00" * 32, "$7$x", now=0)
            st.insert_readings_batch(meter_series(m, FEB + IV, days, rng, faults=i % 3 != 2))


def bill_fleet(db: str, accounts: int, seed: int) -> None:
    """Postpaid accounts with daily load profiles for February 2024 (some in a key zone, some
    with a hole that holds their bill)."""
    rng = random.Random(seed)
    with Storage(db) as st:
        for i in range(accounts):
            a = "acc%05d" % i
            add_account(st, a, key=(i % 17 == 0))
            peak, valley = rng.randrange(100, 400), rng.randrange(100, 300)
            hole = rng.randrange(FEB, MAR, 86400) if i % 23 == 5 else None
            hourly(
                st,
                "m-" + a,
                lambda ts, p=peak, v=valley, h=hole: [] if ts == h else tou_rates(ts, p, v),
                interval=86400,
            )
