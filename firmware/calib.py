"""Calibration measurements through the firmware's own front end (tools/calibrate.py drives them).

Imported only when a calibration runs (never by the meter's loop). ``measure(board, cfg, cal,
seconds, poll_ms)`` builds the board's front end for config ``cfg`` (pins, front end), loads
calibration ``cal`` into it (the chip's registers and CS1/CS2, or the ADC front end's scales),
whatever that calibration is: measuring a meter that is not calibrated yet is what calibrating
is, so the boot rule that refuses to meter with an untrusted calibration (firmware/app.py)
does not apply here; nothing is registered or persisted. It then polls every ``poll_ms`` for
``seconds`` of the board's time and returns the means of the measured Urms (0.01 V) and
Irms (mA), the active and reactive energy over the window (ATM90E26: the chip's energy counts;
ADC: P and Q integrated over the polls) and, for the ATM90E26, the checksums and SysStatus.

``run(kind, flash_dir, cal_json, seconds, poll_ms)`` is the raw-REPL entry on a board (kind
"esp32" or "rp2040"; ``cal_json`` "" = the calibration in config.json): it prints one line
``CAL:`` + JSON. The emulator calls ``measure`` with its unix board (emulator/main.py).
"""

import json


def measure(board, cfg, cal=None, seconds=60, poll_ms=1000):
    """A dict: ms, polls, bad, urms_cv, irms_ma (means), p_wh, q_varh over the window, sysstatus;
    for the ATM90E26 also counts (the active energy counts), p_mean_w (mean of Pmean), cs1, cs2;
    or {"error": why} when the front end refuses ``cal``."""
    if cal is None:
        cal = cfg["calibration"]
    atm = cfg["frontend"] == "atm90e26"
    fe = board.frontend(cfg)
    if not fe.calibrate(cal):
        return {"error": "the metering IC rejected the calibration (CS1/CS2 or CalErr/AdjErr)"}
    out = [0] * 14
    board.elapsed_ms()
    fe.poll(out, 0)  # ATM90E26: clears the energy registers; ADC: its first window
    board.elapsed_ms()
    ms = 0
    polls = 0
    bad = 0
    su = 0
    si = 0
    ep = 0  # ATM90E26: counts (0.1 pulse); ADC: mW x ms
    eq = 0
    st = 0
    pm = 0  # ATM90E26: the sum of Pmean (W), for windows too short for the energy counts' resolution
    while ms < seconds * 1000:
        board.sleep_ms(poll_ms)
        dt = board.elapsed_ms()
        ms += dt
        if not fe.poll(out, dt):
            bad += 1
            continue
        polls += 1
        su += out[4]
        si += out[5]
        st |= out[11]
        if atm:
            pm += out[6]
            ep += out[0] - out[1]
            eq += out[2] - out[3]
        else:
            ep += out[12] * dt
            eq += out[13] * dt
    r = {"ms": ms, "polls": polls, "bad": bad, "sysstatus": st}
    n = polls or 1
    r["urms_cv"] = su / n
    r["irms_ma"] = si / n
    if atm:
        mc = cfg["meter_constant"]
        r["p_wh"] = ep * 100 / mc
        r["q_varh"] = eq * 100 / mc
        r["counts"] = ep
        r["p_mean_w"] = pm / n
        r["cs1"] = fe.driver.cs1
        r["cs2"] = fe.driver.cs2
    else:
        r["p_wh"] = ep / 3.6e9
        r["q_varh"] = eq / 3.6e9
    return r


def _board(kind, flash_dir):
    if kind == "rp2040":
        from firmware.boards.rp2040 import Rp2040Board

        return Rp2040Board(flash_dir)
    from firmware.boards.esp32 import Esp32Board

    return Esp32Board(flash_dir)


def run(kind, flash_dir, cal_json, seconds, poll_ms=1000):
    """On a board over the raw REPL: measure and print ``CAL:`` + JSON."""
    from protocol import board_config as config

    cfg = config.load(flash_dir + "/config.json")
    cal = json.loads(cal_json) if cal_json else None
    print("CAL:" + json.dumps(measure(_board(kind, flash_dir), cfg, cal, seconds, poll_ms)))
