"""The head-end database schema, as sqlite-utils migrations (set ``headend``).

Applied in order by ``Storage`` when it opens a database; a migration never
changes once released: add a new one instead. Tables:

  meters        one row per provisioned meter: key (hex), broker password hash
                (mosquitto ``$7$`` string; the clear password is never kept),
                account, rating (VEE), online state, last status.
  readings      ``(meter_id, seq)``: every accepted reading once, with the raw
                frame and its VEE state (``pending`` until the VEE engine runs).
  events, acks  ``(meter_id, seq)``: accepted events and command acks.
  quarantine    every rejected frame with the reason it was refused.
  counters      ``name -> value``: accepted, duplicates, rejected:<reason>, ...
  settings      ``name -> value``: head-end broker credentials.
  vee_results, estimates, audit, load_profile: written by the VEE engine.

Times: ``ts`` and interval bounds are the meters' integer epoch seconds;
``received_at``, ``last_seen``, ``run_at``, ``created_at``, ``at`` are REAL epoch
seconds of the head-end's clock. Lists and maps are JSON text.
"""

from sqlite_utils import Database, Migrations

migrations = Migrations("headend")


@migrations()
def m001_ingest(db: Database) -> None:
    db["meters"].create(
        {
            "meter_id": str,
            "key": str,
            "mqtt_password_hash": str,
            "account": str,
            "created_at": float,
            "ib_ma": int,  # rating for the VEE impossible-power check, all nullable
            "imax_ma": int,
            "un_mv": int,
            "rates": int,
            "online": int,
            "last_seen": float,
            "status_seq": int,
            "fw": str,
            "board": str,
            "metering": str,
            "status_rates": int,
            "tariff": int,
            "boot_count": int,
        },
        pk="meter_id",
        not_null={"key", "mqtt_password_hash", "created_at"},
    )
    db["readings"].create(
        {
            "meter_id": str,
            "seq": int,
            "ts": int,
            "received_at": float,
            "interval": int,
            "imp": str,
            "exp": str,
            "q": str,
            "inst": str,
            "balance": int,
            "flags": int,
            "tariff": int,
            "raw": bytes,
            "vee_state": str,
        },
        pk=("meter_id", "seq"),
        not_null={"ts", "received_at", "interval", "imp", "exp", "q", "flags", "raw", "vee_state"},
        defaults={"vee_state": "pending", "flags": 0},
    )
    db["readings"].create_index(["meter_id", "ts"])
    db["readings"].create_index(["vee_state"])
    db["events"].create(
        {"meter_id": str, "seq": int, "ts": int, "code": int, "detail": str, "received_at": float},
        pk=("meter_id", "seq"),
        not_null={"ts", "code", "received_at"},
    )
    db["acks"].create(
        {
            "meter_id": str,
            "seq": int,
            "cmd_seq": int,
            "result": int,
            "detail": str,
            "ts": int,
            "received_at": float,
        },
        pk=("meter_id", "seq"),
        not_null={"cmd_seq", "result", "ts"},
    )
    db["quarantine"].create(
        {
            "id": int,
            "received_at": float,
            "topic": str,
            "meter_id": str,
            "reason": str,
            "detail": str,
            "payload": bytes,
        },
        pk="id",
        not_null={"received_at", "topic", "reason"},
    )
    db["quarantine"].create_index(["reason"])
    db["counters"].create({"name": str, "value": int}, pk="name", not_null={"value"})
    db["settings"].create({"name": str, "value": str}, pk="name")


@migrations()
def m002_vee(db: Database) -> None:
    db["vee_results"].create(
        {
            "meter_id": str,
            "ts": int,  # the reading's interval end (or day start for day rules)
            "rule": str,
            "seq": int,
            "outcome": str,  # pass | fail | warn (the engine's vocabulary)
            "detail": str,
            "run_at": float,
        },
        pk=("meter_id", "ts", "rule"),
        not_null={"outcome", "run_at"},
    )
    db["estimates"].create(
        {
            "meter_id": str,
            "interval_start": int,
            "interval_end": int,
            "method": str,
            "values": str,
            "replaced_by_real": int,
            "created_at": float,
        },
        pk=("meter_id", "interval_start", "interval_end"),
        not_null={"method", "values", "replaced_by_real", "created_at"},
        defaults={"replaced_by_real": 0},
    )
    db["audit"].create(
        {
            "id": int,
            "meter_id": str,
            "target": str,
            "old": str,
            "new": str,
            "reason": str,
            "user": str,
            "at": float,
        },
        pk="id",
        not_null={"meter_id", "target", "reason", "user", "at"},
    )
    db["audit"].create_index(["meter_id", "at"])
    db["load_profile"].create(
        {
            "meter_id": str,
            "interval_start": int,
            "interval_s": int,
            "rate": int,
            "wh_imp": int,  # integer Wh, as the meter registers count
            "wh_exp": int,
            "source": str,  # real | estimated | edited
        },
        pk=("meter_id", "interval_s", "interval_start", "rate"),
        not_null={"wh_imp", "wh_exp", "source"},
    )


