"""The head-end database schema, as sqlite-utils migrations (set ``headend``).

Applied in order by ``Storage`` when it opens a database; a migration never
changes once released: add a new one instead. Tables:

  meters        one row per provisioned meter: key (64 hex digits, sealed with the
                master key since m009: headend/db/keystore.py), broker password hash
                (mosquitto ``$7$`` string; the clear password is never kept),
                account, rating (VEE), online state, last status.
  readings      ``(meter_id, seq)``: every accepted reading once, with the raw
                frame and its VEE state (``pending`` until the VEE engine runs).
  events, acks  ``(meter_id, seq)``: accepted events and command acks.
  quarantine    rejected frames with the reason each was refused: a sample of at most
                ingest.store_quarantine.SAMPLE_PER_HOUR per meter per hour (m008);
  quarantine_hours  per (owner, hour, reason): refused frames kept and dropped (m008).
  counters      ``name -> value``: accepted, duplicates, rejected:<reason>, ...
  settings      ``name -> value``: head-end broker credentials (the password sealed, m009).
  vee_results, estimates, audit, load_profile: written by the VEE engine.

Times: ``ts`` and interval bounds are the meters' integer epoch seconds;
``received_at``, ``last_seen``, ``run_at``, ``created_at``, ``at`` are REAL epoch
seconds of the head-end's clock. Lists and maps are JSON text.
"""

import re

from sqlite_utils import Database, Migrations

from headend.db import keystore

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


@migrations()
def m005_alerts(db: Database) -> None:
    """Alerts, their audit trail, field work orders, manual (on-site) readings; alert
    notifications in the bills' outbox.

    ``alerts``: one row per incident; at most one open or acknowledged alert per
    (rule, meter_id, key) (a partial unique index). ``evidence`` is JSON. ``ref_seq`` is the
    highest meter event seq an event alert covers; ``silenced`` marks an alert a person
    resolved while its condition still held (cleared once the condition clears).
    ``manual_readings``: the marker and details of readings entered by field staff; the
    reading itself is a ``readings`` row with a negative seq (meters count from 1).
    ``outbox.alert_id``: an alert notification (``bill_id`` NULL), once per (alert, channel).
    """
    db["alerts"].create(
        {
            "id": int,
            "rule": str,
            "meter_id": str,
            "account_id": str,
            "key": str,
            "severity": str,  # info | warning | critical
            "state": str,  # open | acknowledged | resolved
            "summary": str,
            "action": str,  # the suggested action
            "evidence": str,  # JSON
            "count": int,  # events covered (event rules) or runs that saw the condition
            "ref_seq": int,
            "theft": int,
            "silenced": int,
            "work_order_id": int,
            "first_seen": float,
            "last_seen": float,
            "updated_at": float,
            "resolved_at": float,
            "resolved_by": str,
        },
        pk="id",
        not_null={"rule", "meter_id", "key", "severity", "state", "summary", "action", "evidence", "count",
                  "theft", "silenced", "first_seen", "last_seen", "updated_at"},
        defaults={"key": "", "count": 1, "theft": 0, "silenced": 0},
    )  # fmt: skip
    db.execute(
        "CREATE UNIQUE INDEX idx_alerts_active ON alerts (rule, meter_id, key) WHERE state != 'resolved'"
    )
    db["alerts"].create_index(["state", "meter_id"])
    db["alerts"].create_index(["meter_id", "rule", "key"])
    db["alert_audit"].create(
        {
            "id": int,
            "alert_id": int,
            "work_order_id": int,
            "action": str,  # open | severity | acknowledge | resolve | workorder_open | workorder_close
            "from_state": str,
            "to_state": str,
            "user": str,
            "at": float,
            "note": str,
        },
        pk="id",
        not_null={"action", "user", "at"},
    )
    db["alert_audit"].create_index(["alert_id"])
    db["work_orders"].create(
        {
            "id": int,
            "alert_id": int,
            "meter_id": str,
            "account_id": str,
            "location": str,  # the account's address and zone, else the meter id
            "reason": str,
            "evidence": str,  # JSON
            "state": str,  # open | closed
            "created_at": float,
            "closed_at": float,
            "closed_by": str,
            "findings": str,
        },
        pk="id",
        not_null={"meter_id", "location", "reason", "evidence", "state", "created_at"},
    )
    db["work_orders"].create_index(["state"])
    db["manual_readings"].create(
        {
            "meter_id": str,
            "seq": int,  # negative: the readings row it marks
            "ts": int,
            "imp": str,
            "exp": str,
            "exp_entered": int,  # 0: exp carried from the previous reading
            "user": str,
            "entered_at": float,
            "note": str,
            "work_order_id": int,
        },
        pk=("meter_id", "seq"),
        not_null={"ts", "imp", "exp", "exp_entered", "user", "entered_at"},
    )
    db["outbox"].add_column("alert_id", int)
    db["outbox"].create_index(["alert_id", "channel"], unique=True)


