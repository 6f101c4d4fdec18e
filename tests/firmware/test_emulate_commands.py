"""Commands on the emulated meter (real firmware on the unix port), scripted at exact emulated instants.

The bench seals each scripted command with the meter's key (or forges it as the scenario says) and hands
it to the firmware like an MQTT delivery; the meter's answers are read back from its flash outbox and
verified with ``cwt``. Covers docs/protocol.md's command rules: duplicate, stale, expired, bad arguments,
unsupported, forged and malformed frames, and the prepaid rules on the meter.
"""

from tests.firmware.emulate_support import run
from tests.firmware.meter_messages import of_type, outbox_messages

START = 1710115200  # 2024-03-11 00:00 UTC, a Monday
ONE_RATE = {"0": 5, "1": 0, "2": [1000], "3": [[[0, 1]]], "4": [[0, 0, 0, 0, 0, 0, 0]]}
LOAD = {"urms": 230, "irms": 10, "phase_deg": 0}  # 2.3 kW
OTHER_KEY = "11" * 32


def _debit(wh_by_price):
    """What the meter must have debited: floor(sum(Wh * price) / 1000), remainders carried."""
    return sum(wh * p for wh, p in wh_by_price) // 1000


def _acks(messages):
    return [(a[30], a[31]) for a in of_type(messages, 3)]


def _events(messages):
    return [e[10] for e in of_type(messages, 2)]


def test_command_rules_each_answered_as_protocol_says_and_run_at_most_once(tmp_path):
    cmds = [
        {"at": 600, "seq": 1, "cmd": 1, "args": {"0": 7, "1": 50000}},
        {"at": 700, "seq": 1, "cmd": 1, "args": {"0": 7, "1": 50000}},  # the very same command: duplicate
        {"at": 800, "seq": 2, "cmd": 1, "args": {"0": 7, "1": 50000}},  # same top-up, new seq: no credit
        {"at": 900, "seq": 1, "cmd": 2, "args": {"0": 0, "1": 0}},  # below the highest: stale
        {"at": 1000, "seq": 3, "cmd": 2, "args": {"0": 0}, "expires": START + 500},
        {"at": 1100, "seq": 4, "cmd": 2, "args": {"0": 0}, "key_hex": OTHER_KEY},  # forged
        {"at": 1150, "seq": 4, "cmd": 2, "args": {"0": 0}, "kid": "emu-0002"},  # another meter's kid
        {"at": 1200, "frame_hex": "d1840102"},  # malformed
        {"at": 1300, "seq": 5, "cmd": 99, "args": {}},
        {"at": 1400, "seq": 6, "cmd": 2, "args": {"0": 7}},  # relay state 7: bad arguments
        {"at": 1500, "seq": 7, "cmd": 5, "args": {}},  # read now
    ]
    st = run(
        tmp_path,
        "rules",
        {
            "start": START,
            "segments": [{"seconds": 3600, **LOAD}],
            "tariff": ONE_RATE,
            "prepaid": {"balance": 100000},
            "commands": cmds,
        },
    )
    msgs = outbox_messages(tmp_path / "rules-flash")
    assert [s for s, _k, _m in msgs] == list(range(1, len(msgs) + 1)), "seq: 1, 2, 3, ... without a gap"
    assert _acks(msgs) == [(1, 0), (1, 1), (2, 1), (1, 2), (3, 3), (5, 5), (6, 4), (7, 0)]
    assert st["relay"] == "closed", "no rejected relay command ran"
    assert st["comms"]["forged"] == 2 and st["comms"]["malformed"] == 1
    rejected = [e for e in of_type(msgs, 2) if e[10] == 19]
    assert len(rejected) == 1, "dropped frames are reported at most once an hour"
    assert rejected[0][11][1] == 7 and rejected[0][11][2] == 1
    topups = [e for e in of_type(msgs, 2) if e[10] == 10]
    assert [t[11] for t in topups] == [{0: 7, 1: 50000}], "credited exactly once"
    assert st["balance"] == 100000 + 50000 - _debit([(st["imp"][0], 1000)])
    now = [r for r in of_type(msgs, 1) if r[3] != 900]
    assert len(now) == 1 and now[0][2] == START + 1500 and now[0][3] == 600, "read now: 600 s in"
    assert len([r for r in of_type(msgs, 1) if r[3] == 900]) == 4, "one reading per 15 minutes"