@migrations()
def m003_billing(db: Database) -> None:
    """Accounts, tariffs, bill runs, bills, their audit trail and the notification outbox.

    Money and kWh are TEXT holding exact decimals ("12.34"); lists and maps are JSON.
    ``bills`` is UNIQUE on (account_id, cycle): a re-run can never issue a second bill.
    """
    db["tariffs"].create(
        {
            "tariff_id": str,  # "t-" + the first 12 hex digits of the text's SHA-256
            "name": str,
            "text": str,  # the tariff file as given (native TOML/JSON or URDB JSON)
            "effective_from": str,  # "YYYY-MM-DD" of the first version, None: always
            "effective_to": str,
            "created_at": float,
        },
        pk="tariff_id",
        not_null={"name", "text", "created_at"},
    )
    db["accounts"].create(
        {
            "account_id": str,
            "name": str,
            "address": str,
            "zone": str,
            "zone_kind": str,  # key | regular
            "billing": str,  # postpaid | prepaid
            "tariff_id": str,
            "email": str,
            "webhook": str,
            "created_at": float,
        },
        pk="account_id",
        not_null={"zone", "zone_kind", "billing", "tariff_id", "created_at"},
        foreign_keys=[("tariff_id", "tariffs", "tariff_id")],
    )
    db["accounts"].create_index(["billing", "account_id"])
    db["account_meters"].create(
        {"account_id": str, "meter_id": str, "from_ts": int, "to_ts": int},  # [from_ts, to_ts), to None: open
        pk=("account_id", "meter_id", "from_ts"),
        not_null={"from_ts"},
    )
    db["account_meters"].create_index(["meter_id"])
    db["bill_runs"].create(
        {
            "run_id": int,
            "cycle": str,  # YYYY-MM
            "state": str,  # running | finished
            "started_at": float,
            "finished_at": float,
            "seed": int,  # review sample seed, kept so a resumed run samples alike
            "policy": str,
            "cursor": str,  # last account_id of the last committed batch
            "batches": int,
            "counts": str,  # {"issued", "held", "review", "skipped"}
        },
        pk="run_id",
        not_null={"cycle", "state", "started_at", "seed", "policy", "batches", "counts"},
    )
    db["bill_runs"].create_index(["cycle", "state"])
    db["bills"].create(
        {
            "id": int,
            "account_id": str,
            "cycle": str,
            "run_id": int,
            "state": str,  # held | review | approved | issued
            "reasons": str,  # JSON list of why it is held or in review
            "tariff_id": str,
            "currency": str,
            "period_start": int,
            "period_end": int,
            "energy_kwh": str,
            "kwh_by_rate": str,  # JSON {"1": "12.345", ...}
            "sources": str,  # JSON {"real": s, "estimated": s, "edited": s} seconds of data
            "lines": str,  # JSON [{"item", "amount", "reason"?}]
            "total": str,
            "rule": str,  # the rounding rule, printed on the bill
            "rendered_text": str,  # the copy delivered to the customer (outbox)
            "rendered_html": str,
            "created_at": float,
            "updated_at": float,
            "issued_at": float,
        },
        pk="id",
        not_null={"account_id", "cycle", "run_id", "state", "reasons", "lines", "total", "created_at"},
    )
    db["bills"].create_index(["account_id", "cycle"], unique=True)
    db["bills"].create_index(["cycle", "state"])
    db["bill_audit"].create(
        {
            "id": int,
            "bill_id": int,
            "action": str,  # approve | correct | recompute
            "old_state": str,
            "new_state": str,
            "amount": str,
            "reason": str,
            "user": str,
            "at": float,
        },
        pk="id",
        not_null={"bill_id", "action", "reason", "user", "at"},
    )
    db["bill_audit"].create_index(["bill_id"])
    db["outbox"].create(
        {
            "id": int,
            "bill_id": int,
            "channel": str,  # console | webhook | email
            "target": str,
            "payload": str,  # JSON
            "state": str,  # pending | sent | failed
            "attempts": int,
            "next_attempt_at": float,
            "last_error": str,
            "created_at": float,
            "sent_at": float,
        },
        pk="id",
        not_null={"channel", "payload", "state", "attempts", "next_attempt_at", "created_at"},
        defaults={"attempts": 0},
    )
    db["outbox"].create_index(["bill_id", "channel"], unique=True)
    db["outbox"].create_index(["state", "next_attempt_at"])


