"""Event rules on a real database: tamper (cover, magnet with and without a consumption drop),
reverse energy, line/neutral mismatch, clock step, metering IC fault. Each fires on a
scenario made for it, with its severity and evidence, and stays quiet on a clean one."""

from tests.headend.alerts_support import (
    DAY,
    DAY0,
    NOW,
    H,
    add_event,
    add_meter,
    fired,
    hourly,
    new_store,
    rules_fired,
    run,
)


def clean(tmp_path):
    store = new_store(tmp_path)
    add_meter(store, address="1 Main St")
    hourly(store)
    return store


def test_clean_fleet_raises_nothing(tmp_path):
    store = clean(tmp_path)
    add_event(store, "m1", 5000, NOW - 2 * H, 2)  # power up: not an alert
    add_event(store, "m1", 5001, NOW - H, 11, {0: NOW - H, 1: NOW - H + 30})  # a 30 s clock step
    out = run(store)
    assert out["new"] == 0 and store.alerts() == []


def test_cover_opened_is_a_warning(tmp_path):
    store = clean(tmp_path)
    add_event(store, "m1", 5000, NOW - 3 * H, 3)
    add_event(store, "m1", 5001, NOW - 2 * H, 3)
    run(store)
    [a] = fired(store, "tamper")
    assert (a["severity"], a["key"], a["state"], a["theft"], a["count"]) == ("warning", "cover", "open", 0, 2)
    assert [e["seq"] for e in a["evidence"]["events"]] == [5000, 5001] and a["ref_seq"] == 5001
    assert a["account_id"] == "A1" and "cover" in a["summary"] and a["action"]


def test_magnet_with_import_drop_is_suspected_theft(db_target):
    store = new_store(db_target)
    add_meter(store, address="1 Main St")
    event_ts = DAY0 + 15 * DAY
    hourly(store, wh=lambda ts: 1000 if ts <= event_ts else 100)
    add_event(store, "m1", 5000, event_ts, 4)
    run(store)
    [a] = fired(store, "tamper")
    assert (a["severity"], a["key"], a["theft"]) == ("critical", "magnet", 1)
    c = a["evidence"]["consumption"]
    assert c["judged"] and c["dropped"] and c["before_wh_per_h"] == 1000.0 and c["after_wh_per_h"] == 100.0
    assert a["work_order_id"] is not None and "suspected theft" in a["summary"]


def test_magnet_without_drop_is_a_warning(tmp_path):
    store = clean(tmp_path)
    add_event(store, "m1", 5000, DAY0 + 15 * DAY, 4)
    run(store)
    [a] = fired(store, "tamper")
    assert (a["severity"], a["theft"], a["work_order_id"]) == ("warning", 0, None)
    assert a["evidence"]["consumption"]["judged"] and not a["evidence"]["consumption"]["dropped"]


def test_magnet_too_recent_to_judge_then_escalates(db_target):
    store = new_store(db_target)
    add_meter(store)
    event_ts = NOW - 2 * H
    hourly(store, wh=lambda ts: 1000 if ts <= event_ts else 0)
    add_event(store, "m1", 5000, event_ts, 4)
    run(store)
    [a] = fired(store, "tamper")
    assert a["severity"] == "warning" and not a["evidence"]["consumption"]["judged"]
    hourly(store, wh=0, start=NOW + H, end=NOW + 8 * H, seq0=10000, base=hourly_total(store))
    run(store, now=NOW + 8 * H + 60)
    [a] = fired(store, "tamper")  # the same alert, escalated, with its work order
    assert (a["severity"], a["theft"]) == ("critical", 1) and a["work_order_id"] is not None
    assert [x["action"] for x in store.alert_audit(a["id"])][:2] == ["open", "severity"]


def hourly_total(store):
    return store.alert_readings("m1", 0, 2**40)[-1]["imp"][0]


def test_reverse_energy(tmp_path):
    store = clean(tmp_path)
    add_event(store, "m1", 5000, NOW - H, 5)
    run(store)
    [a] = fired(store, "reverse_energy")
    assert (a["severity"], a["theft"], a["evidence"]["count"]) == ("warning", 0, 1)
    assert rules_fired(store) == {"reverse_energy"}


def test_line_neutral_mismatch_is_critical_theft_with_work_order(tmp_path):
    store = clean(tmp_path)
    add_event(store, "m1", 5000, NOW - H, 17, {0: 5000, 1: 100})
    run(store)
    [a] = fired(store, "line_neutral_mismatch")
    assert (a["severity"], a["theft"]) == ("critical", 1)
    assert a["evidence"]["events"][0]["detail"] == {"0": 5000, "1": 100}
    [wo] = store.work_orders()
    assert (wo["alert_id"], wo["meter_id"], wo["state"]) == (a["id"], "m1", "open")
    assert wo["location"] == "1 Main St (zone Z)"
    assert wo["evidence"] == a["evidence"]


def test_clock_step(tmp_path):
    store = clean(tmp_path)
    add_event(store, "m1", 5000, NOW - H, 11, {0: NOW - H - 3600, 1: NOW - H})
    run(store)
    [a] = fired(store, "clock_step")
    assert a["severity"] == "warning" and a["evidence"]["steps_s"] == [3600]
    assert rules_fired(store) == {"clock_step"}


def test_metering_ic_fault(tmp_path):
    store = clean(tmp_path)
    add_event(store, "m1", 5000, NOW - H, 18)
    run(store)
    [a] = fired(store, "metering_ic_fault")
    assert a["severity"] == "critical" and a["evidence"]["events"][0]["code"] == 18


def test_events_outside_the_window_are_ignored(tmp_path):
    store = clean(tmp_path)
    add_event(store, "m1", 5000, NOW - 8 * DAY, 18)  # received 8 days ago, the window is 7
    run(store)
    assert store.alerts() == []
