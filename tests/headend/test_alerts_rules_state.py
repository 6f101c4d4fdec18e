"""Condition rules on a real database: communication loss (silence, will message), clock drift,
relay state vs the last acked relay command, prepaid balance vs the ledger, low balance, and
readings VEE left failed."""

from headend.prepaid.service import credit
from headend.vee.engine import run_vee
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
    reading_row,
    relay_command,
    run,
)
from tests.headend.prepaid_support import MAR1, add_prepaid, add_readings


def test_comm_loss_silence_warning_then_critical(db_target):
    store = new_store(db_target)
    add_meter(store)
    hourly(store, end=NOW - 5 * H)
    run(store)
    [a] = fired(store, "comm_loss")
    # received 5 s after its ts: 5 h - 5 s of silence is 4 whole intervals (>= 4 fires)
    assert a["severity"] == "warning" and a["evidence"]["missed_intervals"] == 4
    assert a["evidence"]["last_reading"]["ts"] == NOW - 5 * H and a["evidence"]["interval_s"] == H
    run(store, now=NOW + DAY)
    [a] = fired(store, "comm_loss")  # the same alert, now critical
    assert (a["severity"], a["count"]) == ("critical", 2)


def test_comm_loss_offline_by_will_message(db_target):
    store = new_store(db_target)
    add_meter(store)
    hourly(store)
    store.set_online("m1", False, NOW - 60)  # the broker published the meter's will
    run(store)
    [a] = fired(store, "comm_loss")
    assert a["severity"] == "warning" and a["evidence"]["online"] == 0 and "offline" in a["summary"]


def test_comm_loss_quiet_when_reporting_or_never_heard(db_target):
    store = new_store(db_target)
    add_meter(store)
    hourly(store, end=NOW - 2 * H)  # 2 intervals: below 4
    store.add_meter("spare", "00" * 32, "$7$x", now=0)  # provisioned, never connected
    run(store)
    assert store.alerts() == []


def test_clock_drift_ahead_and_behind_but_not_backlog(db_target):
    store = new_store(db_target)
    for m in ("ahead", "behind", "backlog", "fine"):
        add_meter(store, m, "A-" + m)
        hourly(store, m, end=NOW - H)
    rows = [
        reading_row("ahead", 9000, NOW, 1000 * 389, received_at=NOW - 1000),  # ts 1000 s ahead
        reading_row("behind", 9000, NOW - 1800, 1000 * 388, received_at=NOW),
        reading_row("backlog", 9000, NOW - 1800, 1000 * 388, received_at=NOW, flags=16),
        reading_row("fine", 9000, NOW - 1800, 1000 * 388, received_at=NOW - 1790),
    ]
    store.insert_readings_batch(rows)
    run(store)
    got = {a["meter_id"]: a for a in fired(store, "clock_drift")}
    assert set(got) == {"ahead", "behind"}
    assert got["ahead"]["evidence"]["offset_s"] == 1000 and got["behind"]["evidence"]["offset_s"] == -1800
    assert got["ahead"]["severity"] == "warning" and "ahead" in got["ahead"]["summary"]


def test_relay_not_in_the_commanded_state(db_target):
    store = new_store(db_target)
    add_meter(store, "bad", "A1")
    add_meter(store, "good", "A2")
    for m in ("bad", "good"):
        relay_command(store, m, 0, NOW - 10 * H)  # open, acked 10 h ago
        hourly(store, m, end=NOW - 10 * H)
    store.insert_readings_batch([reading_row("bad", 5000, NOW - 5 * H, 10**6, flags=0)])  # still closed
    store.insert_readings_batch([reading_row("good", 5000, NOW - 5 * H, 10**6, flags=1)])
    run(store)
    [a] = fired(store, "relay_mismatch")
    assert (a["meter_id"], a["severity"]) == ("bad", "critical")
    ev = a["evidence"]
    assert (ev["expected"], ev["reading"]["relay"], ev["command"]["state"]) == ("open", "closed", "open")


