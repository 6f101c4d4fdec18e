"""Helpers for the bill-run tests: a real SQLite store with meters, tariffs, accounts, load
profiles and boundary readings written through the storage layer."""

from __future__ import annotations

import hashlib
import json

from headend.db.storage import Storage
from headend.ingest.store import READING_COLUMNS

FEB = 1706745600  # 2024-02-01 00:00 UTC
MAR = 1709251200  # 2024-03-01 00:00 UTC (February 2024 has 29 days = 696 hours)
JAN = 1704067200
NOW = MAR + 5 * 86400

TOU = """
format = "open-ami-tariff"
name = "TOU"
currency = "CNY"
periods = ["peak", "valley"]
[calendar]
day_profiles = [[["00:00", "valley"], ["08:00", "peak"], ["20:00", "valley"]]]
week_profiles = [[0, 0, 0, 0, 0, 0, 0]]
[energy]
peak = "0.5"
valley = "0.3"
[fixed]
monthly = "5.00"
"""

LADDER = """
format = "open-ami-tariff"
name = "Ladder"
currency = "CNY"
periods = ["all"]
[tiers]
max_kwh = [200, 400]
surcharge = [0, "0.05", "0.3"]
[energy]
all = "0.4883"
"""

DEMAND = """
format = "open-ami-tariff"
name = "Demand"
currency = "USD"
periods = ["all"]
[energy]
all = "0.1"
[demand]
monthly = "10"
"""


def tariff_id(text: str) -> str:
    return "t-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def new_store(where) -> Storage:
    """A store in directory ``where`` (bills.db), or on ``where`` itself when it is a database
    target string (the ``db_target`` fixture: a SQLite path or a PostgreSQL URL)."""
    return Storage(where if isinstance(where, str) else str(where / "bills.db"))


def add_account(
    store,
    account_id,
    tariff=TOU,
    zone="Z1",
    key=False,
    meter=None,
    email=None,
    webhook=None,
    billing="postpaid",
    from_ts=0,
):
    tid = tariff_id(tariff)
    store.add_tariff(tid, "t", tariff)
    meter = meter or "m-" + account_id
    if store.meter(meter) is None:
        store.add_meter(meter, "00" * 32, "$7$x", now=0)
    row = {
        "account_id": account_id,
        "zone": zone,
        "zone_kind": "key" if key else "regular",
        "billing": billing,
        "tariff_id": tid,
        "email": email,
        "webhook": webhook,
    }
    return store.add_account(row, meter, from_ts)


def hourly(store, meter, per_rate, start=FEB, end=MAR, source=lambda ts: "real", interval=3600):
    """per_rate(ts) -> [Wh of rate 1, rate 2, ...] for each interval in [start, end)."""
    rows = []
    for ts in range(start, end, interval):
        for r, wh in enumerate(per_rate(ts)):
            rows.append(
                {"interval_start": ts, "rate": r + 1, "wh_imp": wh, "wh_exp": 0, "source": source(ts)}
            )
    store.replace_load_profile(meter, interval, start, end, rows)


def reads(store, meter, pairs, state="valid"):
    """pairs: [(ts, [imp per rate])] as readings of ``meter`` (seq from 1), VEE state ``state``."""
    rows = []
    for seq, (ts, imp) in enumerate(pairs, start=1):
        row = dict(
            meter_id=meter,
            seq=seq,
            ts=ts,
            received_at=ts,
            interval=900,
            imp=json.dumps(imp),
            exp=json.dumps([0] * len(imp)),
            q="[0,0,0,0]",
            inst=None,
            balance=None,
            flags=0,
            tariff=None,
            raw=b"x%d" % seq,
        )
        rows.append(tuple(row[c] for c in READING_COLUMNS))
    store.insert_readings_batch(rows)
    store.set_vee_state(meter, [s for s in range(1, len(pairs) + 1)], state)


def tou_rates(ts: int, peak=300, valley=200) -> list[int]:
    """Energy on the rate the TOU calendar gives the hour (08:00-20:00 peak)."""
    hour = (ts % 86400) // 3600
    return [peak, 0] if 8 <= hour < 20 else [0, valley]
