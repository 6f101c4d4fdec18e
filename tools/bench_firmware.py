"""Firmware benchmarks: the footprint on the 32-bit frozen runtime, image sizes, step cost, a simulated year.

    .venv/bin/python tools/bench_firmware.py        (make bench runs it, after make firmware)

- Heap (the footprint target: <= 40 KiB peak with the link online, goal 32 KiB): the real
  firmware under tools/emulate.py on the unix32 runtime (MicroPython 1.28.0, 32-bit, firmware
  frozen in: ``make firmware``) with ``-X heapsize=64K``; ``heap_peak`` is the largest live heap
  (after a collection) at the firmware's high-water points (emulator/main.py), for:
  metering only (a day, each front end); the link online to a real Mosquitto through a day of
  readings; a 7-day outage (link configured, broker down) and then the backlog flush; a burst of
  commands over MQTT. Also the smallest heap the link-online day runs in (1 KiB steps), and
  the link-online day on unix64 (pip's 64-bit port, bytecode in the heap) for comparison.
- Image: the frozen image size, as the text growth of the unix32 port with firmware/manifest.py
  frozen (build/micropython-unix32-board: the firmware, protocol and asyncio a board image
  freezes) over the same port with nothing frozen (build/micropython-unix32-bare), both built
  once and kept; the same for the emulator's runtime (make firmware: + emulator/); and the .mpy
  total of what tools/deploy.py puts on a board without ``--frozen`` (firmware/manifest.py's
  modules) for xtensawin (ESP32) and armv6m (RP2040).
- Step cost: Meter.step per front end (front-end read excluded), unix32 vs unix64 vs qemu-arm
  (the emulated Cortex-M3 of make firmware-arm, through its raw REPL); and a whole emulated
  step through the bench link (a day of 60 s ATM90E26 polls, 4-rate tariff), unix32 vs qemu-arm.
- Sealing (config ``privacy``, docs/security.md): us per reading made and sealed (CBOR + COSE_Mac0
  vs COSE_Encrypt0 with AES-CCM on cryptolib) on unix32 at 64K, the bytes one seal allocates,
  the Encrypt0 state kept, the live heap after 500 seals (no growth), and the heap peak of a
  privacy meter's link-online day against the plain one's.
- Simulated year: the ATM90E26 path over 365 days with hourly polls and a 4-rate tariff, wall
  time, unix32 vs unix64.
Prints each figure beside its target and merges them into bench/results.json under "firmware".
"""

import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import build_micropython, deploy, emulate, emulate_qemu, mpy_build  # noqa: E402

eb = emulate.emulate_bench
HEAP = "64K"
HEAP_TARGET = 40 * 1024
HEAP_GOAL = 32 * 1024
START = 1710115200  # Monday 2024-03-11 00:00 UTC
DAY = 86400
LOAD = {"urms": 230, "irms": 4, "phase_deg": 10}
BURST = 32  # commands published back to back

STEP_SCRIPT = """
import sys, time, gc
sys.path.insert(0, '.')
from firmware import meter
from protocol import board_config as config
cfg = config.validate(config.default_config('bench-01', '00' * 32))
cfg['frontend'] = '%s'
m = meter.Meter(cfg)
m.set_clock(1767225600)
o = m.out
o[0] = 3; o[1] = 0; o[2] = 1; o[3] = 0; o[4] = 23000; o[5] = 5000; o[6] = 1150; o[7] = 100
o[12] = 1150000; o[13] = 100000
m.step(%d, True)
n = %d
gc.collect()
t = time.ticks_us()
for _ in range(n):
    m.step(%d, True)
dt = time.ticks_diff(time.ticks_us(), t)
print(dt / n)
"""

TARIFF = {"0": 1, "1": 0, "2": [1200, 950, 620, 310],
          "3": [[[0, 4], [420, 3], [600, 2], [660, 1], [780, 3], [1080, 2], [1260, 3], [1380, 4]],
                [[0, 4], [480, 3], [1320, 4]]],
          "4": [[0, 0, 0, 0, 0, 1, 1]], "7": 480}  # fmt: skip


def _scenario(tmp, name, **sc):
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(sc, f)
    return path


def _url(port):
    return "mqtt://%s:x@127.0.0.1:%d" % (eb.METER_ID, port)


