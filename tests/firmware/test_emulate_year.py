"""A simulated YEAR on the ATM90E26 path with a 4-rate tariff: exact, no drift, per-rate split.

One emulator run (micropython) over local calendar year 2024 (366 days, UTC+8)
at a constant 230 V, 5 A, PF 1 load, polled hourly (scenario poll_ms: the
chip's 16-bit registers hold 2048 Wh at MC 3200, 1.15 kWh/h fits), with
steps cut at every tariff switch. The tariff (tests/firmware/emulate_support.py
TARIFF_4): summer (Apr 1..Sep 30) weekdays with 8 switches, winter weekdays
with 4, weekends with 2. persist_interval is set to 1 day and persist_wh to
its maximum so the run is not dominated by flash writes.

Checks: every count the emulated chip emitted is in the registers exactly
(fwd counts x 100 == sum(imp * MC + imp_rem)); the split per rate matches an
independent CPython computation of the calendar (datetime, not
protocol.tariff_calendar) to within one count per rate interval. Prints the
wall time (`pytest -s`).
"""

import datetime
import json
import time

from tests.firmware.emulate_support import TARIFF_4, run, units

UTC8 = 8 * 3600
START = int(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC).timestamp()) - UTC8  # local midnight
DAYS = 366
P_W = 230.0 * 5.0


def expected_seconds_per_rate():
    """Seconds per rate T1..T4 and the number of rate intervals, from the calendar by hand."""
    days = TARIFF_4["3"]
    secs = [0, 0, 0, 0]
    intervals = [0, 0, 0, 0]
    prev = None
    for k in range(DAYS):
        d = datetime.date(2024, 1, 1) + datetime.timedelta(days=k)
        summer = datetime.date(2024, 4, 1) <= d < datetime.date(2024, 10, 1)
        week = TARIFF_4["4"][0 if summer else 1]
        profile = days[week[d.weekday()]]
        for j, (minute, rate) in enumerate(profile):
            end = profile[j + 1][0] if j + 1 < len(profile) else 1440
            secs[rate - 1] += (end - minute) * 60
            if rate != prev:
                intervals[rate - 1] += 1
            prev = rate
    return secs, intervals


def test_year_exact_and_split_by_calendar(tmp_path):
    flash = tmp_path / "flash"
    tiny = {"frontend": "atm90e26", "start": START - 60, "segments": [{"seconds": 60, "urms": 0, "irms": 0}]}
    run(tmp_path, "init", tiny, flash)  # writes the default (factory-calibrated) config
    cfg = json.loads((flash / "config.json").read_text())
    cfg["persist_interval"] = 86400
    cfg["persist_wh"] = 100000
    (flash / "config.json").write_text(json.dumps(cfg))
    for p in flash.glob("state.*"):
        p.unlink()
    year = {
        "frontend": "atm90e26",
        "start": START,
        "poll_ms": 3600000,
        "tariff": TARIFF_4,
        "segments": [{"seconds": DAYS * 86400, "urms": 230, "irms": 5, "phase_deg": 0}],
    }
    t0 = time.monotonic()
    s = run(tmp_path, "year", year, flash)
    wall = time.monotonic() - t0
    print(
        "\nyear: %d steps, %.1f s wall (firmware loop %.1f s), %d saves"
        % (s["steps"], wall, s["wall_ms"] / 1000.0, s["saves"])
    )
    mc = s["registers"][2]
    imp = units(s, "imp")
    # no drift: every chip count is in the registers, to the unit
    assert s["chip_counts"]["ap"] * 100 == sum(imp) and s["chip_counts"]["an"] == 0
    assert s["ts"] == START + DAYS * 86400 and s["events"][:2] == [2, 12]
    secs, intervals = expected_seconds_per_rate()
    assert sum(secs) == DAYS * 86400
    true_units = [P_W * t / 3600.0 * mc for t in secs]
    gain = sum(imp) / sum(true_units)  # the calibrated chip's residual gain error
    assert abs(gain - 1) < 2e-4, gain
    for r in range(4):
        want = true_units[r] * gain
        # each rate interval starts and ends on a step: at most one count (100 units) off per interval
        assert abs(imp[r] - want) <= 100 * intervals[r] + 100, (r + 1, imp[r], want, intervals[r])
    # the split itself is far tighter than the bound in practice
    share = [imp[r] / sum(imp) for r in range(4)]
    assert max(abs(share[r] - secs[r] / sum(secs)) for r in range(4)) < 1e-4, share
