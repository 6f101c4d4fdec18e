"""Read what the rules need, one ``MeterInput`` per meter, through the storage layer.

``gather(store, now, cfg) -> [MeterInput]``. Only data the head-end had at ``now`` is
read (readings and events received at or before it), so ``--now`` replays a past run.
Two clocks: a reading's ``ts`` is the meter's, its ``received_at`` the head-end's. The rules'
reading window is meter time (usage, history); the last reading received (``MeterInput.last``)
is found by the head-end's clock, whatever its ts, for comm_loss and clock_drift.
The prepaid reconciliation repeats ``headend prepaid sync``'s arithmetic without writing:
from the account's sync cursor (or its first reading) it prices the later readings
(``headend.prepaid.ledger.advance``) and compares the latest reported balance with the
ledger's credits the meter had applied by then minus the debits up to it.
"""

from __future__ import annotations

from headend.alerts.config import DAY, AlertConfig
from headend.alerts.model import MeterInput
from headend.alerts.usage import daily_usage, local_day
from headend.billing import parse_tariff
from headend.errors import BillingError, PrepaidError
from headend.prepaid.ledger import MILLI, Cursor, Step, advance, price_schedule

ACCOUNT_FIELDS = ("account_id", "name", "billing", "tariff_id", "zone", "address", "link_from")


def _balance(store, meter_id: str, account: dict, now: float) -> dict | None:
    """The reconciliation of the latest reading with a balance (None: nothing to check)."""
    if account["billing"] != "prepaid":
        return None
    state = store.prepaid_cursor(account["account_id"])
    cursor = None
    if state is not None and state["meter_id"] == meter_id:
        cursor = Cursor(state["seq"], state["ts"], tuple(state["imp"]), state["acc"])
    start = cursor.ts if cursor else (account["link_from"] or 0)
    readings = store.alert_readings(meter_id, start, now)
    try:
        text = store.tariff(account["tariff_id"])["text"]
        schedule = price_schedule(parse_tariff(text, name=account["tariff_id"]))
        _, steps, _ = advance(cursor, readings, schedule, base_acc=state["acc"] if state else 0)
    except (BillingError, PrepaidError, TypeError):
        return None  # an unpriceable tariff or reading: `prepaid sync` reports it
    if cursor is not None:  # the cursor's own reading is the first checkpoint
        at = [r for r in readings if r["seq"] == cursor.seq]
        steps = [Step(cursor.seq, cursor.ts, cursor.acc, at[0]["balance"] if at else None)] + steps
    checked = [s for s in steps if s.balance is not None]
    if not checked:
        return None
    last = checked[-1]
    expected = store.credits_on_meter(account["account_id"], last.ts) - last.acc // MILLI
    return {
        "seq": last.seq,
        "ts": last.ts,
        "meter_balance": last.balance,
        "expected": expected,
        "in_flight": store.topups_in_flight(account["account_id"]) > 0,
    }


def gather(store, now: float, cfg: AlertConfig) -> list[MeterInput]:
    marks = store.alert_event_marks()
    from_ts = int(now) - cfg.lookback_days * DAY
    today = local_day(int(now), cfg.utc_offset_minutes)
    out = []
    for row in store.alert_meters():
        meter_id = row["meter_id"]
        account = {k: row[k] for k in ACCOUNT_FIELDS} if row["account_id"] else None
        readings = store.alert_readings(meter_id, from_ts, now)
        m = MeterInput(
            meter_id=meter_id,
            meter=row,
            account=account,
            readings=readings,
            last=store.last_received_reading(meter_id, now),
            events=store.alert_events(meter_id, now - cfg.event_window_s, now),
            seen={(r, k): s for (mid, r, k), s in marks.items() if mid == meter_id},
            relay=store.last_relay_command(meter_id),
            vee_failed=store.vee_failed_readings(meter_id, int(now - cfg.vee_window_s)),
        )
        first_day = today - 1 - cfg.fluct_history_days
        m.daily = daily_usage(m.usable, first_day, today - 1, cfg.utc_offset_minutes,
                              cfg.day_boundary_tolerance_s)  # fmt: skip
        if account is not None:
            m.balance = _balance(store, meter_id, account, now)
        out.append(m)
    return out