@migrations()
def m006_commands(db: Database) -> None:
    """The history of every command (``headend command show``): ``command_log``.

    Triggers on ``commands`` write it, so every path that changes a command (queueing, the
    dispatcher's ``mark_sent``, ``apply_acks``, ``expire_commands``) is logged in the same
    transaction without knowing about it: ``queued`` at ``created_at``; ``sent`` with the
    attempt number at ``sent_at``; ``acked`` / ``failed`` / ``expired`` with the ack's
    result and the reason at ``done_at``. Commands queued before this migration get their
    ``queued`` row here; their earlier sends were not recorded.
    """
    db["command_log"].create(
        {
            "id": int,
            "command_id": int,
            "at": float,  # head-end clock
            "event": str,  # queued | sent | acked | failed | expired
            "attempt": int,  # sends so far
            "result": int,  # the ack's result code (acked, failed)
            "reason": str,
        },
        pk="id",
        not_null={"command_id", "at", "event", "attempt"},
    )
    db["command_log"].create_index(["command_id", "id"])
    db.execute(
        "INSERT INTO command_log (command_id, at, event, attempt)"
        " SELECT id, created_at, 'queued', 0 FROM commands ORDER BY id"
    )
    db.execute(
        "CREATE TRIGGER command_log_queued AFTER INSERT ON commands BEGIN"
        " INSERT INTO command_log (command_id, at, event, attempt)"
        " VALUES (NEW.id, NEW.created_at, NEW.state, NEW.attempts); END"
    )
    db.execute(
        "CREATE TRIGGER command_log_sent AFTER UPDATE OF attempts ON commands"
        " WHEN NEW.attempts > OLD.attempts BEGIN"
        " INSERT INTO command_log (command_id, at, event, attempt)"
        " VALUES (NEW.id, coalesce(NEW.sent_at, NEW.created_at), 'sent', NEW.attempts); END"
    )
    db.execute(
        "CREATE TRIGGER command_log_done AFTER UPDATE OF state ON commands"
        " WHEN NEW.state IN ('acked', 'failed', 'expired') AND NEW.state IS NOT OLD.state BEGIN"
        " INSERT INTO command_log (command_id, at, event, attempt, result, reason)"
        " VALUES (NEW.id, coalesce(NEW.done_at, NEW.sent_at, NEW.created_at), NEW.state, NEW.attempts,"
        " NEW.result, NEW.reason); END"
    )


