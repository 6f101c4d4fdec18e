"""Alert lifecycle on a real database: de-duplication while open, acknowledge and resolve with
their audit, auto-resolve when a condition clears, a person's resolve silencing a condition
until it clears, event alerts raised once per event, and notifications queued once in the
bills' outbox and delivered by its ``send_pending``."""

import pytest

from headend.errors import AlertError
from headend.notify.outbox import send_pending
from tests.headend.alerts_support import (
    NOW,
    H,
    add_event,
    add_meter,
    fired,
    hourly,
    new_store,
    reading_row,
    run,
)


def silent_meter(db_target):
    store = new_store(db_target)
    add_meter(store)
    hourly(store, end=NOW - 6 * H)
    return store


def test_condition_alert_is_deduplicated_while_open(db_target):
    store = silent_meter(db_target)
    first = run(store)
    again = run(store, now=NOW + 600)
    [a] = store.alerts()
    assert (first["new"], again["new"], again["updated"]) == (1, 0, 1)
    assert (a["count"], a["first_seen"], a["last_seen"]) == (2, NOW, NOW + 600)
    assert a["evidence"]["silent_s"] == 6 * H - 5 + 600  # evidence refreshed
    assert [x["action"] for x in store.alert_audit(a["id"])] == ["open"]  # a refresh is not a change


def test_event_alert_merges_new_events_and_is_unchanged_without(db_target):
    store = new_store(db_target)
    add_meter(store)
    hourly(store)
    add_event(store, "m1", 5000, NOW - 3 * H, 3)
    run(store)
    assert run(store)["unchanged"] == 1
    add_event(store, "m1", 5001, NOW - 2 * H, 3)
    assert run(store)["updated"] == 1
    [a] = store.alerts()
    assert (a["count"], a["ref_seq"], a["state"]) == (2, 5001, "open")


def test_acknowledge_then_resolve_is_audited(db_target):
    store = silent_meter(db_target)
    run(store)
    [a] = store.alerts()
    store.set_alert_state(a["id"], "acknowledged", "alice", "looking", NOW + 10)
    run(store, now=NOW + 20)  # still silent: an acknowledged alert is updated, not reopened
    assert [x["state"] for x in store.alerts()] == ["acknowledged"]
    store.set_alert_state(a["id"], "resolved", "bob", "modem replaced", NOW + 30)
    trail = [
        (x["action"], x["from_state"], x["to_state"], x["user"], x["at"], x["note"])
        for x in store.alert_audit(a["id"])
    ]
    assert trail[1:] == [
        ("acknowledge", "open", "acknowledged", "alice", NOW + 10, "looking"),
        ("resolve", "acknowledged", "resolved", "bob", NOW + 30, "modem replaced"),
    ]
    assert trail[0][:4] == ("open", None, "open", "alerts")
    got = store.alert(a["id"])
    assert (got["state"], got["resolved_by"], got["resolved_at"]) == ("resolved", "bob", NOW + 30)


def test_bad_transitions_and_unknown_alert(db_target):
    store = silent_meter(db_target)
    run(store)
    [a] = store.alerts()
    store.set_alert_state(a["id"], "resolved", "bob", "done", NOW)
    with pytest.raises(AlertError, match="is resolved; it cannot become acknowledged"):
        store.set_alert_state(a["id"], "acknowledged", "bob", None, NOW)
    with pytest.raises(AlertError, match="unknown alert 99"):
        store.set_alert_state(99, "resolved", "bob", None, NOW)
    assert len(store.alert_audit(a["id"])) == 2  # nothing half-written


def test_condition_clears_and_alert_auto_resolves(db_target):
    store = silent_meter(db_target)
    run(store)
    store.insert_readings_batch([reading_row("m1", 9000, NOW + 1800, 10**6)])
    out = run(store, now=NOW + 1900)
    [a] = store.alerts()
    assert out["resolved"] == 1 and (a["state"], a["resolved_by"]) == ("resolved", "alerts")
    assert store.alert_audit(a["id"])[-1]["note"] == "condition cleared"


def test_person_resolve_silences_until_the_condition_clears(db_target):
    store = silent_meter(db_target)
    run(store)
    [a] = store.alerts()
    store.set_alert_state(a["id"], "resolved", "bob", "meter removed for repair", NOW + 10)
    assert run(store, now=NOW + 20)["silenced"] == 1 and len(store.alerts()) == 1
    store.insert_readings_batch([reading_row("m1", 9000, NOW + 1800, 10**6)])
    run(store, now=NOW + 1900)  # back: the incident is over
    assert store.alert(a["id"])["silenced"] == 0
    out = run(store, now=NOW + 1800 + 6 * H)  # silent again: a new incident
    assert out["new"] == 1 and [x["state"] for x in store.alerts()] == ["resolved", "open"]


def test_resolved_event_alert_is_not_raised_again_but_a_new_event_is(db_target):
    store = new_store(db_target)
    add_meter(store)
    hourly(store)
    add_event(store, "m1", 5000, NOW - 3 * H, 5)
    run(store)
    [a] = store.alerts()
    store.set_alert_state(a["id"], "resolved", "bob", "solar panel, export allowed", NOW)
    assert run(store)["new"] == 0
    add_event(store, "m1", 5001, NOW - H, 5)
    assert run(store)["new"] == 1
    second = fired(store, "reverse_energy")[-1]
    assert second["ref_seq"] == 5001 and second["evidence"]["count"] == 1


def test_notification_queued_once_and_delivered_through_the_outbox(db_target):
    store = silent_meter(db_target)
    assert run(store)["notifications"] == 1
    assert run(store, now=NOW + 60)["notifications"] == 0
    [row] = store.outbox()
    [a] = store.alerts()
    assert (row["alert_id"], row["bill_id"], row["channel"], row["state"]) == (
        a["id"],
        None,
        "console",
        "pending",
    )
    printed = []
    result = send_pending(store, NOW + 120, console=printed.append)
    assert result["sent"] == 1 and store.outbox()[0]["state"] == "sent"
    assert "comm_loss on meter m1" in printed[0] and "Suggested action" in printed[0]


def test_info_alerts_are_not_notified_and_channels_follow_the_config(db_target):
    store = new_store(db_target)
    add_meter(store, billing="prepaid")
    store.insert_readings_batch([reading_row("m1", 1, NOW - H, 100, balance=5_000)])  # low balance: info
    add_event(store, "m1", 2, NOW - H, 18)  # IC fault: critical
    run(store, notify_email="ops@example.org", notify_webhook="http://127.0.0.1:9/hook")
    rows = store.outbox()
    assert {r["alert_id"] for r in rows} == {fired(store, "metering_ic_fault")[0]["id"]}
    assert sorted((r["channel"], r["target"]) for r in rows) == [
        ("email", "ops@example.org"),
        ("webhook", "http://127.0.0.1:9/hook"),
    ]
