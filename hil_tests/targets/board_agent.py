"""HIL agent: MicroPython code the board target uploads to the board (as ``hil_agent.py`` in its scratch dir,
with emulator/bench_setup.py as ``hil_bench_setup.py``).

hil_tests/targets/board.py imports it over the raw REPL and calls one function per
operation; each prints exactly one result line ``HIL:`` + JSON (progress lines
``P <ms since boot> <import+export mWh>`` may come before it). It drives the
deployed firmware (firmware.app.App on the board's own board class, ESP32 or
RP2040) on a scratch flash directory holding a test meter's config.json, with:

- the watchdog never started (it could not be stopped again in a REPL session);
- the meter clock starting at the scenario's ``start`` (a fresh meter), or at its
  persisted clock (a meter continued after a reboot), then running in real time;
- ``running()`` False once the scenario's end (meter time) is reached;
- scripted commands (sealed by the host, hex in the spec) delivered through the
  board's ``commands()`` hook once the meter clock reaches their instant.

Spec file (JSON, written by the host): {"start", "end", "tariff", "prepaid",
"poll_ms", "commands": [[at_ts, frame_hex], ...], "progress": bool}.
MicroPython rules as in firmware/: no f-strings, "%" formatting, no typing.
"""

import json
import os
import sys

import hil_bench_setup as bench_setup  # emulator/bench_setup.py, uploaded beside the agent (targets/board.py)

from firmware import compat
from firmware.persist import exists

CS1 = 0x2C
CS2 = 0x3B


def emit(obj):
    sys.stdout.write("HIL:" + json.dumps(obj) + "\n")


def _board_class(kind):
    if kind == "rp2040":
        from firmware.boards.rp2040 import Rp2040Board

        return Rp2040Board
    from firmware.boards.esp32 import Esp32Board

    return Esp32Board


def make_board(kind, flash):
    base = _board_class(kind)

    class HilBoard(base):
        def wdt_start(self, ms):
            self._wdt = None

        def clock_at_boot(self, ts, ms):
            if ts is None and self.hil_start is not None:
                ts, ms = self.hil_start, 0
            elif ts is None:
                ts, ms = base.clock_at_boot(self, ts, ms)
                ts = int(ts)  # the unix port's time.time() is a float
            self.hil_clock0 = ts * 1000 + ms
            self.hil_tick0 = compat.ticks_ms()
            return ts, ms

        def now_ms(self):
            return self.hil_clock0 + compat.ticks_diff(compat.ticks_ms(), self.hil_tick0)

        def running(self):
            return self.hil_end is None or self.now_ms() < self.hil_end * 1000

        def commands(self):
            out = []
            cmds = self.hil_cmds
            now = self.now_ms()
            while cmds and cmds[0][0] * 1000 <= now:
                out.append(bytes.fromhex(cmds.pop(0)[1]))
            return out

    b = HilBoard(flash)
    b.hil_start = None
    b.hil_end = None
    b.hil_cmds = []
    b.hil_clock0 = 0
    b.hil_tick0 = compat.ticks_ms()
    return b


def _read_spec(path):
    with open(path) as f:
        return json.load(f)


def _app(kind, flash, spec, comms):
    from firmware.app import App

    b = make_board(kind, flash)
    b.hil_start = spec.get("start")
    b.hil_cmds = list(spec.get("commands") or [])
    app = App(b, spec.get("poll_ms"), None, comms)
    return app, b


def _total_mwh(m):
    return sum(m.imp_mwh()) + sum(m.exp_mwh())


def state(app):
    m = app.meter
    regs = m.regs
    comms = None
    if app.reporter is not None:
        comms = app.outbox.stats()
        comms["forged"] = app.cmdx.forged
        comms["malformed"] = app.cmdx.malformed
    return {
        "imp": regs.imp_list(),
        "exp": regs.exp_list(),
        "imp_mwh": m.imp_mwh(),
        "exp_mwh": m.exp_mwh(),
        "q": regs.q_list(),
        "balance": m.prepaid.balance if m.prepaid is not None else None,
        "relay": "closed" if m.relay_closed else "open",
        "events": m.events.code_list(),
        "tariff": m.tariff_id(),
        "rate": m.rate,
        "ts": m.now(),
        "metering": m.metering,
        "boot_count": m.boot_count,
        "seq": m.seq,
        "comms": comms,
    }