@migrations()
def m007_web_users(db: Database) -> None:
    """Users and sessions of the web dashboard (``headend web``).

    ``web_users``: one row per login; ``role`` is operator (may act) or viewer (reads only);
    the password is never kept, only its salted key (``kdf`` names the function and its
    parameters, e.g. ``scrypt:n=16384,r=8,p=1``; ``salt`` and ``password_hash`` are hex).
    ``web_sessions``: one row per signed-in browser, keyed by the SHA-256 (hex) of the random
    session cookie, so the table alone cannot be replayed; ``csrf`` is the session's
    synchronizer token that every POST form must carry; ``expires_at`` ends it.
    """
    db["web_users"].create(
        {
            "name": str,
            "role": str,  # operator | viewer
            "kdf": str,
            "salt": str,
            "password_hash": str,
            "created_at": float,
            "updated_at": float,
        },
        pk="name",
        not_null={"role", "kdf", "salt", "password_hash", "created_at"},
    )
    db["web_sessions"].create(
        {
            "token_hash": str,
            "user": str,
            "csrf": str,
            "ip": str,
            "created_at": float,
            "expires_at": float,
        },
        pk="token_hash",
        not_null={"user", "csrf", "created_at", "expires_at"},
        foreign_keys=[("user", "web_users", "name")],
    )
    db["web_sessions"].create_index(["expires_at"])
    db["web_sessions"].create_index(["user"])


@migrations()
def m008_quarantine_sample(db: Database) -> None:
    """A bounded quarantine: per (owner, hour, reason), refused frames ``kept`` as rows of
    ``quarantine`` and ``dropped`` (counted, not kept); headend/ingest/store_quarantine.py.

    ``owner`` is the frame's meter id, else the meter id segment of its topic, else "";
    ``hour`` is ``received_at`` rounded down to the hour (epoch seconds). Rows kept before this
    migration are counted as kept, so an hour already sampled does not get a second sample.
    """
    db["quarantine_hours"].create(
        {"owner": str, "hour": int, "reason": str, "kept": int, "dropped": int},
        pk=("owner", "hour", "reason"),
        not_null={"kept", "dropped"},
        defaults={"kept": 0, "dropped": 0},
    )

    def owner(meter_id, topic):  # as of this migration; the live rule is ingest.store_quarantine.owner
        if meter_id:
            return meter_id
        parts = str(topic).split("/", 3)
        if len(parts) > 2 and parts[:2] == ["ami", "v1"] and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", parts[2]):
            return parts[2]
        return ""

    kept: dict[tuple, int] = {}
    for meter_id, topic, received_at, reason in db.execute(
        "SELECT meter_id, topic, received_at, reason FROM quarantine"
    ):
        k = (owner(meter_id, topic), int(received_at // 3600) * 3600, reason)
        kept[k] = kept.get(k, 0) + 1
    db.conn.executemany(
        "INSERT INTO quarantine_hours (owner, hour, reason, kept, dropped) VALUES (?, ?, ?, ?, 0)",
        [k + (n,) for k, n in kept.items()],
    )


@migrations()
def m009_sealed_secrets(db: Database) -> None:
    """Secrets at rest: ``meters.key`` and the secret ``settings`` (``broker.headend_password``)
    are kept sealed with the head-end's master key, ``v1:<key id>:<base64>`` (AES-256-GCM, the
    row's identity as associated data; headend/db/keystore.py). This seals the values an older
    database holds in clear, with the master key ``Storage`` opened it with (its default key
    file is created here if there is none); a new database has nothing to seal.
    """
    keystore.seal_clear(db.conn, keystore.migrating_vault())


@migrations()
def m010_bill_void(db: Database) -> None:
    """Bills can be voided (``headend bill void``): state ``void``, audited in ``bill_audit``
    (action ``void``: who, when, why). A voided bill stays, and the account can be billed again
    for its cycle, so "never two bills for one account and cycle" becomes never two *live*
    ones: the unique index on (account_id, cycle) is replaced by a partial unique index over
    the bills that are not void (the bill run's upsert names it: ``ON CONFLICT (account_id,
    cycle) WHERE state != 'void'``)."""
    db.execute('DROP INDEX IF EXISTS "idx_bills_account_id_cycle"')
    db.execute(
        'CREATE UNIQUE INDEX "idx_bills_live_account_cycle" ON "bills" ("account_id", "cycle")'
        " WHERE state != 'void'"
    )