def _heap_verdict(peak):
    if peak is None:
        return "n/a"
    if peak <= HEAP_GOAL:
        return "met (goal too)"
    return "met" if peak <= HEAP_TARGET else "ABOVE"


class Figures:
    def __init__(self):
        self.rows = []

    def __call__(self, name, value, target="", verdict="", command=""):
        self.rows.append(
            {"name": name, "value": value, "target": target, "verdict": verdict, "command": command}
        )
        print("%-52s %12s %22s  %s" % (name, value, target, verdict))
        sys.stdout.flush()


# -- sizes ------------------------------------------------------------------------------------------


def sizes(fig):
    exe = build_micropython.ensure(quiet=True)
    bare = build_micropython.build_bare(quiet=True)
    board = build_micropython.build_board(quiet=True)
    text, image = build_micropython.text_size(exe), build_micropython.image_size(exe)
    cmd = "size build/micropython-unix32{-bare,-board,}/micropython"
    fig("frozen image, board manifest: text growth, bytes", board["text"] - bare["text"], "", "",
        cmd + ": text of -board minus -bare")  # fmt: skip
    fig("frozen image, board manifest: text+data growth", board["image"] - bare["image"], "", "",
        cmd + ": text+data (.data.rel.ro: constant objects with pointers; flash on a board)")  # fmt: skip
    fig("frozen image, emulator runtime: text growth, bytes", text - bare["text"], "", "",
        cmd + ": text of unix32 (firmware + emulator/) minus -bare")  # fmt: skip
    fig("frozen image, emulator runtime: text+data growth", image - bare["image"], "", "", cmd)
    fig("unix32 text with nothing frozen, bytes", bare["text"], "", "", cmd)
    with tempfile.TemporaryDirectory() as tmp:
        for board, arch in sorted(deploy.BOARDS.items()):
            r = deploy.compile_tree(os.path.join(tmp, board), arch)
            fig(
                ".mpy total for a board, %s (%d files), bytes" % (arch, r["files"]),
                r["bytes"],
                "",
                "",
                "mpy-cross -march=%s over firmware/manifest.py's modules (tools/deploy.py)" % arch,
            )


# -- heap -------------------------------------------------------------------------------------------


def _run(sc, flash, heap=HEAP, runtime="unix32", **kw):
    state, _err = emulate.run(sc, flash, heap=heap, runtime_name=runtime, **kw)
    return state


