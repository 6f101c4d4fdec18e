"""The emulator's test bench (CPython): scenario, clock and hardware models, served to the firmware process.

The firmware runs alone in ``micropython -X heapsize=64K -m emulator.main``
(tools/emulate.py starts it); its unix board (emulator/unix_board.py) is a
thin client whose hardware accesses are requests over the child's
stdin/stdout, framed as emulator/bench_link.py documents (8-byte requests,
fixed-size replies). This side owns:

- the scenario (``Scenario``: checked here; the timeline is absolute, segment
  k covers [start + the earlier seconds, + its seconds));
- the clock: a SLEEP request advances it by the firmware's requested ms (the
  firmware already cut it at its tariff boundary and persist deadline), cut
  again at the segment's end, and feeds the models that stretch of load (no
  current while the relay is open); the reply says how long passed and
  whether the scenario goes on;
- the hardware, fresh for every firmware process (as after a power cut):
  emulator.atm90e26_model (SENSOR_ERRORS, which the factory
  calibration corrects) answering SPI frames, or emulator.adc_model
  filling one window per ADC request (start phase and noise seed are
  functions of the emulated time and of the window's place among those asked
  for at that instant, which follow each other in time, so a re-run after a
  restart measures the same samples); cover and magnet inputs from the segment (``cover``,
  ``magnet``: 0/1);
- the factory: an empty flash directory gets config.json (``ensure_config``:
  meter "emu-0001", a fixed key, the scenario's front end and mains
  frequency, poll 60 s (ATM90E26) or 10 s (ADC), and the calibration a
  factory would measure).

``Bench(scenario, flash).serve(proc)`` answers one firmware process until it
sends its REPORT (returned as a dict, with the bench's ``chip_counts``) or
dies (``FirmwareDied``: a kill or crash; the flash keeps what the firmware
saved).
"""

import array
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (ROOT, os.path.join(ROOT, "tests", "shims")):  # firmware modules need `micropython` (a shim)
    if _p not in sys.path:
        sys.path.insert(0 if _p == ROOT else len(sys.path), _p)

from emulator import bench_link as bl  # noqa: E402
from emulator.adc_model import ADCModel  # noqa: E402

SENSOR_ERRORS = {"gain_error_u": 0.012, "gain_error_i": 0.009, "phase_error_deg": 0.25}
# the emulated ADC front end's manufacturing errors: divider and burden tolerances (the volts and
# amps per LSB off their design values) and the current channel's extra delay (CT phase and the
# multiplexer's settling) on top of the half-period interleave; calibration corrects them
ADC_ERRORS = {"gain_error_v": 0.010, "gain_error_i": 0.008, "skew_error_us": 15.0}
ADC_SPC = 64
ADC_CYCLES = 10
METER_ID = "emu-0001"
# a fixed, public key ("emu-0001-not-a-secret-key-------" in hex): emulated meters only
KEY_HEX = "656d752d303030312d6e6f742d612d7365637265742d6b65792d2d2d2d2d2d2d"
POLL_MS = {"atm90e26": 60000, "adc": 10000}
_SPEC_FRAME = bytes((bl.SPEC_LAST, 0, 0))
CONFIG_NAME = "config.json"
_KEYS = ("frontend", "start", "mains_hz", "segments", "tariff", "prepaid", "poll_ms", "commands")
_CMD_KEYS = ("at", "seq", "cmd", "args", "expires", "ts", "key_hex", "kid", "frame_hex", "sealed")
_SEG_KEYS = ("seconds", "urms", "irms", "phase_deg", "harmonics", "noise_lsb", "irms_n", "cover", "magnet")


class ScenarioError(ValueError):
    """A scenario file the emulator cannot play; the message names the field."""


class BenchError(Exception):
    """The firmware broke the link protocol."""


class FirmwareDied(Exception):
    """The firmware process ended without a report (killed, crashed); ``returncode`` says how."""

    def __init__(self, returncode):
        super().__init__("firmware process ended without a report (exit %r)" % (returncode,))
        self.returncode = returncode


def _num(where, v, lo, hi):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        raise ScenarioError("%s: expected a number %s..%s, got %r" % (where, lo, hi, v))
    return v


