"""Calibrate a meter against a reference load: measure through the firmware, write verified gains.

Usage:
    python tools/calibrate.py --flash DIR --frontend atm90e26|adc --ref-volts V --ref-amps A
        [--ref-watts P1 P05 | --ref-wh WH1 WH05] [--seconds S] [--runtime unix32|unix64]
    python tools/calibrate.py --port PORT --board esp32|rp2040 --frontend atm90e26|adc
        --ref-volts V --ref-amps A (--ref-watts P1 P05 | --ref-wh WH1 WH05) [--seconds S] [--yes]

Two calibration points, as a meter test bench applies them: the reference voltage and current
(--ref-volts, --ref-amps: Un and Ib) at PF 1, then at PF 0.5 inductive (current lagging 60 deg).
The reference's active power at each point (--ref-watts P1 P05) or a reference meter's Wh over
each measurement window of --seconds (--ref-wh WH1 WH05) is what the meter must register.

Steps:

1. read the meter's config.json (``--flash DIR``: the emulator's flash directory; ``--port``:
   the board's ``/flash/config.json`` over the raw REPL, with main.py set aside and the board
   reset first, as hil_tests' board target does, since the running firmware's watchdog cannot
   be stopped). An empty --flash DIR starts as a fresh meter: tools/emulate_bench's default
   config (meter "emu-0001") with the identity calibration (the ATM90E26's power-on gains, or
   the ADC front end's design scales), which the firmware refuses to meter with;
2. measure each point through the firmware (firmware/calib.py: the board's front end loaded
   with the config's current calibration, trusted or not; the chip's energy counts or the ADC's
   integrated power over the window; mean Urms and Irms). On a board the tool waits for Enter
   between the points (--yes: it does not) while you set the load to PF 0.5;
3. compute the gains from the ratios of measured to reference values, relative to the gains
   in force: ATM90E26 Ugain and IgainL (Urms, Irms), Lgain, the L line's energy (power) gain
   (``energy_gain``; the PL constant stays the one the meter constant and rating give), Lphi
   from the PF 0.5 point's ratio once the gain is divided out (``phase_comp``); the firmware's
   calibrate() writes them with CS1/CS2 recomputed over the new register blocks (printed). ADC:
   v_scale and i_scale from Urms and Irms, phasecal from the PF 0.5 point (the current
   channel's extra delay as a fraction of a sample period, Q14);
4. write config.json with the new calibration (the old one is kept in memory), reboot (a new
   firmware process on the emulator; ``machine.reset()`` on a board), measure both points again
   and compare with the reference: every energy error within 0.2 % (TOLERANCE_PCT) keeps the new
   config; otherwise the old config.json is written back, the tool says which point failed and
   exits 1. A board's verified calibration also goes into the local copy of its config.json
   given as ``--config`` (else it is printed as JSON), so a redeploy keeps it.

Exit status: 0 calibrated and verified, 1 verification failed (old config kept) or an error.

The emulator's factory calibration is this procedure run against the models (``factory``,
called by tools/emulate_bench.py for a config without a calibration): the emulator's chip and
ADC models keep their manufacturing errors (emulate_bench.SENSOR_ERRORS, ADC_ERRORS), and the
reference is the load the bench applies (V x A x cos phi).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tools")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

TOLERANCE_PCT = 0.2
POINTS = (("PF 1", 0.0), ("PF 0.5 ind", 60.0))
EMU_SECONDS = 3600  # emulated s per point: energy resolution 0.003 % at 230 V, 5 A (ATM90E26)
BOARD_SECONDS = 60
POLL_MS = {"atm90e26": 60000, "adc": 60000}  # emulator: one ADC window a poll at Ib


class CalibrationFailed(Exception):
    """The tool cannot calibrate (the message says why); the old config is in place."""


# -- the computation ------------------------------------------------------------------------------


MIN_COUNTS = 20000  # energy counts that resolve 0.005 %; below, the ATM90E26's Pmean (1 W) is used


def meas_wh(m):
    """The meter's energy over measurement ``m``: its energy counts, or for a window too short to
    resolve them (a board's 60 s: ~600 counts at 1 kW) the mean Pmean over the window."""
    if m.get("counts") is not None and abs(m["counts"]) < MIN_COUNTS:
        return m["p_mean_w"] * m["ms"] / 3.6e6
    return m["p_wh"]


def ref_wh(ref, k, m):
    """The reference energy of point k over measurement ``m``."""
    if ref.get("wh"):
        return ref["wh"][k]
    return ref["watts"][k] * m["ms"] / 3.6e6


def errors(ref, ms):
    """Per point: (energy error %, Urms error %, Irms error %)."""
    out = []
    for k, m in enumerate(ms):
        e = (meas_wh(m) / ref_wh(ref, k, m) - 1) * 100
        u = (m["urms_cv"] / (ref["volts"] * 100) - 1) * 100
        i = (m["irms_ma"] / (ref["amps"] * 1000) - 1) * 100
        out.append((e, u, i))
    return out


def _angle(ref):
    """The PF 0.5 point's load angle from the reference's own figures (60 deg when exact)."""
    if ref.get("watts"):
        c = ref["watts"][1] / ref["watts"][0]  # P05 / P1 = cos(phi) at the same V and I
    else:
        c = ref["wh"][1] / ref["wh"][0]
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def compute(cfg, old, ref, ms):
    """The new calibration dict from the two measurements ``ms`` taken with calibration ``old``."""
    from firmware import atm90e26_reg as reg
    from firmware.atm90e26_cal import adjust_gain, energy_gain, phase_comp

    m1, m2 = ms
    r1 = meas_wh(m1) / ref_wh(ref, 0, m1)  # measured / reference energy
    r2 = meas_wh(m2) / ref_wh(ref, 1, m2)
    angle = _angle(ref)
    new = dict(old)
    if cfg["frontend"] == "atm90e26":
        new["ugain"] = adjust_gain(m1["urms_cv"], ref["volts"] * 100, old.get("ugain", reg.DEF_UGAIN))
        new["igainl"] = adjust_gain(m1["irms_ma"], ref["amps"] * 1000, old.get("igainl", reg.DEF_IGAINL))
        new["lgain"] = energy_gain(meas_wh(m1), ref_wh(ref, 0, m1), old.get("lgain", 0))
        new["lphi"] = phase_comp(r2 / r1, 1.0, angle, old.get("lphi", 0))
        return new
    from firmware.adc_frontend import DEFAULTS

    gu = ref["volts"] * 100 / m1["urms_cv"]
    gi = ref["amps"] * 1000 / m1["irms_ma"]
    new["v_scale"] = int(round(old.get("v_scale", DEFAULTS["v_scale"]) * gu))
    new["i_scale"] = int(round(old.get("i_scale", DEFAULTS["i_scale"]) * gi))
    # the PF 0.5 point with the gain divided out: cos(phi + d) / cos(phi), d = the current's extra lag
    c = max(-1.0, min(1.0, r2 / r1 * math.cos(math.radians(angle))))
    d = math.degrees(math.acos(c)) - angle
    spc = old.get("samples_per_cycle", DEFAULTS["samples_per_cycle"])
    # a current that seems to lag d deg more is sampled d/360 of a cycle early: interpolate the
    # voltage that much earlier (phasecal is the current sample's lag in Q14 sample periods)
    new["phasecal"] = int(round(old.get("phasecal", DEFAULTS["phasecal"]) - d / 360.0 * spc * 16384))
    return new


def checksums(cal):
    """ATM90E26 (CS1, CS2) of a calibration dict, as the firmware writes them."""
    from firmware.atm90e26_cal import calibration_words, checksum

    cal_words, adj_words, _f, _s = calibration_words(cal)
    return checksum(cal_words), checksum(adj_words)


def table(title, ref, ms, out):
    print(title, file=out)
    print(
        "  %-11s %12s %12s %9s %9s %9s" % ("point", "ref Wh", "meter Wh", "error %", "Urms %", "Irms %"),
        file=out,
    )
    for k, (e, u, i) in enumerate(errors(ref, ms)):
        row = (POINTS[k][0], ref_wh(ref, k, ms[k]), meas_wh(ms[k]), e, u, i)
        print("  %-11s %12.4f %12.4f %+9.3f %+9.3f %+9.3f" % row, file=out)


# -- targets ----------------------------------------------------------------------------------------


class EmulatorTarget:
    """The emulated meter in a flash directory: each measurement is one firmware process (a boot)."""

    def __init__(self, flash, frontend, runtime_name=None):
        self.flash = flash
        self.frontend = frontend
        self.runtime_name = runtime_name
        self.path = os.path.join(flash, "config.json")
        self.seconds = EMU_SECONDS

    def read_config(self):
        import emulate_bench as eb

        if not os.path.exists(self.path):
            os.makedirs(self.flash, exist_ok=True)
            cfg = eb.uncalibrated_config(self.frontend)
            from protocol import board_config as config

            eb._write_config(self.path, config.to_json(cfg))
        with open(self.path) as f:
            return json.load(f)

    def write_config(self, raw):
        import emulate_bench as eb

        eb._write_config(self.path, json.dumps(raw, indent=2) + "\n")

    def reboot(self):
        return None  # every measurement is a fresh firmware process

    def measure(self, k, cal, seconds):
        import emulate
        import emulate_bench as eb

        with open(self.path) as f:
            raw = json.load(f)
        fe = raw.get("frontend", "atm90e26")
        # the emulator's default runtime ($EMULATE_RUNTIME), but a unix one: qemu-arm has its own bench
        name = self.runtime_name or emulate.DEFAULT_RUNTIME
        rt = emulate.runtime("unix32" if name == "qemu-arm" else name)
        rt.ensure()
        ref = self.ref
        seg = {"seconds": seconds + 600, "urms": ref["volts"], "irms": ref["amps"], "phase_deg": POINTS[k][1]}
        sc = eb.Scenario({"frontend": fe, "mains_hz": raw.get("mains_hz", 50), "segments": [seg]})
        bench = eb.Bench(sc, self.flash)
        bench.calib = {"cal": cal, "seconds": seconds, "poll_ms": POLL_MS[fe]}
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                rt.command(), cwd=rt.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
            try:
                r = bench.serve(proc)
            except eb.FirmwareDied:
                err.seek(0)
                raise CalibrationFailed(
                    "the firmware died measuring: %s" % err.read().decode(errors="replace")
                )
            finally:
                proc.stdin.close()
                proc.stdout.close()
                proc.wait()
        return r

    def close(self):
        return None


class BoardTarget:
    """A board over its raw REPL (mpremote's SerialTransport; ``socket://`` URLs too)."""

    MAIN_OFF = "main.py.cal-off"

    def __init__(self, port, kind, flash_dir="/flash", baud=115200, between=None):
        self.port = port
        self.kind = kind
        self.flash = flash_dir.rstrip("/")
        parent = os.path.dirname(self.flash)
        self.root = parent + "/" if parent and not parent.endswith("/") else parent
        self.baud = baud
        self.between = between
        self.seconds = BOARD_SECONDS
        self.load_point = 0  # the point the load is set to (point 1, PF 1, first)
        self.t = None
        self._renamed = False
        self._connect(10)
        names = self._exec("import os\nprint(repr(os.listdir(%r)))\n" % (self.root or ".")).strip()
        if "'main.py'" in names.splitlines()[-1]:
            self._exec("import os\nos.rename(%r, %r)\n" % (self.root + "main.py", self.root + self.MAIN_OFF))
            self._renamed = True
            self.reboot()  # the firmware's watchdog cannot be stopped: a board without main.py

    def _connect(self, wait_s):
        from mpremote.transport_serial import SerialTransport

        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.t = SerialTransport(self.port, baudrate=self.baud)
                if self.port.startswith("socket://"):
                    self.t.use_raw_paste = False
                self.t.enter_raw_repl(soft_reset=False)
                return
            except Exception as e:  # noqa: BLE001 - a board still rebooting
                if time.monotonic() > deadline:
                    raise CalibrationFailed("cannot reach the raw REPL on %s: %s" % (self.port, e))
                time.sleep(0.5)

    def _exec(self, code, timeout=30):
        out, err = self.t.exec_raw(code, timeout=timeout)
        if err:
            raise CalibrationFailed("the board raised:\n%s" % err.decode(errors="replace"))
        return out.decode(errors="replace")

    def read_config(self):
        return json.loads(self.t.fs_readfile(self.flash + "/config.json").decode())

    def write_config(self, raw):
        self.t.fs_writefile(self.flash + "/config.json", (json.dumps(raw, indent=2) + "\n").encode())

    def reboot(self):
        self.t.exec_raw_no_follow("import machine\nmachine.reset()\n")
        try:
            self.t.close()
        except Exception:  # noqa: BLE001 - the port goes with the reset (USB CDC)
            pass
        time.sleep(1.0)
        self._connect(20)

    def measure(self, k, cal, seconds):
        if k != self.load_point and self.between is not None:
            self.between(self, k)  # the load goes to point k (the tool prompts; tests switch the bench)
        self.load_point = k
        code = "from firmware import calib\ncalib.run(%r, %r, %r, %d, %d)\n" % (
            self.kind,
            self.flash,
            "" if cal is None else json.dumps(cal),
            seconds,
            1000,
        )
        out = self._exec(code, timeout=seconds + 60)
        for line in reversed(out.splitlines()):
            if line.startswith("CAL:"):
                return json.loads(line[4:])
        raise CalibrationFailed("no measurement from the board; it printed:\n%s" % out[-2000:])

    def close(self):
        if self.t is None:
            return
        try:
            if self._renamed:
                self._exec(
                    "import os\nos.rename(%r, %r)\n" % (self.root + self.MAIN_OFF, self.root + "main.py")
                )
                self.t.exec_raw_no_follow("import machine\nmachine.reset()\n")  # into the meter
        finally:
            try:
                self.t.close()
            except Exception:  # noqa: BLE001
                pass
            self.t = None


# -- the procedure ----------------------------------------------------------------------------------


def identity(raw):
    import emulate_bench as eb

    from protocol import board_config as config

    return eb.identity_calibration(config.validate(raw))


def calibrate(target, frontend, ref, seconds=None, out=None):
    """Run the procedure (module docstring) on ``target``; a result dict (before/after errors, the
    new calibration, ok). Raises CalibrationFailed when it cannot measure."""
    from protocol import board_config as config

    out = out or sys.stdout
    target.ref = ref
    seconds = seconds or target.seconds
    raw = target.read_config()
    old_raw = json.loads(json.dumps(raw))
    if raw.get("frontend", "atm90e26") != frontend:
        raw["frontend"] = frontend
        raw["calibration"] = {}
    cfg = config.validate(raw)
    old = raw.get("calibration") or identity(raw)
    if frontend == "atm90e26":
        old = dict(old)
        for k in ("meter_constant", "un", "ib"):
            old.setdefault(k, cfg[k])
    if raw != old_raw:
        target.write_config(dict(raw, calibration=old))
    before = [target.measure(k, old, seconds) for k in range(2)]
    for m in before:
        if "error" in m:
            raise CalibrationFailed(m["error"])
    table("before (calibration in force):", ref, before, out)
    new = compute(cfg, old, ref, before)
    if frontend == "atm90e26":
        cs1, cs2 = checksums(new)
        print(
            "new: Ugain 0x%04X IgainL 0x%04X Lgain 0x%04X Lphi 0x%04X; CS1 0x%04X CS2 0x%04X"
            % (new["ugain"], new["igainl"], new["lgain"], new["lphi"], cs1, cs2),
            file=out,
        )
    else:
        print(
            "new: v_scale %d i_scale %d phasecal %d" % (new["v_scale"], new["i_scale"], new["phasecal"]),
            file=out,
        )
    target.write_config(dict(raw, calibration=new))
    target.reboot()
    after = [None, None]
    for k in (1, 0):  # the load is at PF 0.5 now: one change less on a bench
        after[k] = target.measure(k, None, seconds)
    ok = all("error" not in m for m in after)
    if ok:
        table("after (written to config.json, rebooted):", ref, after, out)
        ok = all(abs(e) <= TOLERANCE_PCT for e, _u, _i in errors(ref, after))
    result = {"before": errors(ref, before), "calibration": new, "ok": ok}
    if ok:
        result["after"] = errors(ref, after)
        print(
            "calibrated: every point within %.1f %%; config.json keeps the new gains" % TOLERANCE_PCT,
            file=out,
        )
        return result
    target.write_config(old_raw)
    failed = after[0].get("error") or after[1].get("error")
    why = failed or "a point is off by more than %.1f %%" % TOLERANCE_PCT
    print("NOT calibrated: %s; the old config.json is back in place" % why, file=out)
    result["after"] = None if failed else errors(ref, after)
    return result


def emulator_reference(volts, amps):
    """The emulator's reference: the load the bench applies (P = V x A x cos phi at each point)."""
    return {
        "volts": volts,
        "amps": amps,
        "watts": [volts * amps * math.cos(math.radians(p)) for _n, p in POINTS],
    }


def factory(cfg):
    """The emulated meter's factory calibration for validated config ``cfg`` (tools/emulate_bench.py):
    this procedure against the models at Un, Ib, in a scratch flash directory; the calibration dict."""
    from protocol import board_config as config

    raw = json.loads(config.to_json(cfg))
    raw["calibration"] = identity(raw)
    with tempfile.TemporaryDirectory(prefix="factory-cal-") as d:
        t = EmulatorTarget(d, cfg["frontend"])
        t.write_config(raw)
        with open(os.devnull, "w") as quiet:
            r = calibrate(t, cfg["frontend"], emulator_reference(cfg["un"], cfg["ib"]), out=quiet)
    if not r["ok"]:
        raise CalibrationFailed("the emulated meter's factory calibration did not verify: %r" % (r,))
    return r["calibration"]


def save_local(path, cal, out=None):
    """The new calibration into the local copy of the board's config.json (``path``), or printed."""
    out = out or sys.stdout
    if not path:
        text = json.dumps(cal, sort_keys=True)
        print("calibration (for the meter's config.json at home): %s" % text, file=out)
        return
    with open(path) as f:
        raw = json.load(f)
    raw["calibration"] = cal
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the key
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(raw, indent=2) + "\n")
    os.replace(tmp, path)
    print("calibration written into %s too" % path, file=out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--flash", help="the emulated meter's flash directory (empty: a fresh meter)")
    where.add_argument("--port", help="a board's serial port (or socket://host:port)")
    p.add_argument("--board", choices=("esp32", "rp2040"), help="with --port")
    p.add_argument("--board-flash", default="/flash", help="the board's flash dir (default /flash)")
    p.add_argument("--frontend", required=True, choices=("atm90e26", "adc"))
    p.add_argument("--ref-volts", type=float, required=True, help="reference voltage (Un), V")
    p.add_argument("--ref-amps", type=float, required=True, help="reference current (Ib), A")
    p.add_argument(
        "--ref-watts", type=float, nargs=2, metavar=("P1", "P05"), help="reference active power, W"
    )
    p.add_argument("--ref-wh", type=float, nargs=2, metavar=("WH1", "WH05"), help="reference Wh per window")
    p.add_argument("--seconds", type=int, help="measurement window per point (emulator 3600, board 60)")
    p.add_argument("--runtime", choices=("unix32", "unix64"), help="emulator runtime (default unix32)")
    p.add_argument("--yes", action="store_true", help="board: do not wait for Enter between the points")
    p.add_argument(
        "--config",
        help="board: the local copy of its config.json (e.g. boards/m-0001/config.json) to update too; "
        "without it the new calibration is printed as JSON",
    )
    args = p.parse_args(argv)
    if args.port and not args.board:
        p.error("--port needs --board esp32|rp2040")
    if args.ref_watts and args.ref_wh:
        p.error("--ref-watts or --ref-wh, not both")
    if args.port and not (args.ref_watts or args.ref_wh):
        p.error("a board needs the reference's figures: --ref-watts P1 P05 or --ref-wh WH1 WH05")
    ref = {"volts": args.ref_volts, "amps": args.ref_amps, "watts": args.ref_watts, "wh": args.ref_wh}
    if args.flash and not (args.ref_watts or args.ref_wh):
        ref = emulator_reference(args.ref_volts, args.ref_amps)
    target = None
    try:
        if args.flash:
            target = EmulatorTarget(args.flash, args.frontend, args.runtime)
        else:

            def between(_t, k):
                if not args.yes:
                    input(
                        "set the load to %s (%.1f V, %.3f A), then press Enter: "
                        % (POINTS[k][0], args.ref_volts, args.ref_amps)
                    )

            print("point 1: apply %.1f V, %.3f A at PF 1" % (args.ref_volts, args.ref_amps))
            target = BoardTarget(args.port, args.board, args.board_flash, between=between)
        r = calibrate(target, args.frontend, ref, args.seconds)
        if r["ok"] and args.port:
            save_local(args.config, r["calibration"])
    except (CalibrationFailed, OSError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    finally:
        if target is not None:
            target.close()
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