@migrations()
def m004_prepaid(db: Database) -> None:
    """Prepaid ledger, payments, the command queue to meters, reconciliation alerts.

    Money is INTEGER milli-units of currency (the meter's unit); a credit is positive.
    ``payments.payment_id`` is the idempotency key of a payment; ``commands`` is UNIQUE on
    (meter_id, seq), the per-meter command seq kept in ``command_counters``.
    """
    db["command_counters"].create(
        {"meter_id": str, "seq": int, "topup_id": int},  # the last used of each
        pk="meter_id",
        not_null={"seq", "topup_id"},
    )
    db["commands"].create(
        {
            "id": int,
            "meter_id": str,
            "seq": int,
            "cmd": int,
            "args": str,  # JSON, int keys as strings
            "frame": bytes,  # the sealed COSE_Mac0, resent as is
            "state": str,  # queued | sent | acked | failed | expired
            "attempts": int,
            "expires": int,  # meter clock, the command's key 22
            "next_attempt_at": float,
            "result": int,  # the ack's result code
            "reason": str,  # why it failed or expired
            "ref": str,  # e.g. the payment id of a top-up
            "created_at": float,
            "sent_at": float,
            "done_at": float,
            "ack_ts": int,  # the ack's ts (meter clock): when the meter applied it
        },
        pk="id",
        not_null={"meter_id", "seq", "cmd", "args", "frame", "state", "attempts", "created_at"},
        defaults={"attempts": 0},
    )
    db["commands"].create_index(["meter_id", "seq"], unique=True)
    db["commands"].create_index(["state", "next_attempt_at"])
    db["payments"].create(
        {
            "payment_id": str,
            "account_id": str,
            "meter_id": str,
            "amount": int,
            "source": str,  # online | counter
            "paid_at": str,
            "body": str,  # the signed canonical string (online)
            "command_id": int,
            "received_at": float,
        },
        pk="payment_id",
        not_null={"account_id", "meter_id", "amount", "source", "received_at"},
    )
    db["prepaid_ledger"].create(
        {
            "id": int,
            "account_id": str,
            "kind": str,  # topup | debit | adjustment
            "amount": int,  # signed milli-units: credit > 0, debit < 0
            "ref": str,  # payment id, "seq A..B" of a debit, or the adjustment's reason
            "user": str,
            "at": float,
        },
        pk="id",
        not_null={"account_id", "kind", "amount", "at"},
    )
    db["prepaid_ledger"].create_index(["account_id", "id"])
    db["prepaid_state"].create(
        {
            "account_id": str,
            "meter_id": str,
            "seq": int,  # the last reading debited up to
            "ts": int,
            "imp": str,  # its import registers, JSON
            "acc": int,  # exact sum of Wh x milli-units/kWh: debited = acc // 1000
            "synced_at": float,
        },
        pk="account_id",
        not_null={"meter_id", "seq", "ts", "imp", "acc", "synced_at"},
    )
    db["prepaid_alerts"].create(
        {
            "id": int,
            "account_id": str,
            "meter_id": str,
            "seq": int,  # the reading whose balance disagreed
            "ts": int,
            "meter_balance": int,
            "ledger_balance": int,
            "difference": int,  # meter - ledger
            "threshold": int,
            "created_at": float,
        },
        pk="id",
        not_null={
            "account_id",
            "meter_id",
            "seq",
            "meter_balance",
            "ledger_balance",
            "difference",
            "created_at",
        },
    )
    db["prepaid_alerts"].create_index(["account_id", "seq"], unique=True)
