"""Shared set-up for the meter's dual-runtime tests (test_meter*.py): a meter, a tariff, a load.

The config is validated once, then protocol.board_config is dropped from memory (as
firmware.app does after boot), which a 64 KiB heap needs beside the tests.
"""

import gc

from firmware import compat
from firmware.meter import Meter
from protocol import board_config as config

KEY = "00" * 32
T0 = 1710140400  # 2024-03-11 07:00:00 UTC, a Monday
# weekdays: T2 00:00-08:00, T1 08:00-22:00, T2 22:00-24:00; weekends T4 all day
TARIFF = {
    0: 7,
    1: 0,
    2: [300, 200, 100, 50],
    3: [[[0, 2], [480, 1], [1320, 2]], [[0, 4]]],
    4: [[0, 0, 0, 0, 0, 1, 1]],
}


# the keys Meter reads, from a validated default config
BASE = {}
_cfg = config.default_config("m", KEY)
for _k in (
    "frontend",
    "rates",
    "meter_constant",
    "ib",
    "un",
    "imax",
    "thresholds",
    "persist_wh",
    "persist_interval",
):
    BASE[_k] = _cfg[_k]
del _cfg
# the extras the tests use, validated here once (make_meter takes these keys only)
assert (
    config.validate(
        {
            "meter_id": "m",
            "key": KEY,
            "frontend": "adc",
            "persist_wh": 50,
            "persist_interval": 900,
            "prepaid": {"enabled": True},
        }
    )["persist_wh"]
    == 50
)
if compat.MICROPYTHON:  # pytest's test_config needs the module's classes to stay the same
    del config
    compat.unload("protocol.board_config")
    gc.collect()


def make_meter(frontend="atm90e26", **extra):
    """A Meter over the default config with ``frontend`` and ``extra`` keys, its clock at T0."""
    c = dict(BASE)
    c["frontend"] = frontend
    for k in extra:
        c[k] = extra[k]
    m = Meter(c)
    m.set_clock(T0)
    return m


def load(m, fwd=0, rev=0, rp=0, rn=0, p=0, u=23000, i=5000, p_mw=0, q_mvar=0):
    """Write one front-end sample into m.out (ATM counts, or ADC P/Q in mW/mvar)."""
    out = m.out
    out[0] = fwd
    out[1] = rev
    out[2] = rp
    out[3] = rn
    out[4] = u
    out[5] = i
    out[6] = p
    out[10] = i
    out[12] = p_mw
    out[13] = q_mvar


def drop(*names):
    """Unload modules a test imported (MicroPython: frees their bytecode for the next test)."""
    compat.unload(*names)
    gc.collect()
