"""Tariff switching at boundary instants: the energy on each side of a switch lands in the right rate.

The switches fall between two polls (the scenario starts 43 s before midnight, so the
minute boundaries are never on the poll grid) and the load steps up in the middle of
a rate, so a switch taken one poll late would move a whole poll's energy (at 3 kW and
60 s polls, 50 Wh) into the wrong rate. On a board the spans are minutes of real time
and the load is the bench's (declared with --ref-watts).
"""

import pytest

from hil_tests.support import call

START = 1710115200 - 43  # Sunday 23:59:17 UTC
MIN_EMU = 20  # minutes per rate on the emulator
MIN_BOARD = 1  # on a board (real time)


def _week(profile):
    return {"0": 21, "1": 0, "2": [1000, 800, 600, 400], "3": [profile], "4": [[0, 0, 0, 0, 0, 0, 0]]}


def _spec(target, frontend, span_min):
    total = 43 + 3 * 60 * span_min + 600 * (not target.realtime)
    if target.realtime:
        segs = [{"seconds": total, "urms": 230, "irms": 5}]
    else:
        first = 43 + 60 * span_min + 250  # the load steps up inside rate 1
        segs = [
            {"seconds": first, "urms": 230, "irms": 1000 / 230.0},
            {"seconds": total - first, "urms": 230, "irms": 3000 / 230.0},
        ]
    m = span_min
    return {
        "frontend": frontend,
        "start": START,
        "segments": segs,
        "tariff": _week([[0, 3], [m, 1], [2 * m, 2], [3 * m, 4]]),
    }


def _frontends(target):
    return target.frontends


@pytest.mark.parametrize("frontend", ["atm90e26", "adc"])
def test_energy_lands_in_the_rate_in_force_at_each_instant(target, frontend):
    if frontend not in _frontends(target):
        pytest.skip("%s target meters with %s only" % (target.name, "/".join(target.frontends)))
    m = MIN_BOARD if target.realtime else MIN_EMU
    spec = _spec(target, frontend, m)
    # 23:59:17 is in the day's last period (T4); midnight starts T3, then T1, T2, T4 again
    edges = [0, 43, 43 + 60 * m, 43 + 120 * m, 43 + 180 * m, sum(s["seconds"] for s in spec["segments"])]
    parts = [call(target.energy_wh, spec, a, b) for a, b in zip(edges, edges[1:], strict=False)]
    expected = {4: parts[0] + parts[4], 3: parts[1], 1: parts[2], 2: parts[3]}
    r = call(target.run, spec)
    st = r["state"]
    got = {rate: st["imp_mwh"][rate - 1] / 1000.0 for rate in expected}
    for rate, wh in expected.items():
        tol = target.energy_tolerance_wh(wh, frontend)
        assert abs(got[rate] - wh) <= tol, "T%d: %.3f Wh registered, %.3f Wh expected (+-%.3f)" % (
            rate,
            got[rate],
            wh,
            tol,
        )
    assert st["rate"] == 4 and st["tariff"] == 21


def test_new_tariff_activates_at_its_instant_between_polls(target):
    realtime = target.realtime
    at = 45 if realtime else 1830  # activate_at, s after start: not on the poll grid
    total = 120 if realtime else 3600
    old = _week([[0, 1]])
    new = {
        "0": 22,
        "1": START + at,
        "2": [1000, 3000, 600, 400],
        "3": [[[0, 2]]],
        "4": [[0, 0, 0, 0, 0, 0, 0]],
    }
    spec = {
        "start": START,
        "segments": [{"seconds": total, "urms": 230, "irms": 10}],
        "tariff": old,
        "commands": [{"at": 5, "seq": 1, "cmd": 3, "args": new}],
    }
    before = call(target.energy_wh, spec, 0, at)
    after = call(target.energy_wh, spec, at, total)
    r = call(target.run, spec)
    st = r["state"]
    assert st["tariff"] == 22
    assert abs(st["imp_mwh"][0] / 1000.0 - before) <= target.energy_tolerance_wh(before), st["imp_mwh"]
    assert abs(st["imp_mwh"][1] / 1000.0 - after) <= target.energy_tolerance_wh(after), st["imp_mwh"]
    acts = [(m[2], m.get(11)) for _s, k, m in r["messages"] if k == 2 and m[10] == 12]
    assert acts[-1] == (START + at, {0: 22}), "event 12 at the activation instant: %r" % acts
