"""The board target: a real ESP32/RP2040 running the deployed firmware, over a serial port and the raw REPL.

Transport: mpremote's ``SerialTransport`` (pyserial underneath; mpremote 1.2x API:
``enter_raw_repl(soft_reset=False)``, ``exec_raw(code, timeout)`` -> (stdout, stderr),
``exec_raw_no_follow``, ``fs_readfile``/``fs_writefile``/``fs_mkdir``). ``--port`` may
also be a pyserial URL (``socket://host:port``: hil_tests/simboard serves one).

Session: on open the deployed ``main.py`` is renamed ``main.py.hil-off`` and the board
hard-reset, so neither the firmware's loop nor its watchdog (which cannot be stopped)
runs during the tests; ``close()`` renames it back and resets the board, which then
runs the firmware again. The agent (targets/board_agent.py) is uploaded to the scratch
directory (--board-scratch, default /hil); every test meter is a directory there whose
config.json is the board's own (--board-flash/config.json: pins, calibration, key,
Wi-Fi) deep-merged with the test's patch. They are removed at close.

Reference: what the tester declares for the load their bench applies (--ref-watts,
--ref-volts, --ref-amps, --ref-pf); ``load_w`` is --ref-watts for any segment with a
current (the segments' own U/I are the emulator's business). Power cut: Ctrl-C then
``machine.reset()`` (--reset repl), or an RTS pulse on boards whose RTS drives EN
(--reset rts, ESP32 dev boards).
"""

import ast
import json
import os
import posixpath
import time

from hil_tests import iec
from hil_tests.targets import base

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(HERE, "board_agent.py")
# the bench setup is host-only code (emulator/, never deployed): it goes to the scratch dir beside the agent
BENCH_SETUP = os.path.join(os.path.dirname(os.path.dirname(HERE)), "emulator", "bench_setup.py")
UPLOADS = ((AGENT, "hil_agent.py"), (BENCH_SETUP, "hil_bench_setup.py"))
MAIN_OFF = "main.py.hil-off"


class BoardError(RuntimeError):
    """The board did not answer as expected; the message carries what it printed."""


