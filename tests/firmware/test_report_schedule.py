"""The reading schedule when the loop's sleep overshoots the boundary, as it does on a real board."""

from firmware.meter import Meter
from firmware.outbox import Outbox
from firmware.report import Reporter
from protocol import board_config as config
from tests.dual.meter_support import KEY, T0

INTERVAL = 900


def _reporter(tmp_path, interval=INTERVAL):
    cfg = config.validate({"meter_id": "m", "key": KEY, "interval": interval})
    m = Meter(cfg)
    m.set_clock(T0)
    rep = Reporter(m, cfg, Outbox(str(tmp_path / "outbox")).open(), "unix")
    rep.restore(None)
    return m, rep


def _run(m, rep, seconds, overshoot_ms):
    """Step like a board: sleep until the next boundary (or 60 s), wake overshoot_ms late."""
    made = []
    end = m.now() + seconds
    while m.now() < end:
        wait = min(rep.ms_to_next(), 60000)
        m.step(wait + overshoot_ms, True)
        if rep.due():
            rep.reading()
            made.append(rep.last_reading_ts)
    return made


def test_a_late_wake_still_makes_each_interval_reading_once_at_its_boundary(tmp_path):
    m, rep = _reporter(tmp_path)
    made = _run(m, rep, 3 * 3600, overshoot_ms=7)
    assert made == [T0 + k * INTERVAL for k in range(1, 13)]
    msgs = rep.outbox.tail(0)
    assert [ts for _seq, _kind, ts in msgs] == made, "each reading carries its interval's end as ts"


def test_a_new_meter_starts_at_the_next_boundary_and_a_clock_set_back_repeats_nothing(tmp_path):
    m, rep = _reporter(tmp_path)
    m.set_clock(T0 + 100)  # mid-interval
    assert not rep.due()
    assert _run(m, rep, 1000, overshoot_ms=3) == [T0 + 900]
    m.set_clock(T0 + 200)  # time sync back by ~15 minutes
    assert _run(m, rep, 1700, overshoot_ms=3) == [T0 + 1800], "T0 + 900 is not reported again"
    m.set_clock(T0 + 5000)  # forward: the boundary it lands after, then on schedule
    made = _run(m, rep, 1000, overshoot_ms=3)
    assert made[0] == T0 + 4500 and made[1:] == [T0 + 5400]