def test_command_taken_survives_reboot_and_replay_after_it_is_stale(tmp_path):
    flash = tmp_path / "flash"
    first = [{"at": 300, "seq": 10, "cmd": 1, "args": {"0": 1, "1": 20000}}]
    run(
        tmp_path,
        "a",
        {
            "start": START,
            "segments": [{"seconds": 900, **LOAD}],
            "tariff": ONE_RATE,
            "prepaid": {"balance": 5000},
            "commands": first,
        },
        flash=flash,
    )
    again = [
        {"at": 1000, "seq": 10, "cmd": 1, "args": {"0": 1, "1": 20000}},
        {"at": 1100, "seq": 9, "cmd": 1, "args": {"0": 2, "1": 20000}},
        {"at": 1200, "seq": 11, "cmd": 1, "args": {"0": 1, "1": 20000}},
    ]
    st = run(
        tmp_path,
        "b",
        {
            "start": START,
            "segments": [{"seconds": 1800, **LOAD}],
            "tariff": ONE_RATE,
            "prepaid": {"balance": 5000},
            "commands": again,
        },
        flash=flash,
    )
    msgs = outbox_messages(flash)
    assert _acks(msgs) == [(10, 0), (10, 1), (9, 2), (11, 1)]
    assert st["balance"] == 5000 + 20000 - _debit([(st["imp"][0], 1000)])
    assert st["cmd_hi"] == 11


def test_exhaustion_emergency_credit_disconnect_and_topup_reconnect_debit_exactly(tmp_path):
    cmds = [
        {"at": 0, "seq": 1, "cmd": 6, "args": {"1": 1500, "2": 1000}},
        {"at": 7200, "seq": 2, "cmd": 1, "args": {"0": 1, "1": 5000}},
    ]
    st = run(
        tmp_path,
        "exhaust",
        {
            "start": START,
            "segments": [{"seconds": 10800, **LOAD}],
            "tariff": ONE_RATE,
            "prepaid": {"balance": 2000},
            "commands": cmds,
        },
    )
    msgs = outbox_messages(tmp_path / "exhaust-flash")
    ev = _events(msgs)
    low, gone, opened, topup, closed = (ev.index(c) for c in (8, 9, 6, 10, 7))
    assert low < gone < opened < topup < closed
    assert [e[11] for e in of_type(msgs, 2) if e[10] == 6] == [{0: 1}], "opened for credit"
    assert st["relay"] == "closed"
    wh = st["imp"][0]
    assert st["balance"] == 2000 + 5000 - _debit([(wh, 1000)])
    # the relay stayed open from -1000 (emergency credit used up) to the top-up: about 2300 Wh/h flowed
    # until then (3000 milli-units = 3 kWh at 1 unit/kWh), none while open, all after the top-up
    assert 3000 + 2300 - 60 <= wh <= 3000 + 2300 + 60
    flags = [r[9] for r in of_type(msgs, 1)]
    assert any(f & 8 for f in flags), "flag bit 3 while on emergency credit"
    assert any(f & 1 for f in flags), "flag bit 0 while the relay is open"


def test_friendly_hours_defer_the_disconnect_until_they_end(tmp_path):
    # Monday 00:00-02:00 friendly: credit runs out inside, the relay opens at 02:00 exactly
    cmds = [{"at": 0, "seq": 1, "cmd": 6, "args": {"1": 0, "2": 0, "3": [[0, 0, 120]]}}]
    st = run(
        tmp_path,
        "friendly",
        {
            "start": START,
            "segments": [{"seconds": 3 * 3600, **LOAD}],
            "tariff": ONE_RATE,
            "prepaid": {"balance": 1000},
            "commands": cmds,
        },
    )
    msgs = outbox_messages(tmp_path / "friendly-flash")
    opened = [e for e in of_type(msgs, 2) if e[10] == 6]
    assert len(opened) == 1 and opened[0][2] == START + 7200
    assert st["relay"] == "open"
    wh = st["imp"][0]
    assert 2 * 2300 - 60 <= wh <= 2 * 2300 + 60, "energy flowed through the friendly hours only"
    assert st["balance"] == 1000 - _debit([(wh, 1000)])


