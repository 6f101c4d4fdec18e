"""Helpers for the alert tests: a real SQLite store, meters with accounts, hourly readings,
events, acks and relay commands, all written through Storage's public methods."""

from __future__ import annotations

import hashlib
import json

from headend.alerts.config import AlertConfig
from headend.alerts.engine import run_alerts
from headend.db.storage import Storage
from headend.ingest.store import READING_COLUMNS, IngestBatch

DAY = 86400
H = 3600
DAY0 = 1709251200  # 2024-03-01 00:00 UTC
NOW = DAY0 + 16 * DAY + 6 * H  # 2024-03-17 06:00: the last whole day is 2024-03-16
TARIFF = 'format = "open-ami-tariff"\nname = "Flat"\ncurrency = "CNY"\n'


def new_store(where) -> Storage:
    """A store in directory ``where`` (alerts.db), or on ``where`` itself when it is a database
    target string (the ``db_target`` fixture: a SQLite path or a PostgreSQL URL)."""
    return Storage(where if isinstance(where, str) else str(where / "alerts.db"))


def add_meter(store, meter_id="m1", account="A1", *, zone="Z", tariff="flat", billing="postpaid",
              address=None, online=True) -> None:  # fmt: skip
    """A meter (online after a status unless told otherwise) linked to an account."""
    store.add_meter(meter_id, "00" * 32, "$7$x", now=0)
    if account is not None:
        tid = "t-" + hashlib.sha256(tariff.encode()).hexdigest()[:12]
        store.add_tariff(tid, tariff, TARIFF + "# " + tariff)
        row = {"account_id": account, "zone": zone, "zone_kind": "regular", "billing": billing,
               "tariff_id": tid, "address": address}  # fmt: skip
        store.add_account(row, meter_id, 0)
    store.set_online(meter_id, True, DAY0, seq=1, fields={"fw": "1.0"})
    if not online:
        store.set_online(meter_id, False, DAY0 + 1)


def reading_row(meter_id, seq, ts, imp, *, exp=None, balance=None, flags=0, received_at=None, interval=H):
    imp = [imp] if isinstance(imp, int) else list(imp)
    r = dict(meter_id=meter_id, seq=seq, ts=ts, received_at=ts + 5 if received_at is None else received_at,
             interval=interval, imp=json.dumps(imp), exp=json.dumps(exp or [0] * len(imp)), q="[0,0,0,0]",
             inst=None, balance=balance, flags=flags, tariff=1, raw=b"r%d-%d" % (seq, ts))  # fmt: skip
    return tuple(r[c] for c in READING_COLUMNS)


def hourly(store, meter_id="m1", wh=1000, *, start=DAY0, end=NOW, seq0=1, base=0, **kw) -> int:
    """Hourly readings from start to end (inclusive); ``wh`` Wh per hour, or a function of the
    hour's end ts. Returns the last cumulative import."""
    rows, total, seq, ts = [], base, seq0, start
    while ts <= end:
        if ts > start:
            total += wh(ts) if callable(wh) else wh
        rows.append(reading_row(meter_id, seq, ts, total, **kw))
        seq, ts = seq + 1, ts + H
    store.insert_readings_batch(rows)
    return total


def add_event(store, meter_id, seq, ts, code, detail=None, received_at=None) -> None:
    batch = IngestBatch()
    det = None if detail is None else json.dumps(detail, separators=(",", ":"))
    batch.events.append((meter_id, seq, ts, code, det, ts + 5 if received_at is None else received_at))
    store.commit_batch(batch)


def add_ack(store, meter_id, seq, cmd_seq, result, ts) -> None:
    batch = IngestBatch()
    batch.acks.append((meter_id, seq, cmd_seq, result, None, ts, ts + 5))
    store.commit_batch(batch)


def relay_command(store, meter_id, state, acked_at) -> dict:
    """A relay command (0 open, 1 close) the meter acked as done at ``acked_at``."""
    cmd = store.enqueue_command(meter_id, lambda seq: (2, {0: state, 1: 0}, b"frame", None), acked_at - 60)
    add_ack(store, meter_id, 900000 + cmd["seq"], cmd["seq"], 0, acked_at)
    store.apply_acks(acked_at + 10)
    return cmd


def run(store, now=NOW, **cfg) -> dict:
    return run_alerts(store, now, AlertConfig(**cfg))


def fired(store, rule, meter_id=None) -> list[dict]:
    return [a for a in store.alerts(meter_id=meter_id) if a["rule"] == rule]


def rules_fired(store) -> set[str]:
    return {a["rule"] for a in store.alerts()}
