"""Prepaid operations over the storage layer: credit a payment, sync an account's ledger.

``credit(store, payment_id, amount, now, account_id=None, meter_id=None, ...)`` records a
payment once (idempotent on ``payment_id``) with its ledger entry and a top-up command for
the account's meter, sealed with the meter's key, queued for ``headend dispatch``.

``sync(store, account_id, threshold, now)`` debits the ledger for the readings since the
last sync (``headend.prepaid.ledger.advance``) and reconciles the latest reported balance:
a difference beyond ``threshold`` milli-units becomes a ``prepaid_alerts`` row. While a
top-up is in flight the meter's balance may or may not include it, so reconciliation waits.
"""

from __future__ import annotations

from headend.billing import parse_tariff
from headend.errors import PrepaidError
from headend.meters import privacy
from headend.prepaid.ledger import MILLI, Cursor, advance, mismatch, price_schedule
from protocol import commands, messages

DEFAULT_TTL = 7 * 86400  # s a top-up command stays valid (its key 22 ``expires``)
DEFAULT_THRESHOLD = 100  # milli-units of disagreement tolerated before an alert


def credit(
    store,
    payment_id: str,
    amount: int,
    now: float,
    *,
    account_id: str | None = None,
    meter_id: str | None = None,
    source: str = "counter",
    paid_at: str | None = None,
    body: str | None = None,
    ttl: int = DEFAULT_TTL,
) -> dict:
    """Record the payment and queue its top-up; the stored top-up (``duplicate`` True on a replay)."""
    if not payment_id or len(payment_id) > 128:
        raise PrepaidError("payment id must be 1..128 characters", "payment_id")
    if ttl < 1:
        raise PrepaidError("ttl must be at least 1 s", "ttl")
    if account_id is None:
        account_id = store.prepaid_account_of(meter_id)
    linked = store.prepaid_meter(account_id)
    if meter_id is not None and meter_id != linked:
        raise PrepaidError("meter %r is not account %r's meter" % (meter_id, account_id), "meter_id")
    meter = store.meter(linked)
    ts = int(now)

    def make_command(seq: int, topup_id: int):
        args = commands.topup_args(topup_id, amount)
        msg = messages.command(seq, ts, messages.CMD_TOPUP, args, expires=ts + ttl)
        return messages.CMD_TOPUP, args, privacy.seal_command(meter, msg), ts + ttl

    payment = {
        "payment_id": payment_id,
        "account_id": account_id,
        "meter_id": linked,
        "amount": amount,
        "source": source,
        "paid_at": paid_at,
        "body": body,
    }
    return store.record_credit(payment, make_command, now)


def sync(store, account_id: str, threshold: int, now: float) -> dict:
    meter_id = store.prepaid_meter(account_id)
    account = store.account(account_id)
    schedule = price_schedule(
        parse_tariff(store.tariff(account["tariff_id"])["text"], name=account["tariff_id"])
    )
    state = store.prepaid_cursor(account_id)
    old_acc = state["acc"] if state else 0
    cursor = None
    if state is not None and state["meter_id"] == meter_id:
        cursor = Cursor(state["seq"], state["ts"], tuple(state["imp"]), state["acc"])
    link_from = next(
        m["from_ts"] for m in account["meters"] if m["meter_id"] == meter_id and m["to_ts"] is None
    )
    readings = store.readings(meter_id, from_ts=cursor.ts if cursor else link_from)
    new, steps, notes = advance(cursor, readings, schedule, base_acc=old_acc)
    out = {"account_id": account_id, "meter_id": meter_id, "debited": 0, "notes": notes, "reconciled": None}
    if new is None:
        out["balance"] = store.ledger_balance(account_id)
        out["notes"].append("no readings yet")
        return out
    debit = new.acc // MILLI - old_acc // MILLI
    ref = "seq %d..%d" % (cursor.seq if cursor else steps[0].seq, new.seq)
    alerts = []
    checked = [s for s in steps if s.balance is not None]
    if checked:
        last = checked[-1]
        if store.topups_in_flight(account_id):
            out["reconciled"] = {"seq": last.seq, "deferred": "a top-up is in flight"}
        else:
            expected = store.credits_on_meter(account_id, last.ts) - last.acc // MILLI
            diff = mismatch(last.balance, expected, threshold)
            out["reconciled"] = {
                "seq": last.seq,
                "meter_balance": last.balance,
                "ledger_balance": expected,
                "difference": last.balance - expected,
                "alert": diff is not None,
            }
            if diff is not None:
                alerts.append(
                    {
                        "seq": last.seq,
                        "ts": last.ts,
                        "meter_balance": last.balance,
                        "ledger_balance": expected,
                        "difference": diff,
                        "threshold": threshold,
                    }
                )
    cur = {"seq": new.seq, "ts": new.ts, "imp": new.imp, "acc": new.acc}
    store.commit_sync(account_id, meter_id, cur, debit, ref, alerts, now)
    out["debited"] = debit
    out["balance"] = store.ledger_balance(account_id)
    return out
