"""Firmware benchmarks: .mpy size, heap under the emulator, step cost, a simulated year.

    .venv/bin/python tools/bench_firmware.py

- .mpy size: tools/mpy_build.py output for what a board gets (firmware/
  without firmware/emulator/, and protocol/).
- Heap: tools/emulate.py runs the real firmware on the unix port for an
  hour of each front end and reports the firmware process's heap peak
  (sampled after collections) and the heap it was given.
- Step cost: micropython times Meter.step (the measurement loop's work per
  poll, front-end read excluded) over many steps, per front end.
- Simulated year: the ATM90E26 path over 365 days with hourly polls and a
  4-rate tariff through tools/emulate.py, wall time.
Prints a table and merges figures into bench/results.json under "firmware".
"""

import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import mpy_build  # noqa: E402

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


def micropython():
    return os.path.join(os.path.dirname(sys.executable), "micropython")


def emulate(scenario, poll_ms=None):
    with tempfile.TemporaryDirectory() as tmp:
        sc = os.path.join(tmp, "sc.json")
        with open(sc, "w") as f:
            json.dump(scenario, f)
        t0 = time.monotonic()
        out = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "emulate.py"), "--scenario", sc, "--flash",
             os.path.join(tmp, "flash"), "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout), time.monotonic() - t0


def main():
    figures = []

    def fig(name, value, target="", verdict=""):
        figures.append({"name": name, "value": value, "target": target, "verdict": verdict})
        print("%-46s %14s %12s  %s" % (name, value, target, verdict))
        sys.stdout.flush()

    print("%-46s %14s %12s" % ("figure", "value", "target"))
    with tempfile.TemporaryDirectory() as tmp:
        mpy_build.build(tmp)
        board = sum(
            os.path.getsize(os.path.join(d, f))
            for d, _, fs in os.walk(os.path.join(tmp, "firmware"))
            if "emulator" not in d
            for f in fs
            if f.endswith(".mpy")
        )
        proto = sum(
            os.path.getsize(os.path.join(tmp, "protocol", f))
            for f in os.listdir(os.path.join(tmp, "protocol"))
            if f.endswith(".mpy")
        )
        fig(".mpy bytes, firmware for a board", board)
        fig(".mpy bytes, protocol", proto)
        for fe, dt in (("atm90e26", 1000), ("adc", 10000)):
            code = STEP_SCRIPT % (fe, dt, 20000, dt)
            out = subprocess.run([micropython(), "-X", "heapsize=64K", "-c", code], cwd=tmp,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            fig("Meter.step cost, %s, us (unix port)" % fe, round(float(out.stdout.strip()), 2))

    for fe in ("atm90e26", "adc"):
        seg = {"seconds": 3600, "urms": 230, "irms": 5, "phase_deg": 30, "harmonics": [], "noise_lsb": 1}
        state, wall = emulate({"frontend": fe, "start": 1767225600, "mains_hz": 50, "segments": [seg],
                               "tariff": TARIFF})  # fmt: skip
        fig("firmware heap peak, %s, bytes" % fe, state.get("heap_peak"), "<= 65536",
            "met" if (state.get("heap_peak") or 1 << 30) <= 65536 else "ABOVE")  # fmt: skip
        fig("firmware heap given, %s" % fe, state.get("heap_size"))

    year = {"frontend": "atm90e26", "start": 1767196800, "mains_hz": 50, "poll_ms": 3600000,
            "segments": [{"seconds": 365 * 86400, "urms": 230, "irms": 8, "phase_deg": 20}],
            "tariff": TARIFF}  # fmt: skip
    print("simulating a year of the ATM90E26 path ...", file=sys.stderr)
    state, wall = emulate(year)
    fig("simulated year, ATM90E26 path, wall s", round(wall, 1))
    fig("simulated year, registered import kWh", round(sum(state["imp_mwh"]) / 1e6, 3))

    path = ROOT / "bench" / "results.json"
    path.parent.mkdir(exist_ok=True)
    results = json.loads(path.read_text()) if path.exists() else {}
    machine = "%s, %d CPUs" % (platform.machine(), os.cpu_count())
    results["firmware"] = {
        "figures": figures,
        "machine": machine,
        "command": "python tools/bench_firmware.py",
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
