"""The emulator target: the real firmware on the MicroPython unix port, served by tools/emulate.py's bench.

The firmware runs on tools/emulate.py's default runtime: unix32, MicroPython 1.28.0's unix port
compiled 32-bit with the firmware frozen in (``make firmware``), in a 64 KiB heap, as on a board
(EMULATE_RUNTIME=unix64 runs pip's 64-bit port instead).

Every operation runs ``tools/emulate.Session`` (one firmware process) on a fresh
flash directory under the suite's work dir, whose config.json is the factory
default (tools/emulate_bench.default_config: meter "emu-0001", a fixed key, the
factory calibration) deep-merged with the test's patch. The emulated front end
is the reference: a scenario's load is known exactly (U, I, phase), so the
reference energy is U * I * cos(phi) * t.

What this target adds around the bench, from this process (no firmware change):
- the SPI bus is logged (every frame the firmware sent and what the chip answered),
  like a logic analyser on a board: calibration() decodes it;
- a corrupted checksum: the emulated chip keeps a CS1/CS2 other than the one the
  firmware wrote (and confirmed through LastSPIData), as a bit flipped in the
  chip's register would;
- a bad config.json is written after the bench has read the good one and before
  the firmware boots (it waits for the bench's HELLO reply), so the firmware,
  not the bench, meets it;
- a power cut is SIGKILL of the firmware process at an exact emulated instant (the
  firmware is then blocked on a link read: never inside a save; the torn-save
  cases are tests/firmware/test_emulate_kill.py's).
"""

import json
import math
import os

from hil_tests.targets import base
from tools import emulate

eb = emulate.emulate_bench
START = 1710115200  # Monday 2024-03-11 00:00 UTC
ATM_COUNT_MWH = 100000.0 / 3200  # one ATM90E26 energy count at MC 3200, mWh


