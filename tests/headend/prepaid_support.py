"""Helpers for the prepaid tests: a store with a prepaid account on a two-version TOU tariff,
readings with balances, and signed payment notifications."""

from __future__ import annotations

import hashlib
import json

from headend.db.storage import Storage
from headend.ingest.store import READING_COLUMNS
from headend.prepaid.payments import sign

KEY = bytes(range(32))
MAR1 = 1709251200  # 2024-03-01 00:00 UTC
MAR2 = MAR1 + 86400
SECRET = b"merchant-secret-0123456789"

# valley 00:00-08:00 and 20:00-24:00 (rate 2), peak 08:00-20:00 (rate 1); prices change on
# 2024-03-02: peak 0.5 -> 0.8, valley 0.3 -> 0.333 per kWh (500 / 300 -> 800 / 333 milli-units)
TARIFF = """
format = "open-ami-tariff"
name = "Prepaid TOU"
currency = "CNY"
minor_unit = "0.01"

[[versions]]
periods = ["peak", "valley"]
[versions.calendar]
day_profiles = [[["00:00", "valley"], ["08:00", "peak"], ["20:00", "valley"]]]
week_profiles = [[0, 0, 0, 0, 0, 0, 0]]
[versions.energy]
peak = "0.5"
valley = "0.3"

[[versions]]
effective_from = 2024-03-02
periods = ["peak", "valley"]
[versions.calendar]
day_profiles = [[["00:00", "valley"], ["08:00", "peak"], ["20:00", "valley"]]]
week_profiles = [[0, 0, 0, 0, 0, 0, 0]]
[versions.energy]
peak = "0.8"
valley = "0.333"
"""


def prepaid_store(path, meter="m1", account="P1", tariff=TARIFF, billing="prepaid") -> Storage:
    store = Storage(str(path))
    add_prepaid(store, meter, account, tariff, billing)
    return store


def add_prepaid(store, meter="m1", account="P1", tariff=TARIFF, billing="prepaid", key=KEY) -> None:
    tid = "t-" + hashlib.sha256(tariff.encode()).hexdigest()[:12]
    store.add_tariff(tid, "t", tariff)
    if store.meter(meter) is None:
        store.add_meter(meter, key.hex(), "$7$x", now=0)
    row = {"account_id": account, "zone": "Z", "zone_kind": "regular", "billing": billing, "tariff_id": tid}
    store.add_account(row, meter, 0)


def add_readings(store, meter, rows, first_seq=1) -> None:
    """rows: [(ts, [peak Wh, valley Wh], balance or None)] as readings, seq from first_seq."""
    out = []
    for seq, (ts, imp, balance) in enumerate(rows, start=first_seq):
        r = dict(
            meter_id=meter,
            seq=seq,
            ts=ts,
            received_at=ts,
            interval=900,
            imp=json.dumps(imp),
            exp=json.dumps([0] * len(imp)),
            q="[0,0,0,0]",
            inst=None,
            balance=balance,
            flags=0,
            tariff=1,
            raw=b"r%d" % seq,
        )
        out.append(tuple(r[c] for c in READING_COLUMNS))
    store.insert_readings_batch(out)


def notification(secret=SECRET, **fields) -> bytes:
    body = {
        "payment_id": "PAY-1",
        "account_id": "P1",
        "amount": "30.00",
        "paid_at": "2024-03-01T09:00:00+08:00",
    }
    body.update(fields)
    body["sign"] = sign(body, secret)
    return json.dumps(body).encode()