def _int_keys(v):
    """JSON objects with digit-string keys -> int-keyed maps (docs/protocol.md maps), recursively."""
    if isinstance(v, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: _int_keys(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_int_keys(x) for x in v]
    return v


class Scenario:
    def __init__(self, obj):
        if not isinstance(obj, dict):
            raise ScenarioError("scenario: expected a JSON object")
        for k in obj:
            if k not in _KEYS:
                raise ScenarioError("scenario.%s: unknown key" % k)
        fe = obj.get("frontend", "atm90e26")
        if fe not in ("atm90e26", "adc"):
            raise ScenarioError('scenario.frontend: expected "atm90e26" or "adc", got %r' % (fe,))
        self.frontend = fe
        self.start = int(_num("scenario.start", obj.get("start", 1704067200), 0, 2**32 - 1))
        self.mains_hz = obj.get("mains_hz", 50)
        if self.mains_hz not in (50, 60):
            raise ScenarioError("scenario.mains_hz: expected 50 or 60, got %r" % (self.mains_hz,))
        self.poll_ms = obj.get("poll_ms")
        if self.poll_ms is not None:
            self.poll_ms = int(_num("scenario.poll_ms", self.poll_ms, 100, 3600000))
        segs = obj.get("segments")
        if not isinstance(segs, list) or not segs:
            raise ScenarioError("scenario.segments: expected a non-empty list")
        self.segments = []
        t = self.start * 1000
        for i, s in enumerate(segs):
            w = "scenario.segments[%d]" % i
            if not isinstance(s, dict):
                raise ScenarioError(w + ": expected an object")
            for k in s:
                if k not in _SEG_KEYS:
                    raise ScenarioError("%s.%s: unknown key" % (w, k))
            ms = int(_num(w + ".seconds", s.get("seconds"), 1, 10**9) * 1000)
            harm = []
            for h in s.get("harmonics", []):
                if not isinstance(h, list) or len(h) != 4:
                    raise ScenarioError(w + ".harmonics: expected [order, rel_v, rel_i, phase_deg] entries")
                harm.append((int(h[0]), float(h[1]), float(h[2]), float(h[3])))
            i_n = s.get("irms_n")
            inputs = int(_num(w + ".cover", s.get("cover", 0), 0, 1)) | 2 * int(
                _num(w + ".magnet", s.get("magnet", 0), 0, 1)
            )
            seg = (
                t,
                t + ms,
                float(_num(w + ".urms", s.get("urms", 230), 0, 1000)),
                float(_num(w + ".irms", s.get("irms", 0), 0, 400)),
                float(_num(w + ".phase_deg", s.get("phase_deg", 0), -360, 360)),
                tuple(harm),
                float(_num(w + ".noise_lsb", s.get("noise_lsb", 0), 0, 100)),
                None if i_n is None else float(_num(w + ".irms_n", i_n, 0, 400)),
                inputs,
            )
            self.segments.append(seg)
            t += ms
        self.end_ms = t
        self.tariff = obj.get("tariff")
        self.prepaid = obj.get("prepaid")
        self.commands = self._commands(obj.get("commands", []))

    def _commands(self, cmds):
        """Scripted commands: [{"at": s after start, "seq", "cmd", "args", "expires"?, "ts"?,
        "key_hex"? (sign with another key: forged), "kid"? (another meter id), "frame_hex"? (raw bytes),
        "sealed"? (true: COSE_Encrypt0 instead of COSE_Mac0; args key 4 given as hex is sent as bytes)}]."""
        if not isinstance(cmds, list):
            raise ScenarioError("scenario.commands: expected a list")
        out = []
        for i, c in enumerate(cmds):
            w = "scenario.commands[%d]" % i
            if not isinstance(c, dict):
                raise ScenarioError(w + ": expected an object")
            for k in c:
                if k not in _CMD_KEYS:
                    raise ScenarioError("%s.%s: unknown key" % (w, k))
            at = int(_num(w + ".at", c.get("at"), 0, 10**9))
            if "frame_hex" not in c:
                _num(w + ".seq", c.get("seq"), 1, 2**64 - 1)
                _num(w + ".cmd", c.get("cmd"), 0, 2**32)
            out.append((self.start * 1000 + at * 1000, c))
        out.sort(key=lambda e: e[0])
        return out

    def segment(self, t_ms):
        """The segment covering t_ms (the last one from its end on)."""
        for s in self.segments:
            if t_ms < s[1]:
                return s
        return self.segments[-1]


# -- the factory ---------------------------------------------------------------------------


_FACTORY = {}  # (frontend, mains_hz, meter_constant, un, ib) -> the calibration the factory measured


def factory_calibration(cfg):
    """The factory calibration of the emulated front end for validated config ``cfg``: tools/calibrate.py
    run against the models (SENSOR_ERRORS, ADC_ERRORS) at Un, Ib, PF 1 and PF 0.5 inductive, the
    procedure a user follows on a board; computed once per front end and rating in a process."""
    key = (cfg["frontend"], cfg["mains_hz"], cfg["meter_constant"], cfg["un"], cfg["ib"])
    if key not in _FACTORY:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import calibrate

        _FACTORY[key] = calibrate.factory(cfg)
    return dict(_FACTORY[key])


def adc_model(sample_us, seed=1):
    """The emulated ADC with ADC_ERRORS: what the board's ADC and its analog front end measure."""
    from emulator import adc_model as am

    e = ADC_ERRORS
    return ADCModel(
        v_per_lsb=am.DEFAULT_V_PER_LSB * (1 + e["gain_error_v"]),
        a_per_lsb=am.DEFAULT_A_PER_LSB * (1 + e["gain_error_i"]),
        skew_us=sample_us / 2 + e["skew_error_us"],
        seed=seed,
    )


def adc_calibration(mains_hz):
    """The factory calibration of the emulated ADC front end (the default rating) at ``mains_hz``."""
    return factory_calibration(uncalibrated_config("adc", mains_hz))


def identity_calibration(cfg):
    """An uncalibrated meter's calibration: the ATM90E26's power-on gains (only its rating, for the
    PL constant) or the ADC front end's design values (no measured v_scale/i_scale). The firmware
    refuses to meter with either (firmware/app.py untrusted_calibration); tools/calibrate.py
    measures with it."""
    if cfg["frontend"] == "atm90e26":
        return {"meter_constant": cfg["meter_constant"], "un": cfg["un"], "ib": cfg["ib"]}
    return {"samples_per_cycle": ADC_SPC, "cycles": ADC_CYCLES, "mains_hz": cfg["mains_hz"], "adc_bits": 12}


def uncalibrated_config(frontend, mains_hz=50):
    """The validated config of a fresh emulated meter: meter "emu-0001", identity calibration."""
    from protocol import board_config as config

    cfg = config.validate(
        {
            "meter_id": METER_ID,
            "key": KEY_HEX,
            "frontend": frontend,
            "mains_hz": mains_hz,
            "poll_ms": POLL_MS[frontend],
        }
    )
    cfg["calibration"] = identity_calibration(cfg)
    return cfg


def default_config(sc):
    """The validated config an empty flash gets for scenario ``sc``: factory-calibrated."""
    cfg = uncalibrated_config(sc.frontend, sc.mains_hz)
    cfg["calibration"] = factory_calibration(cfg)
    return cfg


def ensure_config(flash, sc, log=None):
    """Write the default config.json into ``flash`` unless it has one (temp + rename); True if written.

    The factory's other job: a config.json without a calibration (no ``calibration`` section, or
    an empty one: a config written by ``headend meter config`` or by hand) gets the emulated front
    end's factory calibration written into it, as a board's factory would before it leaves, and
    ``log`` (default: stderr) says so. A calibration that is there is left alone, trusted or not:
    the firmware judges it (firmware/app.py refuses one it cannot trust)."""
    from protocol import board_config as config

    path = os.path.join(flash, CONFIG_NAME)
    if os.path.exists(path):
        _calibrate_config(path, log or sys.stderr.write)
        return False
    os.makedirs(flash, exist_ok=True)
    _write_config(path, config.to_json(default_config(sc)))
    return True


def _write_config(path, text):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the key
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _calibrate_config(path, log):
    """Add the factory calibration to the config.json at ``path`` when it has none; True if added."""
    from protocol import board_config as config

    with open(path) as f:
        try:
            raw = json.load(f)
        except ValueError:
            return False  # the firmware names what is wrong with it
    if not isinstance(raw, dict) or raw.get("calibration"):
        return False
    try:
        cfg = config.validate(raw)
    except config.ConfigError:
        return False  # refused at boot, naming the field
    raw["calibration"] = factory_calibration(cfg)
    if cfg["frontend"] == "atm90e26":
        what = "the emulated ATM90E26's factory calibration (tools/calibrate.py against its sensor errors)"
    else:
        what = "the emulated ADC front end's factory calibration (tools/calibrate.py against its errors)"
    _write_config(path, json.dumps(raw, indent=2) + "\n")
    log(
        "emulator: %s has no calibration: wrote %s into it, as a board's factory would"
        " (the firmware refuses to meter without one)\n" % (path, what)
    )
    return True


# -- the bench -------------------------------------------------------------------------------


class Bench:
    """One power-up of the emulated meter hardware: models fresh, clock set at the firmware's boot."""

    def __init__(self, scenario, flash):
        self.sc = scenario
        self.flash = os.path.abspath(flash)
        with open(os.path.join(self.flash, CONFIG_NAME)) as f:
            cfg = json.load(f)  # the hardware is built for the meter's config
        self.t_ms = scenario.start * 1000
        self.meter_id = cfg["meter_id"]
        self.key = bytes.fromhex(cfg["key"])
        self.cmd_next = 0  # index of the next scripted command not yet fetched
        self.comms = False  # report through the outbox even without scripted commands
        self.broker = None  # {host, port, user, password}: publish over MQTT (tools/emulate.py --broker)
        self.calib = None  # {cal, seconds, poll_ms}: a calibration measurement (tools/calibrate.py)
        self.selftest = False  # run firmware/selftest.py instead of the meter (tools/deploy.py --selftest)
        self.speed = 0  # emulated s per real s; 0 = as fast as possible
        self.linger_s = 0  # real s to stay connected after the scenario (outbox drain, commands)
        self.relay_closed = True
        self.load = scenario.segments[0]
        self.chip = None
        self.windows = 0
        self._adc_t = None  # the instant of the last ADC window and how many were taken then
        self._adc_j = 0
        self.requests = 0
        self._sample_us = 1e6 / (scenario.mains_hz * ADC_SPC)
        if cfg.get("frontend", "atm90e26") == "atm90e26":
            from emulator.atm90e26_model import ATM90E26Model

            self.chip = ATM90E26Model(
                cfg.get("meter_constant", 3200),
                cfg.get("un", 230),
                cfg.get("ib", 5),
                freq_hz=float(scenario.mains_hz),
                **SENSOR_ERRORS,
            )

    def setup(self):
        """What the HELLO reply carries: flash directory and the scenario's settings for the firmware."""
        sc = self.sc
        return {
            "flash": self.flash,
            "tariff": sc.tariff,
            "prepaid": sc.prepaid,
            "poll_ms": sc.poll_ms,
            "comms": self.comms or bool(sc.commands),
            "broker": self.broker,
            "speed": self.speed,
            "linger_s": self.linger_s,
            "trace_heap": bool(os.environ.get("EMULATE_TRACE_HEAP")),
            "calib": self.calib,
            "selftest": self.selftest,
        }

    # -- requests ------------------------------------------------------------------------

    def clock(self, ts, ms):
        if ts is None:
            ts, ms = self.sc.start, 0
        self.t_ms = ts * 1000 + ms
        return ts, ms

    def running(self):
        return self.t_ms < self.sc.end_ms

    def sleep(self, ms):
        """Advance the clock by ms (cut at the segment's end or a scripted command), the hardware with it;
        the ms that passed."""
        seg = self.sc.segment(self.t_ms)
        if self.t_ms + ms > seg[1]:
            ms = seg[1] - self.t_ms
        cmds = self.sc.commands
        for k in range(self.cmd_next, len(cmds)):
            at = cmds[k][0]
            if at > self.t_ms:
                if self.t_ms + ms > at:
                    ms = at - self.t_ms
                break
        if ms <= 0:
            return 0
        self.load = seg
        if self.chip is not None:
            i = seg[3] if self.relay_closed else 0.0
            i_n = seg[7] if self.relay_closed else 0.0
            self.chip.advance(ms / 1000, seg[2], i, seg[4], seg[5], i_n)
        self.t_ms += ms
        return ms

    def spi(self, data):
        if self.chip is None:
            raise BenchError("SPI request, but this meter's front end is the ADC")
        ib = bytearray(len(data))
        cs = self.chip.cs
        cs.value(0)
        self.chip.write_readinto(data, ib)
        cs.value(1)
        return ib

    def adc(self, n):
        """One window of n sample pairs with the load of the interval that just ended (deterministic).

        Windows asked for at one instant (a measurement of several) follow each other: window j
        starts j windows after the first and has noise of its own, as a real ADC's would.
        """
        seg = self.load
        t = self.t_ms
        if t != self._adc_t:
            self._adc_t = t
            self._adc_j = 0
        j = self._adc_j
        self._adc_j = j + 1
        seed = (t * 2654435761 + 12345) & 0xFFFFFFFF
        t0_us = float((t * 7919) % 20000) + (seed & 0xFF) / 256.0  # start phase across the cycle
        if j:
            t0_us += j * n * self._sample_us
            seed = (seed + j * 0x9E3779B9) & 0xFFFFFFFF or 1
        model = adc_model(self._sample_us, seed)
        i = seg[3] if self.relay_closed else 0.0
        vbuf = array.array("H", bytes(2 * n))
        ibuf = array.array("H", bytes(2 * n))
        model.fill(vbuf, ibuf, n, t0_us, self._sample_us, seg[2], i, seg[4], self.sc.mains_hz, seg[5], seg[6])
        self.windows += 1
        return vbuf.tobytes() + ibuf.tobytes()

    def inputs(self):
        return self.sc.segment(self.t_ms)[8]

    def commands_due(self):
        n = 0
        cmds = self.sc.commands
        for k in range(self.cmd_next, len(cmds)):
            if cmds[k][0] > self.t_ms:
                break
            n += 1
        return min(n, 255)

    def command_frame(self):
        """The next due scripted command, sealed with the meter's key (or as the scenario forges it)."""
        at, c = self.sc.commands[self.cmd_next]
        self.cmd_next += 1
        if "frame_hex" in c:
            return bytes.fromhex(c["frame_hex"])
        from protocol import cbor, cose

        msg = {0: 10, 1: c["seq"], 2: c.get("ts", at // 1000), 20: c["cmd"], 21: _int_keys(c.get("args", {}))}
        if "expires" in c:
            msg[22] = c["expires"]
        key = bytes.fromhex(c["key_hex"]) if "key_hex" in c else self.key
        kid = c.get("kid", self.meter_id).encode()
        if c.get("sealed"):
            from protocol.cose_enc import DOWN, Encrypt0

            if isinstance(msg[21].get(4), str):
                msg[21][4] = bytes.fromhex(msg[21][4])
            return Encrypt0(key, kid).seal(DOWN, c["seq"], cbor.dumps(msg))
        return cose.mac0_encode(key, kid, cbor.dumps(msg))

    def chip_counts(self):
        """Every count the emulated ATM90E26 emitted this run (fwd/rev active, fwd/rev reactive)."""
        if self.chip is None:
            return None
        tc = self.chip.total_counts
        return {"ap": tc[0x40], "an": tc[0x41], "rp": tc[0x43], "rn": tc[0x44]}

    # -- the link ------------------------------------------------------------------------

    def serve(self, proc):
        """Answer ``proc`` (stdin/stdout pipes) until its REPORT; the report dict (plus chip_counts)."""
        rfd = proc.stdout.fileno()
        wfd = proc.stdin.fileno()
        read = os.read
        write = os.write

        def recv(n):
            b = read(rfd, n)
            while len(b) < n:
                more = read(rfd, n - len(b))
                if not more:
                    raise FirmwareDied(proc.wait())
                b += more
            return b

        try:
            while True:
                r = recv(bl.REQ_LEN)
                op = r[0]
                self.requests += 1
                if op == bl.OP_SPI:
                    data = r[2 : 2 + r[1]]
                    out = self.spi(data)
                    if len(data) == 3 and data[0] & 0x80 and data[0] != bl.SPEC_LAST:
                        out += self.spi(_SPEC_FRAME)  # the LastSPIData read that comes next, answered ahead
                    write(wfd, out)
                elif op == bl.OP_SLEEP:
                    d = self.sleep(int.from_bytes(r[4:8], "little", signed=True))
                    flags = bytes((self.running(), self.commands_due(), 0, 0))
                    write(wfd, d.to_bytes(4, "little", signed=True) + flags)
                elif op == bl.OP_CMD:
                    f = self.command_frame()
                    write(wfd, len(f).to_bytes(4, "little") + f)
                elif op == bl.OP_ADC:
                    write(wfd, self.adc(r[2] | r[3] << 8))
                elif op == bl.OP_RELAY:
                    self.relay_closed = bool(r[1])
                    write(wfd, r[1:2])
                elif op == bl.OP_INPUTS:
                    write(wfd, bytes((self.inputs(),)))
                elif op == bl.OP_CLOCK:
                    ts = int.from_bytes(r[4:8], "little") if r[1] else None
                    ts, ms = self.clock(ts, r[2] | r[3] << 8)
                    write(
                        wfd, ts.to_bytes(4, "little") + ms.to_bytes(2, "little") + bytes((self.running(), 0))
                    )
                elif op == bl.OP_HELLO:
                    if r[1] != bl.VERSION:
                        raise BenchError("firmware link version %d, bench %d" % (r[1], bl.VERSION))
                    js = json.dumps(self.setup()).encode()
                    write(wfd, bytes((bl.VERSION, 0, 0, 0)) + len(js).to_bytes(4, "little") + js)
                elif op == bl.OP_REPORT:
                    state = json.loads(recv(int.from_bytes(r[4:8], "little")))
                    state["chip_counts"] = self.chip_counts()
                    return state
                else:
                    raise BenchError("link out of step: got %r where a request was due" % (bytes(r),))
        except BrokenPipeError:
            raise FirmwareDied(proc.wait())
