"""The board target itself, end to end, against the simulated board (hil_tests/simboard): mpremote's
transport, the raw REPL, the uploaded agent, a hard reset as a power cut, the outbox copied back.

Runs in the emulator session (CI) so the board path cannot rot unnoticed; with --port the
real board is the target and this is skipped. Short real-time spans (a few seconds each)."""

import os
import types

import pytest

from hil_tests.support import acks, events_with_detail, only_on
from hil_tests.targets.base import CALERR, ref_checksum

START = 1710115200


@pytest.fixture(scope="module")
def sim_target(target, tmp_path_factory):
    only_on(target, "emulator", "the simulated board stands in for a real one in the emulator session")
    from hil_tests.simboard.server import SimBoard
    from hil_tests.targets.board import BoardTarget

    sim = SimBoard(tmp_path_factory.mktemp("simboard")).start()
    opts = types.SimpleNamespace(
        port=sim.url,
        board="auto",
        baud=115200,
        board_flash="flash",
        board_scratch="hil",
        reset="repl",
        ref_watts=sim.watts,
        ref_volts=230.0,
        ref_amps=5.0,
        ref_pf="1",
        ref_seconds=4.0,
        ib=None,
        imax=None,
        relay_cuts_load=True,
        broker_host=None,
        hil_report=None,
    )
    t = None
    main_py = os.path.join(sim.root, "main.py")
    try:
        t = BoardTarget(opts, tmp_path_factory.mktemp("simboard-host"))
        t.cal_seconds = 1
        assert not os.path.exists(main_py) and os.path.exists(main_py + ".hil-off"), "main.py set aside"
        assert sim.boots == 2, "and the board reset without it"
        yield t, sim
        t.close()
        assert os.path.exists(main_py) and not os.path.exists(main_py + ".hil-off"), "main.py restored"
        assert not os.path.exists(os.path.join(sim.root, "hil")), "the scratch directory removed"
    finally:
        if t is not None:
            t.close()
        sim.stop()


def test_board_target_boots_validates_config_and_calibrates_over_the_raw_repl(sim_target):
    t, _sim = sim_target
    assert t.board_kind == "esp32" and t.frontends == ("atm90e26",), "asked the board (sys.platform)"
    ok = t.boot()
    assert ok["ok"] and ok["events"] == [2] and ok["metering"] is True, ok
    bad = t.boot(patch={"broker": {"port": "x"}})
    assert not bad["ok"] and bad["field"] == "broker.port" and not bad["state_saved"], bad
    cal = t.calibration()
    assert cal["cs1_written"] == ref_checksum([cal["cal_words"][a] for a in range(0x21, 0x2C)])
    assert cal["cs1_chip"] == cal["cs1_written"] and cal["sys_status"] == 0, cal["sys_status"]
    broken = t.calibration(fault="cs1")
    assert broken["sys_status"] & CALERR == CALERR and (18, {0: 2}) in broken["event_details"]
    assert broken["imp_mwh_after"] == 0 and broken["metering"] is False


def test_board_target_measures_the_declared_load(sim_target):
    t, sim = sim_target
    p = t.resolve_point(None)
    assert p.frontend == "atm90e26" and abs(p.amps - 5.0) < 1e-9 and p.limit == 1.0
    m = t.measure(p)
    assert m["seconds"] >= 3.5, "metered the asked 4 s (to a poll): %r" % m
    count_wh = 100.0 / t.mc  # one ATM90E26 count, Wh
    assert abs(m["measured_wh"] - m["reference_wh"]) <= 0.01 * m["reference_wh"] + 2 * count_wh, m
    assert abs(m["reference_wh"] - sim.watts * m["seconds"] / 3600.0) < 1e-6


def test_board_target_power_cut_and_scripted_commands(sim_target):
    t, sim = sim_target
    boots = sim.boots
    spec = {"start": START, "segments": [{"seconds": 60, "urms": 230, "irms": 5}]}
    r = t.power_cut(spec, 3, patch={"persist_wh": 1})
    assert sim.boots == boots + 1, "the board was reset"
    assert r["events_after"][-2:] == [1, 2], r["events_after"]
    lost = r["energy_at_cut_mwh"] - r["restored_mwh"]
    assert -100 <= lost <= 1000 + sim.watts * 1.5 / 3.6 + 100, lost
    cmds = [
        {"at": 1, "seq": 1, "cmd": 1, "args": {"0": 9, "1": 5000}},
        {"at": 2, "seq": 2, "cmd": 2, "args": {"0": 0, "1": 0}, "key_hex": "11" * 32},  # forged
        {"at": 3, "seq": 1, "cmd": 1, "args": {"0": 9, "1": 5000}},  # replayed
    ]
    spec = {
        "start": START,
        "segments": [{"seconds": 5, "urms": 230, "irms": 5}],
        "tariff": {"0": 5, "1": 0, "2": [1000], "3": [[[0, 1]]], "4": [[0, 0, 0, 0, 0, 0, 0]]},
        "prepaid": {"balance": 1000},
        "commands": cmds,
    }
    run = t.run(spec)
    assert acks(run["messages"]) == [(1, 0), (1, 1)]
    assert run["state"]["comms"]["forged"] == 1 and run["state"]["relay"] == "closed"
    assert [d for c, d in events_with_detail(run["messages"]) if c == 10] == [{0: 9, 1: 5000}]