class BoardTarget(base.Target):
    name = "board"
    realtime = True
    cal_seconds = 5  # metering after a calibration boot (a rejected one must register nothing)

    def __init__(self, opts, workdir):
        self.opts = opts
        self.workdir = str(workdir)
        self.scratch = opts.board_scratch.rstrip("/")
        # the filesystem root holding main.py: the flash dir's parent ("/" for the deployed /flash)
        parent = posixpath.dirname(opts.board_flash.rstrip("/"))
        self.root = parent + "/" if parent and not parent.endswith("/") else parent
        self.relay_cuts_load = bool(opts.relay_cuts_load)
        self._n = 0
        self._main_renamed = False
        self.t = None
        self._connect(wait_s=10)
        try:
            self._disable_main()
            self.board_kind = opts.board if opts.board != "auto" else self._detect_kind()
            self._mkdir(self.scratch)
            for src, name in UPLOADS:
                with open(src, "rb") as f:
                    self.t.fs_writefile(self.scratch + "/" + name, f.read())
            path = opts.board_flash.rstrip("/") + "/config.json"
            try:
                self.config = json.loads(self.t.fs_readfile(path).decode())
            except Exception as e:  # noqa: BLE001 - missing or unreadable: say what to do
                raise BoardError("%s on the board: %s (deploy one with tools/deploy.py --config)" % (path, e))
        except BaseException:
            self.close()  # main.py back in place
            raise
        fe = self.config.get("frontend", "atm90e26")
        self.frontends = (fe,)
        self.meter_id = self.config["meter_id"]
        self.key = bytes.fromhex(self.config["key"])
        self.ib = opts.ib or self.config.get("ib", iec.IB)
        self.imax = opts.imax or self.config.get("imax", iec.IMAX)
        self.mc = self.config.get("meter_constant", 3200)

    # -- transport -----------------------------------------------------------------------------

    def _connect(self, wait_s=0):
        from mpremote.transport_serial import SerialTransport

        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.t = SerialTransport(self.opts.port, baudrate=self.opts.baud)
                if self.opts.port.startswith("socket://"):
                    # a network port (the simulated board, ser2net): plain raw REPL, since the unix port
                    # does not see Ctrl-C while running code it received in raw-paste mode
                    self.t.use_raw_paste = False
                self.t.enter_raw_repl(soft_reset=False)
                return
            except Exception as e:  # noqa: BLE001 - a board that is still rebooting
                if self.t is not None:
                    try:
                        self.t.close()
                    except Exception:  # noqa: BLE001
                        pass
                    self.t = None
                if time.monotonic() > deadline:
                    raise BoardError("cannot reach the board's raw REPL on %s: %s" % (self.opts.port, e))
                time.sleep(0.5)

    def _reconnect(self):
        try:
            self.t.close()
        except Exception:  # noqa: BLE001 - the port may have gone with the reset (USB CDC)
            pass
        self.t = None
        time.sleep(1.0)
        self._connect(wait_s=20)

    def exec(self, code, timeout=30):
        out, err = self.t.exec_raw(code, timeout=timeout)
        if err:
            raise BoardError("board raised:\n%s" % err.decode(errors="replace"))
        return out.decode(errors="replace")

    def _agent_code(self, call):
        path = self.scratch
        return "import sys\nif %r not in sys.path: sys.path.append(%r)\nimport hil_agent\nhil_agent.%s\n" % (
            path,
            path,
            call,
        )

    def agent(self, call, timeout=60):
        """Run ``hil_agent.<call>`` on the board; its HIL: result."""
        code = self._agent_code(call)
        out = self.exec(code, timeout)
        for line in reversed(out.splitlines()):
            if line.startswith("HIL:"):
                return json.loads(line[4:])
        raise BoardError("no result from hil_agent.%s; the board printed:\n%s" % (call, out[-2000:]))

    def _mkdir(self, path):
        self.exec("import os\ntry:\n os.mkdir(%r)\nexcept OSError:\n pass\n" % path)

    def _hard_reset(self, running=False):
        """Reset the board (a power cut); ``running``: a program is executing and is interrupted first."""
        if self.opts.reset == "rts":
            s = self.t.serial
            s.dtr = False
            s.rts = True
            time.sleep(0.2)
            s.rts = False
        else:
            if running:
                self.t.serial.write(b"\x03\x03")  # KeyboardInterrupt wherever the program is
                self.t.read_until(1, b"\x04>", timeout=5)  # its traceback, then the raw REPL prompt
            self.t.serial.write(b"import machine\r\nmachine.reset()\r\n\x04")
        self._reconnect()

    def _disable_main(self):
        root = self.exec("import os\nprint(repr(os.listdir(%r)))\n" % (self.root or "."))
        names = ast.literal_eval(root.strip().splitlines()[-1])
        if "main.py" in names:
            self.exec("import os\nos.rename(%r, %r)\n" % (self.root + "main.py", self.root + MAIN_OFF))
            self._main_renamed = True
            self._hard_reset()
        elif MAIN_OFF in names:
            self._main_renamed = True  # left off by an interrupted session: restore it at close

    def _detect_kind(self):
        plat = self.exec("import sys\nprint(sys.platform)\n").strip().splitlines()[-1]
        return "rp2040" if plat.startswith("rp2") else "esp32"

    def close(self):
        if self.t is None:
            return
        try:
            try:
                self.agent("rmtree(%r)" % (self.scratch,))
            except Exception:  # noqa: BLE001 - no agent yet (a failed open): nothing to remove
                pass
            if self._main_renamed:
                self.exec("import os\nos.rename(%r, %r)\n" % (self.root + MAIN_OFF, self.root + "main.py"))
                self.t.exec_raw_no_follow("import machine\nmachine.reset()\n")  # the firmware runs again
        finally:
            try:
                self.t.close()
            except Exception:  # noqa: BLE001 - the board is resetting
                pass
            self.t = None

    # -- test meters ---------------------------------------------------------------------------

    def new_meter(self, name, patch=None, text=None):
        self._n += 1
        flash = "%s/m%03d" % (self.scratch, self._n)
        self._mkdir(flash)
        if text is None:
            text = json.dumps(base.deep_merge(self.config, patch))
        self.t.fs_writefile(flash + "/config.json", text.encode())
        return flash

    def _write_spec(self, spec, progress=False):
        cmds = []
        for c in spec.get("commands", []):
            frame = base.seal_command(self.key, self._meter_of(spec), spec["start"], c)
            cmds.append([spec["start"] + c["at"], frame.hex()])
        cmds.sort(key=lambda e: e[0])
        doc = {
            "start": spec["start"],
            "end": spec["start"] + sum(s["seconds"] for s in spec["segments"]),
            "tariff": spec.get("tariff"),
            "prepaid": spec.get("prepaid"),
            "poll_ms": spec.get("poll_ms"),
            "commands": cmds,
            "progress": progress,
        }
        path = self.scratch + "/spec.json"
        self.t.fs_writefile(path, json.dumps(doc).encode())
        return path, doc

    def _meter_of(self, spec):
        return spec.get("_meter_id", self.meter_id)

    def messages(self, flash, meter_id=None):
        """Copy the test meter's outbox to this machine and decode it (cwt-verified)."""
        local = os.path.join(self.workdir, flash.strip("/").replace("/", "_") + "-outbox")
        os.makedirs(local, exist_ok=True)
        for name in self.agent("listdir(%r)" % (flash + "/outbox",)):
            with open(os.path.join(local, name), "wb") as f:
                f.write(self.t.fs_readfile(flash + "/outbox/" + name))
        return base.outbox_messages(local, self.key, meter_id or self.meter_id)

    # -- the contract --------------------------------------------------------------------------

    def _need_load(self, why):
        if self.opts.ref_watts is None:
            raise base.Unsupported("board target: %s needs the bench's load declared (--ref-watts W)" % why)

    def load_w(self, segment):
        self._need_load("this test")
        return self.opts.ref_watts if segment.get("irms", 1) > 0 else 0.0

    def energy_tolerance_wh(self, wh, frontend=None):
        pf, kind = iec.parse_pf(self.opts.ref_pf)
        amps = self.opts.ref_amps or self.opts.ref_watts / (self.opts.ref_volts * pf)
        lim = iec.limit_pct(amps / self.ib, kind, self.imax / self.ib) or 2.0
        # the class limit, the reference's own uncertainty (0.5 %) and one poll (1 s) of timing
        return (lim + 0.5) / 100.0 * wh + self.opts.ref_watts * 1.5 / 3600.0 + 100.0 / self.mc

    def resolve_point(self, point):
        """The declared point with this board's front end, Ib and Imax (config.json unless --ib/--imax)."""
        return base.declared_point(self.opts, self.frontends[0], self.ib, self.imax)

    def boot(self, patch=None, text=None, frontend=None):
        if frontend is not None and frontend not in self.frontends:
            raise base.Unsupported("board target: its config.json meters with %s" % self.frontends[0])
        flash = self.new_meter("boot", patch, text)
        r = self.agent("boot(%r, %r)" % (self.board_kind, flash))
        if not r["ok"] and r.get("type") != "ConfigError":
            r["field"] = None
        return r

    def calibration(self, fault=None):
        if self.frontends[0] != "atm90e26":
            raise base.Unsupported(
                "board target: its config.json meters with the ADC; checksums need an ATM90E26"
            )
        flash = self.new_meter("cal")
        r = self.agent("calibration(%r, %r, %r, %d)" % (self.board_kind, flash, fault, self.cal_seconds))
        out = base.decode_calibration([tuple(f) for f in r["frames"]])
        st = r["state"]
        msgs = self.messages(flash)
        out.update(
            events=st["events"],
            event_details=[(m[10], m.get(11)) for _s, k, m in msgs if k == 2],
            metering=st["metering"],
            imp_mwh_after=sum(st["imp_mwh"]),
            calibration=self.config.get("calibration", {}),
        )
        return out

    def measure(self, point):
        self._need_load("the accuracy test")
        secs = self.opts.ref_seconds
        flash = self.new_meter("acc")
        r = self.agent("measure(%r, %r, %d)" % (self.board_kind, flash, round(secs)), timeout=secs + 60)
        return {
            "measured_wh": r["imp_mwh"] / 1000.0,
            "reference_wh": self.opts.ref_watts * r["ms"] / 3.6e6,
            "seconds": r["ms"] / 1000.0,
        }

    def run(self, spec, flash=None, patch=None, reporting=True, name="run"):
        if flash is None:
            flash = self.new_meter(name, patch)
        path, doc = self._write_spec(spec)
        secs = doc["end"] - doc["start"]
        r = self.agent("run(%r, %r, %r)" % (self.board_kind, flash, path), timeout=secs + 60)
        return {"state": r["state"], "messages": self.messages(flash), "flash": flash, "start": spec["start"]}

    def power_cut(self, spec, cut_s, patch=None, flash=None):
        self._need_load("the power-cut test")
        if flash is None:
            flash = self.new_meter("cut", patch)
        path, _doc = self._write_spec(dict(spec, commands=[]), progress=True)
        code = self._agent_code("run(%r, %r, %r)" % (self.board_kind, flash, path))
        self.t.exec_raw_no_follow(code)
        last = (None, 0)  # (host time of the line, mWh)
        t_first = None
        buf = b""
        while True:
            chunk = self.t.read_until(1, b"\n", timeout=10)
            if not chunk.endswith(b"\n"):
                raise BoardError("the run stopped printing progress: %r" % (buf + chunk)[-500:])
            line = (buf + chunk).decode(errors="replace").strip()
            buf = b""
            if not line.startswith("P "):
                continue
            now = time.monotonic()
            t_first = t_first or now
            last = (now, int(line.split()[2]))
            if now - t_first >= cut_s:
                break
        t_cut = time.monotonic()
        self._hard_reset(running=True)
        at_cut = last[1] + self.opts.ref_watts * (t_cut - last[0]) / 3.6
        st = self.agent("recover(%r, %r)" % (self.board_kind, flash))["state"]
        cfg = base.deep_merge(self.config, patch)
        return {
            "energy_at_cut_mwh": at_cut,
            "restored_mwh": sum(st["imp_mwh"]) + sum(st["exp_mwh"]),
            "restored_ts": st["ts"],
            "events_after": st["events"],
            "boot_count": st["boot_count"],
            "persist_wh": cfg.get("persist_wh", 50),
            "poll_ms": spec.get("poll_ms") or cfg.get("poll_ms", 1000),
            "count_mwh": 100000.0 / self.mc if self.frontends[0] == "atm90e26" else 1.0,
            "flash": flash,
        }

    def backlog(self, broker, outage_spec, after_spec, patch=None):
        if not self.opts.broker_host or broker.board_port is None:
            raise base.Unsupported(
                "board target: the broker test needs --broker-host (this machine's address as the board "
                "sees it) and the board on that network (config.json wifi)"
            )
        from hil_tests.targets.listener import Listener
        from tools.mosquitto_broker import free_port

        self._n += 1
        meter_id = "hil-bk-%03d" % self._n
        flash = self.new_meter("backlog", base.deep_merge({"meter_id": meter_id}, patch))
        spec = dict(outage_spec, _meter_id=meter_id)
        path, doc = self._write_spec(spec)
        secs = doc["end"] - doc["start"]
        dead = free_port()  # nothing listens there: the broker is out
        outage_state = self.agent(
            "link(%r, %r, %r, %r, %d, 0)" % (self.board_kind, flash, path, self.opts.broker_host, dead),
            timeout=secs + 120,
        )["state"]
        lis = Listener("127.0.0.1", broker.port, meter_id)
        try:
            path, doc = self._write_spec(dict(after_spec, _meter_id=meter_id))
            secs = doc["end"] - doc["start"]
            st = self.agent(
                "link(%r, %r, %r, %r, %d, 30000)"
                % (self.board_kind, flash, path, self.opts.broker_host, broker.board_port),
                timeout=secs + 180,
            )["state"]
            lis.wait(lambda fr: len(fr) >= st["seq"], 30)
        finally:
            lis.close()
        return {
            "outage_state": outage_state,
            "state": st,
            "frames": lis.frames(),
            "meter_id": meter_id,
            "key": self.key,
            "flash": flash,
        }