def test_tariff_change_mid_day_debits_each_part_at_its_price(tmp_path):
    new = {"0": 6, "1": START + 3600, "2": [3000], "3": [[[0, 1]]], "4": [[0, 0, 0, 0, 0, 0, 0]]}
    cmds = [{"at": 60, "seq": 1, "cmd": 3, "args": new}]
    st = run(
        tmp_path,
        "tariff",
        {
            "start": START,
            "segments": [{"seconds": 7200, **LOAD}],
            "tariff": ONE_RATE,
            "prepaid": {"balance": 500000},
            "commands": cmds,
        },
    )
    msgs = outbox_messages(tmp_path / "tariff-flash")
    at = [r for r in of_type(msgs, 1) if r[2] == START + 3600][0]
    assert at[11] == 5, "the reading at the switch closes the old tariff's interval"
    before = at[4][0]
    after = st["imp"][0] - before
    assert 2300 - 40 <= before <= 2300 + 40
    assert st["balance"] == 500000 - _debit([(before, 1000), (after, 3000)])
    assert st["tariff"] == 6 and 12 in _events(msgs)


def test_time_sync_interval_change_and_operator_relay_survive_reboot(tmp_path):
    flash = tmp_path / "flash"
    cmds = [
        {"at": 100, "seq": 1, "cmd": 2, "args": {"0": 0, "1": 0}},  # operator opens the relay (64 Wh in)
        {"at": 200, "seq": 2, "cmd": 6, "args": {"0": 300}},  # readings every 5 minutes
        {"at": 1000, "seq": 3, "cmd": 4, "args": {"0": START + 1090}},  # the clock was 90 s behind
    ]
    run(
        tmp_path,
        "a",
        {
            "start": START,
            "segments": [{"seconds": 1800, **LOAD}],
            "tariff": ONE_RATE,
            "prepaid": {"balance": 900000},
            "commands": cmds,
        },
        flash=flash,
    )
    st = run(
        tmp_path,
        "b",
        {
            "start": START,
            "segments": [{"seconds": 3600, **LOAD}],
            "tariff": ONE_RATE,
            "prepaid": {"balance": 900000},
        },
        flash=flash,
    )
    msgs = outbox_messages(flash)
    assert _acks(msgs) == [(1, 0), (2, 0), (3, 0)]
    adjusted = [e for e in of_type(msgs, 2) if e[10] == 11]
    assert [e[11] for e in adjusted] == [{0: START + 1000, 1: START + 1090}]
    ts = [r[2] for r in of_type(msgs, 1)]
    assert ts[0] == START + 300 and all(b - a == 300 for a, b in zip(ts, ts[1:], strict=False)), ts
    assert ts[-1] == st["ts"] - st["ts"] % 300, "the interval survived the reboot"
    assert st["relay"] == "open" and st["imp"][0] <= 64, "the operator's open relay survived, credit or not"
    assert 7 not in _events(msgs), "never closed again"


def test_measured_events_are_reported_once_each(tmp_path):
    # a sag, then reverse flow: the detector's events reach the outbox like the meter's own
    segs = [
        {"seconds": 900, **LOAD},
        {"seconds": 900, "urms": 150, "irms": 10},
        {"seconds": 900, **LOAD},
        {"seconds": 900, "urms": 230, "irms": 10, "phase_deg": 180},
    ]
    read_now = [{"at": 0, "seq": 1, "cmd": 5, "args": {}}]  # any command: the meter reports to its outbox
    st = run(tmp_path, "sag", {"start": START, "segments": segs, "commands": read_now})
    msgs = outbox_messages(tmp_path / "sag-flash")
    codes = _events(msgs)
    assert codes.count(14) == 1 and codes.count(5) == 1, codes
    assert sorted(codes) == sorted(st["events"]), "every event in the ring was reported, once"
