"""The emulator's firmware process, started by tools/emulate.py as ``micropython -m emulator.main``.

Host-only (never on a board): frozen into the unix32 runtime by emulator/manifest.py.

Its stdin and stdout are the link to the test bench (emulator/bench_link.py);
the bench sends the setup (flash directory, the scenario's tariff, prepaid
balance and poll period) in its HELLO reply. Builds the unix board, boots the
shared app loop (firmware/app.py), installs the tariff and prepaid balance
when the meter does not have them yet, runs until the bench says the
scenario is over (with a broker in the setup: firmware/runner.py, the
metering loop and the MQTT link under asyncio, at the setup's speed, then
up to linger_s real s to empty the outbox), saves with the clean mark and sends the final state as
JSON in a REPORT request. With ``calib`` in the setup (tools/calibrate.py: {cal, seconds,
poll_ms}) it boots no meter: firmware/calib.py measures the front end with that calibration
and the REPORT carries the measurement; with ``selftest`` (tools/deploy.py --selftest --flash)
the REPORT carries firmware/selftest.py's checks. The boot line goes to stderr
(``boot N restored R seq S ts T rec C``: boot count, state loaded, its slot
seq, clock, storage recoveries so far; the kill test reads it).

Heap: ``heap_peak`` in the report is the largest live heap (bytes in use
right after a collection) seen at the high-water points: end of boot, the
first saves and every 1024th, the report itself and, with the MQTT link,
every step of the asyncio loop (the link's tasks parked mid-work, their
buffers live: UnixBoard.asleep_ms); ``heap_size`` is the
heap's total size (micropython -X heapsize). With EMULATE_TRACE_HEAP=1 in
the bench's environment each sample goes to stderr with the loaded modules.
"""

import gc
import sys

from emulator import bench_setup
from emulator.bench_link import BenchLink
from emulator.unix_board import UnixBoard
from firmware import app as app_mod

RECONNECT_MAX_MS = 2000  # the emulator retries a lost broker quickly (boards: 300 s)


class HeapProbe:
    """Samples the live heap (after a collection): the first 8 boot/save samples and every 1024th
    save after them, the report, and with the MQTT link every step of the asyncio loop ("link")."""

    def __init__(self):
        self.peak = 0
        self.calls = 0
        self.trace = False
        self.log = sys.stderr.write

    def __call__(self, where):
        if where != "link":
            self.calls += 1
            if self.calls > 8 and self.calls & 1023:
                return
        gc.collect()
        a = gc.mem_alloc()
        if self.trace:
            self.log("heap %s %d %r\n" % (where, a, sorted(sys.modules)))
        if a > self.peak:
            self.peak = a


def _comms_report(app, link_stats=None):
    if app.reporter is None:
        return None
    x = app.cmdx
    st = app.outbox.stats()
    st["acks"] = x.results
    st["forged"] = x.forged
    st["malformed"] = x.malformed
    st["last_reading_ts"] = app.reporter.last_reading_ts
    st["link"] = link_stats
    return st


def result(app, steps, wall_ms, probe, link_stats=None):
    m = app.meter
    regs = m.regs
    probe("report")
    return {
        "imp": regs.imp_list(),
        "exp": regs.exp_list(),
        "imp_mwh": m.imp_mwh(),
        "exp_mwh": m.exp_mwh(),
        "q": regs.q_list(),
        "q_mvarh": [regs.q_mvarh(k) for k in range(1, 5)],
        "balance": m.prepaid.balance if m.prepaid is not None else None,
        "relay": "closed" if m.relay_closed else "open",
        "events": m.events.code_list(),
        "events_dropped": m.events.dropped,
        "registers": regs.snapshot(),
        "frontend": "atm90e26" if m.atm else "adc",
        "tariff": m.tariff_id(),
        "rate": m.rate,
        "ts": m.now(),
        "steps": steps,
        "bad_reads": m.bad_reads,
        "boot_count": m.boot_count,
        "storage_recoveries": m.storage_recoveries,
        "saves": app.policy.saves,
        "metering": m.metering,
        "metering_fault": app.metering_fault,  # why metering was refused at boot (firmware/app.py), or None
        "wall_ms": wall_ms,
        "seq": m.seq,
        "cmd_hi": app.reporter.cmd_hi if app.reporter is not None else None,
        "tamper": m.tamper,
        "comms": _comms_report(app, link_stats),
        "heap_live": gc.mem_alloc(),  # bytes in use after the last collection
        "heap_peak": probe.peak,
        "heap_size": gc.mem_alloc() + gc.mem_free(),
        # frozen into the runtime's image (unix32, a board) or loaded from .mpy files into the heap
        "frozen": not app_mod.__file__.endswith(".mpy"),
    }