def test_relay_opened_by_the_meter_itself_is_no_mismatch(db_target):
    store = new_store(db_target)
    add_meter(store)
    relay_command(store, "m1", 1, NOW - 10 * H)  # close, acked
    add_event(store, "m1", 6000, NOW - 8 * H, 6, {0: 1})  # the meter opened it: credit ran out
    store.insert_readings_batch([reading_row("m1", 6001, NOW - 5 * H, 10**6, flags=1)])
    run(store)
    assert fired(store, "relay_mismatch") == []


def prepaid(tmp_path, balances):
    store = new_store(tmp_path)
    add_prepaid(store, "pm", "P1")
    store.add_adjustment("P1", 50_000, "opening balance", "op", MAR1)
    # valley hours at 300 milli-units/kWh: 1 kWh per hour costs 300
    add_readings(store, "pm", [(MAR1 + i * H, [0, 1000 * i], b) for i, b in enumerate(balances)])
    return store


def test_balance_mismatch_against_the_ledger(tmp_path):
    store = prepaid(tmp_path, [50_000, 49_700, 48_000])
    run(store, now=MAR1 + 3 * H)
    [a] = fired(store, "balance_mismatch")
    ev = a["evidence"]
    assert (ev["meter_balance"], ev["ledger_balance"], ev["difference"], ev["seq"]) == (
        48_000,
        49_400,
        -1400,
        3,
    )
    assert a["severity"] == "warning" and a["account_id"] == "P1"


def test_balance_agrees_or_waits_for_a_top_up_in_flight(tmp_path):
    store = prepaid(tmp_path, [50_000, 49_700, 49_400])
    run(store, now=MAR1 + 3 * H)
    assert fired(store, "balance_mismatch") == []
    store.insert_readings_batch([reading_row("pm", 4, MAR1 + 3 * H, [0, 3000], balance=40_000)])
    credit(store, "PAY-1", 10_000, MAR1 + 3 * H, meter_id="pm")  # queued, not yet on the meter
    run(store, now=MAR1 + 4 * H)
    assert fired(store, "balance_mismatch") == []


def test_low_balance_info_and_exhausted_warning(db_target):
    store = new_store(db_target)
    for m in ("low", "negative", "event", "rich"):
        add_meter(store, m, "A-" + m, billing="prepaid")
    rows = [
        reading_row("low", 1, NOW - H, 100, balance=5_000),
        reading_row("negative", 1, NOW - H, 100, balance=-200),
    ]
    rows += [
        reading_row("event", 1, NOW - 2 * H, 100, balance=20_000),
        reading_row("rich", 1, NOW - H, 100, balance=50_000),
    ]
    store.insert_readings_batch(rows)
    add_event(store, "event", 2, NOW - H, 8)  # the meter's own low-balance event after its last reading
    run(store, disabled_rules=("balance_mismatch",))
    got = {a["meter_id"]: a["severity"] for a in fired(store, "low_balance")}
    assert got == {"low": "info", "negative": "warning", "event": "info"}


def test_vee_failures_left_unresolved(db_target):
    store = new_store(db_target)
    add_meter(store)
    rows = [reading_row("m1", i + 1, DAY0 + i * 900, 1000 + 10 * i, interval=900) for i in range(8)]
    rows.append(reading_row("m1", 9, DAY0 + 8 * 900, 900, interval=900))  # the register went down
    store.insert_readings_batch(rows)
    run_vee(store, "m1", DAY0 + 8 * 900 + 60)
    assert store.readings("m1")[-1]["vee_state"] == "failed"
    run(store, now=DAY0 + 8 * 900 + 120)
    [a] = fired(store, "vee_failures")
    assert a["severity"] == "warning" and a["evidence"]["seqs"] == [9]
    assert a["evidence"]["failures"][0]["rule"] == "registers_monotonic"


def test_vee_quiet_on_valid_readings(db_target):
    store = new_store(db_target)
    add_meter(store)
    rows = [reading_row("m1", i + 1, NOW - 4 * H + i * 900, 1000 + 10 * i, interval=900) for i in range(16)]
    store.insert_readings_batch(rows)
    run_vee(store, "m1", NOW)
    assert {r["vee_state"] for r in store.readings("m1")} == {"valid"}
    run(store)
    assert store.alerts() == []