class EmulatorTarget(base.Target):
    name = "emulator"
    realtime = False
    relay_cuts_load = True
    frontends = ("atm90e26", "adc")
    start = START

    def __init__(self, workdir):
        self.workdir = str(workdir)
        self._n = 0
        self._configs = {}
        self.key = bytes.fromhex(eb.KEY_HEX)
        emulate.ensure_built()

    # -- flash and config ----------------------------------------------------------------------

    def new_flash(self, name):
        self._n += 1
        path = os.path.join(self.workdir, "%03d-%s" % (self._n, name))
        os.makedirs(path)
        return path

    def default_config(self, frontend="atm90e26"):
        """The factory config.json (as a JSON-ready dict) for a front end; computed once."""
        if frontend not in self._configs:
            from protocol import board_config as config

            sc = eb.Scenario({"frontend": frontend, "segments": [{"seconds": 1}]})
            self._configs[frontend] = json.loads(config.to_json(eb.default_config(sc)))
        return self._configs[frontend]

    def write_config(self, flash, frontend, patch=None, text=None):
        if text is None:
            text = json.dumps(base.deep_merge(self.default_config(frontend), patch))
        with open(os.path.join(flash, eb.CONFIG_NAME), "w") as f:
            f.write(text)

    def _config_of(self, flash):
        return base.load_json(os.path.join(flash, eb.CONFIG_NAME))

    def messages(self, flash):
        cfg = self._config_of(flash)
        return base.outbox_messages(os.path.join(flash, "outbox"), bytes.fromhex(cfg["key"]), cfg["meter_id"])

    def _session(self, spec, flash, **kw):
        return emulate.Session(eb.Scenario(spec), flash, **kw)

    @staticmethod
    def _finish(session, timeout=120):
        state, err, rc = session.wait(timeout)
        if state is None or rc != 0:
            raise emulate.EmulatorError("emulator failed (exit %d):\n%s" % (rc, err))
        return state, err

    # -- the contract --------------------------------------------------------------------------

    def load_w(self, segment):
        phase = math.radians(segment.get("phase_deg", 0))
        return segment.get("urms", 230) * segment.get("irms", 0) * math.cos(phase)

    def energy_tolerance_wh(self, wh, frontend="atm90e26"):
        # The emulated ATM90E26 after its factory calibration reads within a few thousandths of a per
        # cent; the emulated ADC keeps its manufacturing errors (tools/emulate_bench.ADC_ERRORS) and
        # its 12-bit quantisation, so once calibrated at Ib it reads within +-0.3 % across the load
        # range (+0.27 % at 0.2 Ib, -0.13 % at 0.87 Ib, -0.05 % at 2.6 Ib over 20 min): its own
        # accuracy, still far below what a switch taken one poll late would move (10 s of load).
        rel = 0.003 if frontend == "adc" else 0.001
        return rel * wh + 2 * ATM_COUNT_MWH / 1000.0

    def boot(self, patch=None, text=None, frontend=None):
        fe = frontend or "atm90e26"
        flash = self.new_flash("boot")
        self.write_config(flash, fe)
        spec = {"frontend": fe, "start": START, "segments": [{"seconds": 60, "urms": 230, "irms": 1}]}
        s = self._session(spec, flash)
        if patch is not None or text is not None:  # the bench has read the good config; the firmware has not
            self.write_config(flash, fe, patch, text)
        state, err, rc = s.wait(60)
        saved = any(os.path.exists(os.path.join(flash, "state." + x)) for x in "ab")
        out = {"ok": state is not None and rc == 0, "state_saved": saved, "stderr": err}
        if out["ok"]:
            out.update(
                field=None,
                error=None,
                events=state["events"],
                metering=state["metering"],
                boot_count=state["boot_count"],
            )
            return out
        lines = [ln for ln in err.splitlines() if ln.strip()]
        cfg_err = [ln.split("ConfigError: ", 1)[1] for ln in lines if "ConfigError: " in ln]
        error = cfg_err[-1] if cfg_err else (lines[-1] if lines else "exit %d" % rc)
        out.update(
            field=base.config_error_field(error) if cfg_err else None,
            error=error,
            events=None,
            metering=None,
            boot_count=None,
        )
        return out

    def calibration(self, fault=None):
        flash = self.new_flash("cal-%s" % (fault or "ok"))
        self.write_config(flash, "atm90e26")
        spec = {
            "frontend": "atm90e26",
            "start": START,
            "segments": [{"seconds": 600, "urms": 230, "irms": 5}],
        }
        s = self._session(spec, flash, comms=True)
        frames = []
        bench = s.bench
        spi = bench.spi

        def logged_spi(data):
            got = spi(data)
            if len(data) == 3:
                frames.append((data[0], data[1] << 8 | data[2], got[1] << 8 | got[2]))
            return got

        bench.spi = logged_spi
        if fault is not None:
            _corrupt_checksum(bench.chip, fault)
        state, _err = self._finish(s)
        msgs = self.messages(flash)
        out = base.decode_calibration(frames)
        events = base.of_type(msgs, 2)
        out.update(
            events=state["events"],
            event_details=[(e[10], e.get(11)) for e in events],
            metering=state["metering"],
            imp_mwh_after=sum(state["imp_mwh"]),
            calibration=self._config_of(flash)["calibration"],
        )
        return out

    def measure(self, point, seconds=1200):
        fe = point.frontend
        flash = self.new_flash("acc-" + point.ident)
        self.write_config(flash, fe)
        seg = {
            "seconds": seconds,
            "urms": point.un,
            "irms": point.amps,
            "phase_deg": point.phase,
            "noise_lsb": 1,
        }
        spec = {"frontend": fe, "start": START, "segments": [seg]}
        if fe == "adc":
            spec["poll_ms"] = 30000  # one 10-cycle window per 30 s
        state, _err = self._finish(self._session(spec, flash))
        return {
            "measured_wh": sum(state["imp_mwh"]) / 1000.0,
            "reference_wh": self.load_w(seg) * seconds / 3600.0,
            "seconds": seconds,
        }

    def run(self, spec, flash=None, patch=None, reporting=True, name="run"):
        fe = spec.get("frontend", "atm90e26")
        if flash is None:
            flash = self.new_flash(name)
            self.write_config(flash, fe, patch)
        state, err = self._finish(self._session(spec, flash, comms=reporting))
        msgs = self.messages(flash) if reporting else []
        return {"state": state, "messages": msgs, "flash": flash, "start": spec["start"], "stderr": err}

    def power_cut(self, spec, cut_s, patch=None, flash=None):
        fe = spec.get("frontend", "atm90e26")
        if flash is None:
            flash = self.new_flash("cut")
            self.write_config(flash, fe, patch)
        cfg = self._config_of(flash)
        s = self._session(spec, flash)
        bench = s.bench
        cut_ms = (spec["start"] + cut_s) * 1000
        sleep = bench.sleep

        def sleep_until_cut(ms):
            if bench.t_ms + ms > cut_ms:
                ms = max(0, cut_ms - bench.t_ms)
            d = sleep(ms)
            if bench.t_ms >= cut_ms:
                s.proc.kill()  # SIGKILL: the power is gone
            return d

        bench.sleep = sleep_until_cut
        state, err, _rc = s.wait(120)
        if state is not None:
            raise AssertionError("the scenario ended before the cut at %d s" % cut_s)
        # reboot: a scenario that is already over at the persisted clock (no load), so the report
        # shows exactly what the reboot restored
        rec = dict(spec, segments=[{"seconds": 1, "urms": 230, "irms": 0}], commands=[])
        rs, rerr = self._finish(self._session(rec, flash))
        return {
            "energy_at_cut_mwh": self.energy_wh(spec, 0, cut_s) * 1000.0,
            "restored_mwh": sum(rs["imp_mwh"]) + sum(rs["exp_mwh"]),
            "restored_ts": rs["ts"],
            "cut_ts": spec["start"] + cut_s,
            "events_after": rs["events"],
            "boot_count": rs["boot_count"],
            "persist_wh": cfg["persist_wh"],
            "poll_ms": spec.get("poll_ms") or cfg["poll_ms"],
            "count_mwh": ATM_COUNT_MWH if fe == "atm90e26" else 1.0,
            "flash": flash,
            "stderr": err + rerr,
        }

    def backlog(self, broker, outage_spec, after_spec, patch=None):
        from hil_tests.targets.listener import Listener
        from tools.mosquitto_broker import free_port

        flash = self.new_flash("backlog")
        meter_id = "hil-bk-%03d" % self._n
        self.write_config(
            flash, outage_spec.get("frontend", "atm90e26"), base.deep_merge({"meter_id": meter_id}, patch)
        )
        dead = "mqtt://%s:x@127.0.0.1:%d" % (meter_id, free_port())  # nothing listens there: an outage
        outage_state, _err = self._finish(self._session(outage_spec, flash, broker=dead))
        lis = Listener("127.0.0.1", broker.port, meter_id)
        try:
            url = "mqtt://%s:x@127.0.0.1:%d" % (meter_id, broker.port)
            state, _err = self._finish(self._session(after_spec, flash, broker=url, linger=30))
            lis.wait(lambda fr: len(fr) >= state["seq"], 20)
        finally:
            lis.close()
        return {
            "outage_state": outage_state,
            "state": state,
            "frames": lis.frames(),
            "meter_id": meter_id,
            "key": self.key,
            "flash": flash,
        }


def _corrupt_checksum(chip, fault):
    """Make the emulated chip hold a CS1 (or CS2) other than the one the firmware wrote; the SPI
    echo (LastSPIData) stays right, so only the chip's own check at 0x8765 can catch it."""
    reg_attr = {"cs1": ("_cs1_w", base.CS1), "cs2": ("_cs2_w", base.CS2)}[fault]
    write_reg = chip._write_reg

    def write_and_flip(addr, v):
        write_reg(addr, v)
        if addr == reg_attr[1]:
            setattr(chip, reg_attr[0], v ^ 0x0101)

    chip._write_reg = write_and_flip