class Listener:
    """A paho client on the meter's topics: counts acks, publishes commands."""

    def __init__(self, port):
        import paho.mqtt.client as mqtt

        self.got = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-listener")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("ami/v1/+/up/#", 1)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.got.append(msg.topic.rsplit("/", 1)[-1])

    def count(self, kind):
        with self.lock:
            return self.got.count(kind)

    def wait(self, pred, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return True
            time.sleep(0.05)
        return False

    def publish(self, topic, payload):
        return self.c.publish(topic, payload, qos=1)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def _burst(tmp, broker, fig):
    """BURST commands over MQTT while the meter is online; heap_peak of that run."""
    from protocol import messages as M
    from protocol import topics

    key = bytes.fromhex(eb.KEY_HEX)
    flash = os.path.join(tmp, "burst-flash")
    sc = _scenario(tmp, "burst", start=START, segments=[{"seconds": 7200, **LOAD}])
    lis = Listener(broker.port)
    s = emulate.Session(
        sc, flash, HEAP, broker=_url(broker.port), speed=240, linger=30, runtime_name="unix32"
    )
    done = []
    t = threading.Thread(target=lambda: done.append(s.wait(300)))
    t.start()
    try:
        if not lis.wait(lambda: lis.count("status") > 0, 60):
            raise RuntimeError("the meter did not come online")
        cmds = []
        for i in range(BURST):  # read-now and relay close/open, alternating
            if i % 2:
                cmd = M.command(i + 1, START, M.CMD_RELAY, {0: (i // 2) % 2, 1: 0})
            else:
                cmd = M.command(i + 1, START, M.CMD_READ_NOW, {})
            cmds.append(M.seal(key, eb.METER_ID, cmd))
        topic = topics.down_cmd(eb.METER_ID)
        for frame in cmds:
            lis.publish(topic, frame)
        acked = lis.wait(lambda: lis.count("ack") >= BURST, 60)
    finally:
        t.join()
        lis.close()
    state, err, rc = done[0]
    if state is None or rc != 0:
        raise RuntimeError("burst run failed (exit %s): %s" % (rc, err[-2000:]))
    peak = state["heap_peak"]
    fig(
        "heap peak, burst of %d commands over MQTT, bytes" % BURST,
        peak,
        "<= 40960 (goal 32768)",
        _heap_verdict(peak) + ("" if acked else " (not all acked!)"),
        "tools/bench_firmware.py: emulate.py --runtime unix32 --heap 64K --broker, %d commands" % BURST,
    )


def smallest_heap(tmp, broker, lo_k=24, hi_k=64):
    """The smallest -X heapsize (KiB) the link-online day completes in, by bisection."""
    sc = _scenario(tmp, "day-min", start=START, segments=[{"seconds": DAY, **LOAD}])

    def runs(k):
        flash = os.path.join(tmp, "min-%d" % k)
        try:
            state = _run(sc, flash, heap="%dK" % k, broker=_url(broker.port), linger=30)
        except emulate.EmulatorError:
            return False
        return state["comms"]["pending"] == 0

    if not runs(hi_k):
        return None
    while hi_k - lo_k > 1:
        mid = (lo_k + hi_k) // 2
        if runs(mid):
            hi_k = mid
        else:
            lo_k = mid
    return hi_k


def heap(fig):
    from tools.mosquitto_broker import MosquittoBroker, free_port

    cmd_base = "python tools/emulate.py --runtime unix32 --heap 64K --json --scenario S --flash D"
    with tempfile.TemporaryDirectory() as tmp:
        for fe in ("atm90e26", "adc"):
            sc = _scenario(
                tmp,
                "meter-" + fe,
                frontend=fe,
                start=START,
                tariff=TARIFF,
                segments=[{"seconds": DAY, "urms": 230, "irms": 5, "phase_deg": 30, "noise_lsb": 1}],
            )
            state = _run(sc, os.path.join(tmp, "meter-" + fe))
            fig(
                "heap peak, metering only, %s, a day, bytes" % fe,
                state["heap_peak"],
                "<= 40960 (goal 32768)",
                _heap_verdict(state["heap_peak"]),
                cmd_base + " (a day, 4-rate tariff)",
            )

        day = _scenario(tmp, "day", start=START, segments=[{"seconds": DAY, **LOAD}])
        week = _scenario(tmp, "week", start=START, segments=[{"seconds": 7 * DAY, **LOAD}])
        flush = _scenario(tmp, "flush", start=START, segments=[{"seconds": 7 * DAY + 3600, **LOAD}])
        port = free_port()
        # the 7-day outage first: link configured, nothing listening on the port
        out = _run(week, os.path.join(tmp, "backlog"), broker=_url(port))
        fig(
            "heap peak, 7-day outage (broker down), bytes",
            out["heap_peak"],
            "<= 40960 (goal 32768)",
            _heap_verdict(out["heap_peak"]),
            cmd_base + " --broker mqtt://...:<closed port> (7 days)",
        )
        with MosquittoBroker(tmp, port=port) as broker:
            state = _run(day, os.path.join(tmp, "online"), broker=_url(port), linger=30)
            assert state["comms"]["pending"] == 0, state["comms"]
            fig(
                "heap peak, link online, a day of readings, bytes",
                state["heap_peak"],
                "<= 40960 (goal 32768)",
                _heap_verdict(state["heap_peak"]),
                cmd_base + " --broker mqtt://emu-0001:x@<mosquitto> (a day)",
            )
            state = _run(flush, os.path.join(tmp, "backlog"), broker=_url(port), linger=60)
            fig(
                "heap peak, backlog flush of %d messages, bytes" % out["comms"]["pending"],
                state["heap_peak"],
                "<= 40960 (goal 32768)",
                _heap_verdict(state["heap_peak"])
                + ("" if state["comms"]["pending"] == 0 else " (not flushed!)"),
                cmd_base + " --broker ... (the same flash after the outage, + 1 h)",
            )
            _burst(tmp, broker, fig)
            k = smallest_heap(tmp, broker)
            fig(
                "smallest heap running the link-online day, KiB",
                k,
                "<= 64",
                "met" if k and k <= 64 else "ABOVE",
                "emulate.py --runtime unix32 --heap NK --broker ..., bisection in 1 KiB steps",
            )
            state = _run(
                day, os.path.join(tmp, "online64"), heap=None, runtime="unix64", broker=_url(port), linger=30
            )
            fig(
                "unix64 (bytecode in heap): link online day, heap peak",
                state["heap_peak"],
                "(comparison)",
                "",
                "python tools/emulate.py --runtime unix64 --heap 256K --broker ... (a day)",
            )


# -- sealing (privacy) ------------------------------------------------------------------------------

SEAL_SCRIPT = """
import time, gc
from protocol import cbor, cose, cose_enc
key = bytes(range(32))
kid = b'emu-0001'
msg = {0: 1, 1: 0, 2: 1767225600, 3: 900, 4: [12345678, 2345678, 345678, 45678], 5: [0, 0, 0, 0],
       6: [100000, 0, 0, 2000], 7: {0: 230000, 1: 5000, 2: 1150, 3: 100, 4: 996, 5: 50000, 6: 5000},
       9: 0, 11: 1}
gc.collect()
a = gc.mem_alloc()
enc = cose_enc.Encrypt0(key, kid)
gc.collect()
state = gc.mem_alloc() - a
def seal(kind, seq):
    msg[1] = seq
    p = cbor.dumps(msg)
    return enc.seal(0, seq, p) if kind else cose.mac0_encode(key, kid, p)
for kind in (0, 1):
    n = 500
    for i in range(50):  # warm up: first-use allocations (hash objects, interned names) out of the way
        f = seal(kind, i + 1)
    f = None
    gc.collect()
    base = gc.mem_alloc()
    t = time.ticks_us()
    for i in range(n):
        f = seal(kind, i + 51)
    dt = time.ticks_diff(time.ticks_us(), t)
    f = None
    gc.collect()
    grow = gc.mem_alloc() - base
    gc.disable()
    a0 = gc.mem_alloc()
    f = seal(kind, n + 51)
    per = gc.mem_alloc() - a0
    gc.enable()
    print(kind, dt / n, per, grow, len(f), state)
"""


def sealing(fig):
    from tools.mosquitto_broker import MosquittoBroker, free_port

    exe = build_micropython.ensure(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [exe, "-X", "heapsize=64K", "-c", SEAL_SCRIPT],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
        )
        rows = [line.split() for line in out.stdout.split("\n") if line.strip()]
        cmd = "micropython -X heapsize=64K: 500 x (CBOR of a 4-rate reading + seal) (tools/bench_firmware.py)"
        for kind, us, per, grow, size, state in rows:
            name = "COSE_Encrypt0 (AES-CCM)" if kind == "1" else "COSE_Mac0 (HMAC)"
            fig("reading made and sealed, %s, unix32, us" % name, round(float(us), 1), "", "", cmd)
            fig("bytes allocated by one sealed reading, %s" % name, int(per), "", "", cmd)
            fig(
                "live heap growth after 500 seals, %s, bytes" % name,
                int(grow),
                "0",
                "met" if int(grow) <= 0 else "GROWS",
                cmd,
            )
            if kind == "1":
                fig("Encrypt0 state (derived key, AES context, buffers), bytes", int(state), "", "", cmd)
                fig("sealed reading frame, bytes", int(size), "", "", cmd)
        port = free_port()
        day = _scenario(tmp, "day", start=START, segments=[{"seconds": DAY, **LOAD}])
        with MosquittoBroker(tmp, port=port):
            peaks = {}
            for privacy in (False, True):
                flash = os.path.join(tmp, "privacy-%s" % privacy)
                os.makedirs(flash)
                cfg = eb.default_config(eb.Scenario(json.loads(pathlib.Path(day).read_text())))
                cfg["privacy"] = privacy
                from protocol import board_config

                eb._write_config(os.path.join(flash, "config.json"), board_config.to_json(cfg))
                state = _run(day, flash, broker=_url(port), linger=30)
                assert state["comms"]["pending"] == 0, state["comms"]
                peaks[privacy] = state["heap_peak"]
                fig(
                    "heap peak, link online, a day, privacy %s, bytes" % ("on" if privacy else "off"),
                    state["heap_peak"],
                    "<= 40960 (goal 32768)",
                    _heap_verdict(state["heap_peak"]),
                    "python tools/emulate.py --runtime unix32 --heap 64K --broker ... (config privacy %s)"
                    % str(privacy).lower(),
                )


# -- speed ------------------------------------------------------------------------------------------


def step_cost(fig):
    exe32 = build_micropython.ensure(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        tree64 = os.path.join(tmp, "mpy")
        mpy_build.build(tree64)
        empty = os.path.join(tmp, "frozen")  # nothing to import from: the frozen modules run
        os.makedirs(empty)
        for fe, dt in (("atm90e26", 1000), ("adc", 10000)):
            code = STEP_SCRIPT % (fe, dt, 20000, dt)
            for rt, exe, cwd in (("unix32", exe32, empty), ("unix64", emulate.micropython_exe(), tree64)):
                out = subprocess.run(
                    [exe, "-X", "heapsize=64K", "-c", code],
                    cwd=cwd,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                fig(
                    "Meter.step cost, %s, %s, us" % (fe, rt),
                    round(float(out.stdout.strip()), 2),
                    "",
                    "",
                    "micropython -X heapsize=64K: 20000 x Meter.step(%d ms) (tools/bench_firmware.py)" % dt,
                )
            fig(
                "Meter.step cost, %s, qemu-arm, us" % fe,
                round(float(emulate_qemu.exec_script(code).strip()), 2),
                "",
                "",
                "qemu-system-arm -machine mps2-an385 (make firmware-arm), raw REPL: 20000 x Meter.step(%d ms)"
                % dt,
            )
    sc = {"frontend": "atm90e26", "start": START, "segments": [dict(LOAD, seconds=DAY)], "tariff": TARIFF}
    with tempfile.TemporaryDirectory() as tmp:
        path = _scenario(tmp, "day", **sc)
        for rt in ("unix32", "qemu-arm"):
            state = _run(path, os.path.join(tmp, "flash-" + rt), heap=None, runtime=rt)
            fig(
                "emulated 60 s step through the bench link, %s, ms" % rt,
                round(state["wall_ms"] / state["steps"], 2),
                "",
                "",
                "python tools/emulate.py --runtime %s (a day, ATM90E26: 13 link round trips a step; "
                "wall_ms / steps)" % rt,
            )


def year(fig):
    sc = {
        "frontend": "atm90e26",
        "start": 1767196800,
        "mains_hz": 50,
        "poll_ms": 3600000,
        "segments": [{"seconds": 365 * DAY, "urms": 230, "irms": 8, "phase_deg": 20}],
        "tariff": TARIFF,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = _scenario(tmp, "year", **sc)
        for rt in ("unix32", "unix64"):
            print("simulating a year of the ATM90E26 path on %s ..." % rt, file=sys.stderr)
            t0 = time.monotonic()
            state = _run(path, os.path.join(tmp, "flash-" + rt), heap=None, runtime=rt)
            wall = time.monotonic() - t0
            fig(
                "simulated year, ATM90E26 path, %s, wall s" % rt,
                round(wall, 1),
                "",
                "",
                "python tools/emulate.py --runtime %s (365 days, hourly polls)" % rt,
            )
        fig("simulated year, registered import kWh", round(sum(state["imp_mwh"]) / 1e6, 3))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    fig = Figures()
    if argv == ["--sealing"]:  # only the privacy figures (printed, not merged into bench/results.json)
        sealing(fig)
        return 0
    print("%-52s %12s %22s" % ("figure", "value", "target"))
    emulate.ensure_built("unix64")
    sizes(fig)
    heap(fig)
    sealing(fig)
    step_cost(fig)
    year(fig)
    path = ROOT / "bench" / "results.json"
    path.parent.mkdir(exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    results["firmware"] = {
        "figures": fig.rows,
        "machine": "%s, %d CPUs" % (platform.machine(), os.cpu_count()),
        "runtime": "unix32: MicroPython %s unix port, gcc -m32, firmware frozen; heap %s"
        % (build_micropython.VERSION, HEAP),
        "command": "python tools/bench_firmware.py",
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
