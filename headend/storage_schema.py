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
