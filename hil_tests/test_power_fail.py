"""Power-fail recovery: cut the power mid-run, reboot, and find the registers within the documented
persist policy (firmware/README.md "Persistence"): a cut loses at most persist_wh + one poll's energy
(+ the ATM90E26's sub-count residue) and never counts anything twice; the reboot reports power down (1)
then power up (2).

Emulator: SIGKILL of the firmware process at exact emulated instants, 2.3 kW, polls of 60 s,
persist_wh 50. Board: the run is interrupted and the board hard-reset (--reset), at the
bench's declared load, with persist_wh 5."""

import pytest

from hil_tests.support import call, only_on

START = 1710115200


def _spec(target):
    seconds = 90 if target.realtime else 3 * 3600
    return {"start": START, "segments": [{"seconds": seconds, "urms": 230, "irms": 10}]}


def _persist_wh(target):
    return 5 if target.realtime else 50


@pytest.mark.parametrize("cut_s", [437, 1291, 6004], ids=["cut-early", "cut-mid", "cut-late"])
def test_power_cut_loses_at_most_persist_wh_plus_one_poll(target, cut_s):
    spec = _spec(target)
    if target.realtime:
        cut_s = {437: 23, 1291: 41, 6004: 67}[cut_s]
    p_w = call(target.load_w, spec["segments"][0])
    r = call(target.power_cut, spec, cut_s, patch={"persist_wh": _persist_wh(target)})
    assert r["events_after"][-2:] == [1, 2], "power down (unclean), then power up: %r" % r["events_after"]
    at_cut = r["energy_at_cut_mwh"]
    restored = r["restored_mwh"]
    tol = target.energy_tolerance_wh(at_cut / 1000.0) * 1000.0 + r["count_mwh"]
    bound = r["persist_wh"] * 1000.0 + p_w * r["poll_ms"] / 3600.0 + tol
    assert restored <= at_cut + tol, "counted more than was measured: %.1f > %.1f mWh" % (restored, at_cut)
    assert at_cut - restored <= bound, "lost %.1f mWh, the policy allows %.1f" % (at_cut - restored, bound)
    assert restored > 0, "the state saved before the cut was restored"


def test_cut_replayed_run_matches_uninterrupted_run_within_residue(target):
    only_on(target, "emulator", "a re-simulated stretch after each cut needs the emulated clock")
    spec = _spec(target)
    full = target.run(spec, reporting=False, name="uncut")["state"]
    flash = None
    restarts = 0
    for cut_s in (1291, 4003, 7777):
        r = target.power_cut(spec, cut_s, flash=flash)
        flash = r["flash"]
        restarts += 2  # the cut reboot and the next run's
    cut = target.run(spec, flash=flash, reporting=False)["state"]
    assert cut["boot_count"] == 1 + restarts
    count = r["count_mwh"]
    diff = sum(full["imp_mwh"]) - sum(cut["imp_mwh"])
    assert 0 <= diff <= restarts * count, "re-simulated run differs by %d mWh" % diff