def _loop(app, b, progress):
    t0 = compat.ticks_ms()
    steps = 0
    while b.running():
        app.step()
        steps += 1
        if progress:
            sys.stdout.write("P %d %d\n" % (compat.ticks_diff(compat.ticks_ms(), t0), _total_mwh(app.meter)))
    return steps, compat.ticks_diff(compat.ticks_ms(), t0)


# -- operations ----------------------------------------------------------------------------------


def boot(kind, flash):
    """Boot a test meter; {ok, field, error, events, metering, boot_count, state_saved}."""
    app, b = _app(kind, flash, {}, False)
    b.hil_end = 0
    try:
        m = app.boot()
    except Exception as e:  # noqa: BLE001 - the boot's own error is the result
        saved = exists(flash + "/state.a") or exists(flash + "/state.b")
        emit(
            {
                "ok": False,
                "type": type(e).__name__,
                "field": getattr(e, "field", None),
                "error": str(e),
                "state_saved": saved,
            }
        )
        return
    app.shutdown()
    emit(
        {
            "ok": True,
            "field": None,
            "error": None,
            "events": m.events.code_list(),
            "metering": m.metering,
            "boot_count": m.boot_count,
            "state_saved": exists(flash + "/state.a") or exists(flash + "/state.b"),
        }
    )


def calibration(kind, flash, fault, seconds):
    """Boot with every ATM90E26 frame logged (and, with fault "cs1"/"cs2", that checksum written corrupted),
    then meter ``seconds``; the frames and the outcome."""
    from firmware import atm90e26 as A

    frames = []
    xfer = A.ATM90E26._xfer
    write = A.ATM90E26.write

    def logged(self, first, data):
        v = xfer(self, first, data)
        frames.append([first, data, v])
        return v

    def corrupting(self, addr, value):
        if (fault == "cs1" and addr == CS1) or (fault == "cs2" and addr == CS2):
            value ^= 0x0101
        return write(self, addr, value)

    A.ATM90E26._xfer = logged
    A.ATM90E26.write = corrupting
    try:
        app, b = _app(kind, flash, {}, True)
        app.boot()
    finally:
        A.ATM90E26._xfer = xfer
        A.ATM90E26.write = write
    b.hil_end = b.now_ms() // 1000 + seconds
    _loop(app, b, False)
    app.shutdown()
    emit({"frames": frames, "state": state(app)})


def measure(kind, flash, seconds):
    """Meter the bench's load for ``seconds``; energy registered and the ms it covers."""
    app, b = _app(kind, flash, {}, False)
    m = app.boot()
    e0 = _total_mwh(m)
    imp0 = sum(m.imp_mwh())
    b.hil_end = b.now_ms() // 1000 + seconds
    steps, ms = _loop(app, b, True)
    app.shutdown()
    emit(
        {
            "imp_mwh": sum(m.imp_mwh()) - imp0,
            "total_mwh": _total_mwh(m) - e0,
            "ms": ms,
            "steps": steps,
            "frontend": "atm90e26" if m.atm else "adc",
        }
    )


def run(kind, flash, spec_path):
    """Play a spec (tariff, prepaid, commands) on a test meter with reporting into its outbox."""
    spec = _read_spec(spec_path)
    app, b = _app(kind, flash, spec, True)
    app.boot()
    bench_setup.install(app, spec)
    b.hil_end = spec["end"]
    _loop(app, b, spec.get("progress", False))
    app.shutdown()
    emit({"state": state(app)})


def recover(kind, flash):
    """Reboot a test meter after a power cut, without running: what the reboot restored."""
    app, b = _app(kind, flash, {}, False)
    b.hil_end = 0
    app.boot()
    app.shutdown()
    emit({"state": state(app)})


def link(kind, flash, spec_path, host, port, linger_ms):
    """Play a spec with the MQTT link up (firmware/runner.py) against host:port."""
    import asyncio

    from firmware.runner import run_meter

    spec = _read_spec(spec_path)
    app, b = _app(kind, flash, spec, True)
    app.boot()
    bench_setup.install(app, spec)
    b.wifi = app.wifi_cfg
    b.hil_end = spec["end"]
    broker = dict(app.broker_cfg)
    broker["host"] = host
    broker["port"] = port
    asyncio.run(run_meter(app, broker, linger_ms, 2000))
    app.shutdown()
    emit({"state": state(app)})


def rmtree(path):
    """Remove a directory tree (test meters)."""
    _rmtree(path)
    emit({"removed": path})


def _rmtree(path):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        p = path + "/" + name
        if os.stat(p)[0] & 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def listdir(path):
    emit(os.listdir(path) if exists(path) else [])