def test_comm_loss_without_a_reading_in_the_lookback_window_is_critical(db_target):
    store = new_store(db_target)
    add_meter(store)
    hourly(store, end=DAY0 + 2 * H)
    run(store, now=NOW + 20 * DAY)
    [a] = fired(store, "comm_loss")
    # silent since the last reading the head-end received, however long ago (not the window's length)
    assert a["severity"] == "critical" and a["evidence"]["last_reading"]["ts"] == DAY0 + 2 * H
    assert a["evidence"]["silent_s"] == NOW + 20 * DAY - (DAY0 + 2 * H + 5)


# issue 17 item 3: alerts on the head-end's clock (received_at), not on the readings' meter ts

NOW_2026 = 1796083200  # 2026-12-01 00:00 UTC: readings whose meter clock says 2024 arrive now


def test_readings_just_received_with_a_2024_clock_are_clock_drift_not_comm_loss(db_target):
    store = new_store(db_target)
    add_meter(store)
    # 8 hourly readings stamped 2024-03-01 by the meter's clock, received in the last 8 hours
    rows = [reading_row("m1", i + 1, DAY0 + i * H, 1000 * i, received_at=NOW_2026 - (8 - i) * H + 5)
            for i in range(8)]  # fmt: skip
    store.insert_readings_batch(rows)
    run(store, now=NOW_2026)
    assert fired(store, "comm_loss") == []
    [a] = fired(store, "clock_drift")
    assert a["evidence"]["seq"] == 8 and a["evidence"]["offset_s"] == DAY0 + 7 * H - (NOW_2026 - H + 5)
    assert "behind" in a["summary"]


def test_backlog_readings_are_no_clock_drift(db_target, tmp_path):
    store = new_store(db_target)
    add_meter(store)
    # offline for 20 days (beyond the 16-day window of meter time): a day of readings made then
    # (flag bit 4), delivered on reconnection 30 s ago, followed by a live one
    rows = [reading_row("m1", i + 1, NOW - 20 * DAY + i * H, 1000 * i, flags=16, received_at=NOW - 30)
            for i in range(24)]  # fmt: skip
    store.insert_readings_batch(rows)
    run(store)
    assert fired(store, "clock_drift") == [] and fired(store, "comm_loss") == []
    # the same delivery without the flag: the meter's clock is 20 days behind its arrival
    (tmp_path / "live").mkdir()
    store2 = new_store(tmp_path / "live")
    add_meter(store2)
    store2.insert_readings_batch([reading_row("m1", 1, NOW - 20 * DAY, 0, received_at=NOW - 30)])
    run(store2)
    assert [a["evidence"]["offset_s"] for a in fired(store2, "clock_drift")] == [-(20 * DAY - 30)]
    assert fired(store2, "comm_loss") == []


def test_comm_loss_by_receive_time_whatever_the_meter_clock_says(db_target):
    store = new_store(db_target)
    add_meter(store)
    # the meter's clock is 30 days behind: its readings arrived until 5 h ago
    rows = [reading_row("m1", i + 1, NOW - 30 * DAY - (9 - i) * H, 1000 * i, received_at=NOW - (9 - i) * H)
            for i in range(5)]  # fmt: skip
    store.insert_readings_batch(rows)
    run(store)
    [a] = fired(store, "comm_loss")
    assert a["severity"] == "warning" and a["evidence"]["silent_s"] == 5 * H
    assert a["evidence"]["last_reading"]["seq"] == 5 and a["evidence"]["missed_intervals"] == 5
    # a reading received after now (a replay with --now) is not known yet
    store.insert_readings_batch([reading_row("m1", 6, NOW - 30 * DAY, 0, received_at=NOW + 60)])
    run(store, now=NOW + 30)
    [a] = fired(store, "comm_loss")
    assert a["evidence"]["last_reading"]["seq"] == 5
