"""Manual readings: registers read on site by field staff, entered so VEE treats them like
any other reading.

``enter_reading(store, meter_id, ts, imp, exp, user, now, ...)`` stores, in one
transaction, a ``readings`` row exactly as ingest would (vee_state ``pending``, so the next
``headend vee run`` validates it and uses it in the load profile) and its marker row in
``manual_readings`` (who, when, note, work order, whether exp was entered). Nothing on the
wire changes: no flag bit is borrowed to mark it.

Seq: a manual reading takes a NEGATIVE seq (-1, -2, ... per meter). docs/protocol.md has meters
count seq from 1 upwards, so the (meter_id, seq) key can never collide with a meter's
message, now or later, and ingest's idempotency stays untouched. Readings are ordered by
ts (then seq) everywhere, so the negative seq does not move it in time.

The meter's other registers are not read on site: ``exp`` (unless given) and ``q`` are
carried from the last earlier reading (zeros without one), so they neither decrease nor
invent energy. ``received_at`` is the reading's own time: it was read on site then, and the
entry time (``manual_readings.entered_at``) would make VEE's delivery-delay check call a
reading typed in later a clock problem. ``raw`` holds ``b"manual:"`` + the entry as JSON (there is no frame).
A ts where the meter already has a reading is refused (it would be a duplicate), as is a
ts after ``now`` or a register count that differs from the meter's.
"""

from __future__ import annotations

import json

from headend.errors import AlertError


def _regs(flag: str, values, n: int | None) -> list[int]:
    if not values or any(type(v) is not int or v < 0 for v in values):
        raise AlertError("%s: must be whole Wh per rate, not negative, got %r" % (flag, values), flag)
    if n is not None and len(values) != n:
        raise AlertError("%s: %d value(s) given, the meter has %d rate register(s)" % (flag, len(values), n),
                         flag)  # fmt: skip
    return list(values)


def enter_reading(
    store,
    meter_id: str,
    ts: int,
    imp: list[int],
    exp: list[int] | None,
    user: str,
    now: float,
    note: str | None = None,
    work_order_id: int | None = None,
    interval_s: int = 900,
) -> dict:
    if store.meter(meter_id) is None:
        raise AlertError("unknown meter %r" % meter_id, "meter_id")
    if ts > now:
        raise AlertError("--ts: %d is in the future (now %d)" % (ts, int(now)), "ts")
    if not user or not user.strip():
        raise AlertError("--by: who took the reading must be given", "by")
    if work_order_id is not None and store.work_order(work_order_id) is None:
        raise AlertError("unknown work order %r" % work_order_id, "work_order")
    with store.transaction():
        clash = store.reading_at(meter_id, ts)
        if clash is not None:
            msg = "--ts: meter %s already has a reading at %d (seq %d)" % (meter_id, ts, clash["seq"])
            raise AlertError(msg, "ts")
        prev = store.reading_before(meter_id, ts)
        exp_entered = exp is not None
        imp = _regs("--imp", imp, len(prev["imp"]) if prev else None)
        exp = (
            _regs("--exp", exp, len(imp))
            if exp is not None
            else list(prev["exp"])
            if prev
            else [0] * len(imp)
        )
        q = list(prev["q"]) if prev else [0, 0, 0, 0]
        seq = store.next_manual_seq(meter_id)
        entry = {"meter_id": meter_id, "ts": ts, "imp": imp, "exp": exp, "user": user, "note": note}
        reading = {
            "meter_id": meter_id, "seq": seq, "ts": ts, "received_at": ts,
            "interval": interval_s if ts % interval_s == 0 else ts % interval_s,
            "imp": json.dumps(imp), "exp": json.dumps(exp), "q": json.dumps(q), "inst": None,
            "balance": None, "flags": 0, "tariff": None, "vee_state": "pending",
            "raw": b"manual:" + json.dumps(entry, sort_keys=True).encode(),
        }  # fmt: skip
        marker = {
            "meter_id": meter_id, "seq": seq, "ts": ts, "imp": json.dumps(imp), "exp": json.dumps(exp),
            "exp_entered": int(exp_entered),
            "user": user, "entered_at": now, "note": note, "work_order_id": work_order_id,
        }  # fmt: skip
        store.insert_manual_reading(reading, marker)
        if work_order_id is not None:
            alert_id = store.work_order(work_order_id)["alert_id"]
            text = "seq %d at %d: imp %s" % (seq, ts, imp)
            store.add_alert_audit(alert_id, "manual_reading", None, None, user, now, text, work_order_id)
    return {k: reading[k] for k in ("meter_id", "seq", "ts", "interval", "vee_state")} | {
        "imp": imp,
        "exp": exp,
    }
