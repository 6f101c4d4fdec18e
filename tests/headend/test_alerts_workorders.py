"""Field work orders from suspected theft, closed with findings; manual readings taken on site
stored like ingested ones (negative seq, marker row) and validated by the VEE engine."""

import pytest

from headend.alerts.workorders import close, location
from headend.errors import AlertError
from headend.vee.engine import run_vee
from headend.vee.manual import enter_reading
from tests.headend.alerts_support import NOW, H, add_event, add_meter, hourly, new_store, reading_row, run

T0 = NOW - 2 * H


def theft_store(db_target, **meter):
    store = new_store(db_target)
    add_meter(store, **meter)
    hourly(store)
    add_event(store, "m1", 5000, NOW - H, 17)
    run(store)
    return store


def test_theft_opens_one_work_order_and_closing_resolves_the_alert(db_target):
    store = theft_store(db_target, address="7 Mill Lane")
    run(store, now=NOW + 60)
    [wo] = store.work_orders()  # one, however many runs
    [a] = store.alerts()
    assert (a["work_order_id"], wo["alert_id"], wo["reason"].split(":")[0]) == (
        wo["id"],
        a["id"],
        "line_neutral_mismatch",
    )
    assert [x["action"] for x in store.alert_audit(a["id"])] == ["open", "workorder_open"]
    done = close(store, wo["id"], "crew-3", "bypass cable removed, seal replaced", NOW + 3600)
    assert (done["state"], done["closed_by"], done["findings"]) == (
        "closed",
        "crew-3",
        "bypass cable removed, seal replaced",
    )
    a = store.alert(a["id"])
    assert (a["state"], a["resolved_by"]) == ("resolved", "crew-3")
    trail = store.alert_audit(a["id"])
    assert [x["action"] for x in trail][-2:] == ["workorder_close", "resolve"]
    assert trail[-1]["note"] == "work order %d closed: bypass cable removed, seal replaced" % wo["id"]
    with pytest.raises(AlertError, match="already closed"):
        close(store, wo["id"], "crew-3", "again", NOW + 7200)
    with pytest.raises(AlertError, match="findings"):
        close(store, wo["id"], "crew-3", "  ", NOW + 7200)


def test_work_order_location_without_an_address():
    assert location("m9", {"zone": "North", "address": None}) == "zone North, meter m9"
    assert location("m9", None) == "meter m9"


def gap_store(db_target):
    """15-minute readings 00:00 .. 01:00 with 00:30 missing."""
    store = new_store(db_target)
    add_meter(store)
    rows = [
        reading_row("m1", s, T0 + k * 900, 1000 + 10 * k, interval=900)
        for s, k in ((1, 0), (2, 1), (3, 3), (4, 4))
    ]
    store.insert_readings_batch(rows)
    return store


def test_manual_reading_flows_through_vee(db_target):
    store = gap_store(db_target)
    got = enter_reading(store, "m1", T0 + 1800, [1020], None, "crew-3", NOW, note="on site")
    assert (got["seq"], got["vee_state"], got["interval"], got["exp"]) == (-1, "pending", 900, [0])
    [marker] = store.manual_readings("m1")
    assert (marker["seq"], marker["user"], marker["note"], marker["exp_entered"]) == (
        -1,
        "crew-3",
        "on site",
        0,
    )
    out = run_vee(store, "m1", NOW)
    states = {r["seq"]: r["vee_state"] for r in store.readings("m1")}
    assert states == {-1: "valid", 1: "valid", 2: "valid", 3: "valid", 4: "valid"}
    profile = [(p["interval_start"] - T0, p["wh_imp"], p["source"]) for p in store.load_profile("m1", 900)]
    assert profile == [(0, 10, "real"), (900, 10, "real"), (1800, 10, "real"), (2700, 10, "real")]
    assert out["estimates"]["total"] == 0


def test_manual_reading_next_seq_and_refusals(db_target):
    store = gap_store(db_target)
    enter_reading(store, "m1", T0 + 1800, [1020], [0], "crew-3", NOW)
    assert enter_reading(store, "m1", T0 + 4000, [1045], None, "crew-3", NOW)["seq"] == -2
    with pytest.raises(AlertError, match="already has a reading at"):
        enter_reading(store, "m1", T0 + 900, [1010], None, "crew-3", NOW)
    with pytest.raises(AlertError, match="--imp: 2 value"):
        enter_reading(store, "m1", T0 + 100, [1, 2], None, "crew-3", NOW)
    with pytest.raises(AlertError, match="in the future"):
        enter_reading(store, "m1", NOW + 60, [2000], None, "crew-3", NOW)
    with pytest.raises(AlertError, match="unknown meter"):
        enter_reading(store, "nope", T0, [1], None, "crew-3", NOW)
    with pytest.raises(AlertError, match="unknown work order"):
        enter_reading(store, "m1", T0 + 200, [1000], None, "crew-3", NOW, work_order_id=42)
    assert [m["seq"] for m in store.manual_readings()] == [-2, -1]
    assert store.count_readings("m1") == 6


def test_manual_reading_linked_to_a_work_order_is_audited(db_target):
    store = theft_store(db_target)
    [wo] = store.work_orders()
    got = enter_reading(store, "m1", NOW - 1800, [391_000], None, "crew-3", NOW, work_order_id=wo["id"])
    trail = store.alert_audit(wo["alert_id"])
    assert (trail[-1]["action"], trail[-1]["work_order_id"]) == ("manual_reading", wo["id"])
    assert str(got["seq"]) in trail[-1]["note"]