def _calib(link, board, calib):
    """tools/calibrate.py's measurement (firmware/calib.py) instead of the meter: the report is its result."""
    import json

    from firmware import calib as calib_mod
    from protocol import board_config as config

    cfg = config.load(board.flash_dir + "/config.json")
    r = calib_mod.measure(board, cfg, calib.get("cal"), calib["seconds"], calib["poll_ms"])
    link.report(json.dumps(r).encode())


def _selftest(link, board):
    """firmware/selftest.py's checks on the unix board (tools/deploy.py --selftest --flash DIR)."""
    import json

    import firmware
    from protocol import board_config as config

    firmware.selftest_args = False  # imported to be called, not to run at import
    from firmware import selftest

    rows = selftest.run(board, config.load(board.flash_dir + "/config.json"))
    link.report(json.dumps({"rows": rows}).encode())


def main(link=None, prepare=None, log=None):
    """Run the meter on the bench's link: by default stdin/stdout, text to stderr. The qemu-arm
    runtime (emulator/qemu_main.py) passes its UART ``link``, ``prepare(setup)`` (mounts its flash,
    points setup["flash"] at it) and ``log`` (text to qemu's stderr through semihosting)."""
    from firmware import compat

    if link is None:
        link = BenchLink(sys.stdin.buffer, sys.stdout.buffer)
    setup = link.hello()
    if prepare is not None:
        prepare(setup)
    log = log or sys.stderr.write
    probe = HeapProbe()
    probe.log = log
    probe.trace = setup.get("trace_heap", False)
    board = UnixBoard(link, setup["flash"], probe)
    if setup.get("calib") is not None:
        return _calib(link, board, setup["calib"])
    if setup.get("selftest"):
        return _selftest(link, board)
    app = app_mod.App(board, setup.get("poll_ms"), probe, setup.get("comms", False))
    m = app.boot()
    log(
        "boot %d restored %d seq %d ts %d rec %d\n"
        % (m.boot_count, app.restored, app.store.seq, app.boot_ts, m.storage_recoveries)
    )
    if app.metering_fault is not None:
        log("meter: %s\n" % app.metering_fault)
    bench_setup.install(app, setup)
    broker = setup.get("broker")
    app.board.speed_permille = int((setup.get("speed") or 0) * 1000)
    linger_ms = int(setup.get("linger_s", 0) * 1000)
    setup = None
    probe("run")
    t0 = compat.ticks_ms()
    link_stats = None
    if broker is None:
        steps = app.run()
    else:
        import asyncio

        from firmware.runner import run_meter

        comms = asyncio.run(run_meter(app, broker, linger_ms, RECONNECT_MAX_MS))
        steps = app.steps
        link_stats = {
            "connects": comms.connects,
            "failures": comms.failures,
            "published": comms.published,
            "last_error": comms.last_error,
            # firmware/comms.py LINK_*: 0 idle, 1 up, 2 refused, 3 unreachable, 4 lost
            "state": comms.state,
            "refused": comms.refused,  # CONNACK return code of the last refusal, 0 none
        }
    wall = compat.ticks_diff(compat.ticks_ms(), t0)
    app.shutdown()
    app.fe = None  # the front end is done: its buffers make room for the report
    import json

    link.report(json.dumps(result(app, steps, wall, probe, link_stats)).encode())


if __name__ == "__main__":
    main()
