"""Fleet simulator: N emulated meters (the real firmware on the MicroPython unix port) against one broker.

Usage:
    python tools/fleet_sim.py --db headend.db --meters DIR --days D [--speed S] [--faults FILE]
        [--broker mqtt://HOST:PORT [--headend-port P]] [--serve] [--start TS] [--seed N] [--poll-s 60]
        [--linger 30] [--tariff FILE] [--opening-credit MILLI] [--work DIR] [--progress 2] [--timeout 3600]
        [--json]

DIR is what tools/provision_fleet.py wrote: DIR/<meter_id>/config.json. Each
meter runs in its own flash directory, ``WORK/flash/<meter_id>`` (WORK
defaults to DIR/sim), made on first use from its config.json plus the
factory calibration of the emulated front end (tools/emulate_bench: the
emulated ATM90E26 has sensor errors only a calibration corrects) when the
config has none. The flash persists between runs: a later run continues
each meter from its persisted clock, and its seq, as a real meter would
(the default ``--start`` is then the latest persisted clock; on fresh
flash it is UTC midnight today minus D days). Do not delete WORK/flash
while the database keeps the fleet's readings: the meters would start again
at seq 1 and the head-end refuses a reused seq.

Prepaid meters (config ``prepaid.enabled``) boot with balance 0 and so
disconnect their load until credited: top them up through the head-end
(``headend topup`` + ``headend dispatch``: the simulated meters are
subscribed), or give them ``--opening-credit MILLI`` on first boot (the
emulator's factory balance; the head-end's ledger does not know it).

Each meter is a ``tools/emulate.Session`` (one ``micropython`` process, its
bench served by a thread here) with ``broker=mqtt://<id>:<password>@host:port``
(the password from its config.json) at ``--speed`` emulated s per real s
(0: as fast as it can). Its scenario (written to WORK/scenarios/<id>.json)
is one segment per hour of a seeded residential load profile
(tools/fleet_scenario.py), polled every ``--poll-s`` emulated s.

Broker: without ``--broker`` the simulator writes the broker files for every
meter in the database (``headend.meters.provision.write_broker_config``, the code of
``headend broker-config``, with persistence) into WORK/broker and runs
Mosquitto on two free loopback ports, the meters' listener and the head-end's
(tools/mosquitto_broker.MosquittoBroker.from_conf); it can then stop and
restart it for a broker outage. Run as root, WORK must be reachable by user
mosquitto (the broker runs as it). With ``--broker``, the head-end (observer,
``--serve``) connects to ``--headend-port`` (default PORT + 1, as
``headend broker-config`` writes it). ``--serve``
also runs ``headend serve --db DB`` against it and, at the end, waits until
the database holds every reading the broker carried.

Faults (``--faults FILE``, format in tools/fleet_scenario.py): broker
outage, tamper (cover/magnet), power cut (SIGKILL of the meter's firmware
process, restarted from its flash), theft-like load (L/N bypass or a drop).
Every meter is held at each outage edge and power-cut instant until the
whole fleet has reached it (``FleetClock``), so the fault happens at the
same emulated instant for all; tamper and theft are segments of the
meter's scenario.

Progress (stderr, every ``--progress`` real s; 0 = none): per meter its
emulated time, messages the broker carried (seen by an observer logged in
as the head-end user: tools/fleet_observer.py) and processes started.
Summary (text, or JSON with ``--json``): per meter readings and events
published, processes (boots this run), power cuts, outbox pending/dropped,
boot count, readings and events stored in the database, how its broker link
ended (``broker``: connected, refused: <CONNACK reason and code>,
unreachable: <error>, lost: <error>; tools/emulate.py) with a line under the
table for each meter that left messages undelivered; the faults with their
emulated and real times; wall time. Exit 0 when every meter finished its
scenario and delivered everything, 1 when one did not finish (or on bad
input), else, with ``--linger`` > 0, tools/emulate.py's delivery codes: 3 when
a meter's broker refused it (CONNACK return code) or could not be reached
with messages left in its outbox, 4 when a meter was connected but still had
messages undelivered when its linger ran out (3 wins over 4).

Practical size on a 2-core machine: the benches share one CPython process
(the GIL) and each meter is a micropython process; about 20 meters at full
speed (README "Tools" has measured figures). Every process started here
(firmware processes, Mosquitto, headend serve in its own process group) is
stopped in a finally block, also on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import quote, urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import emulate, fleet_scenario  # noqa: E402
from tools.mosquitto_broker import MosquittoBroker, free_ports  # noqa: E402

bench_mod = emulate.emulate_bench  # the module tools/emulate.Session checks scenarios against
from firmware import meter_state, persist  # noqa: E402
from headend.db.storage import Storage  # noqa: E402
from headend.meters import provision  # noqa: E402
from headend.timearg import epoch_arg  # noqa: E402
from protocol import board_config as fw_config  # noqa: E402  (after emulate_bench: it puts the shims on sys.path)

CONFIG_NAME = "config.json"
DAY = 86400
STORE_WAIT_S = 60.0
STALL_S = 120.0  # real s without any progress while meters wait at a fault instant: give up


class SimError(Exception):
    """The simulation cannot start or run; the message says why."""


class SimAborted(Exception):
    """Raised in a meter's bench thread when the simulation is being torn down."""


# -- holding the fleet at fault instants --------------------------------------------------------


class FleetClock:
    """Gates at emulated instants (ms): no meter's bench advances past the next gate until every meter
    still running has reached it; then the controller applies the faults due there and ``release()``s."""

    def __init__(self, gates_ms):
        self.cond = threading.Condition()
        self.gates = sorted(set(gates_ms))
        self.k = 0
        self.pos: dict[str, int] = {}
        self.active: set[str] = set()
        self.aborted = False

    def gate(self):
        return self.gates[self.k] if self.k < len(self.gates) else None

    def join(self, meter_id: str, t_ms: int) -> None:
        with self.cond:
            self.active.add(meter_id)
            self.pos[meter_id] = t_ms

    def hold(self, meter_id: str, t_ms: int):
        """Block while ``t_ms`` is at or past the pending gate; the next gate (or None)."""
        with self.cond:
            self.pos[meter_id] = t_ms
            while True:
                if self.aborted:
                    raise SimAborted()
                g = self.gate()
                if g is None or t_ms < g:
                    return g
                self.cond.notify_all()
                self.cond.wait(1.0)

    def moved(self, meter_id: str, t_ms: int) -> None:
        with self.cond:
            self.pos[meter_id] = t_ms
            g = self.gate()
            if g is not None and t_ms >= g:
                self.cond.notify_all()

    def leave(self, meter_id: str) -> None:
        with self.cond:
            self.active.discard(meter_id)
            self.cond.notify_all()

    def reached(self) -> bool:
        """(with cond held) every running meter is at the pending gate."""
        g = self.gate()
        return g is not None and all(self.pos.get(m, -1) >= g for m in self.active)

    def release(self) -> None:
        with self.cond:
            self.k += 1
            self.cond.notify_all()

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self.cond.notify_all()


# -- one meter ----------------------------------------------------------------------------------


class MeterRun(threading.Thread):
    """Runs one meter's firmware until its scenario is over, restarting it after each power cut."""

    def __init__(self, sim: FleetSim, meter: dict, scenario, flash: str, url: str, cuts_ms: list[int]):
        super().__init__(name="meter-" + meter["meter_id"], daemon=True)
        self.sim = sim
        self.meter_id = meter["meter_id"]
        self.meter = meter
        self.scenario = scenario
        self.flash = flash
        self.url = url
        self.cuts = sorted(cuts_ms)
        self.cut_times: list[int] = []
        self.sessions = 0
        self.session = None
        self.state = None
        self.error: str | None = None
        self.delivery: tuple[int, str | None] = (0, None)  # emulate.delivery() of the last session
        self.t_ms = scenario.start * 1000
        self._cut_now = False

    def _instrument(self, s) -> None:
        bench = s.bench
        orig = bench.sleep
        clock = self.sim.clock

        def sleep(ms):
            t = bench.t_ms
            g = clock.hold(self.meter_id, t)
            if self.cuts and self.cuts[0] <= t:  # a power cut due now: SIGKILL, as the supply fails
                self.cuts.pop(0)
                self.cut_times.append(t // 1000)
                self._cut_now = True
                s.proc.kill()
                raise bench_mod.FirmwareDied(s.proc.wait())
            if g is not None and t + ms > g:
                ms = g - t
            d = orig(ms)
            self.t_ms = bench.t_ms
            clock.moved(self.meter_id, bench.t_ms)
            return d

        bench.sleep = sleep

    def run(self) -> None:
        sim = self.sim
        try:
            while not sim.clock.aborted:
                s = emulate.Session(
                    self.scenario, self.flash, broker=self.url, speed=sim.speed, linger=sim.linger
                )
                self.session = s
                self.sessions += 1
                self._instrument(s)
                state, err, rc = s.wait(sim.timeout)
                if state is not None and rc == 0:
                    self.state = state
                    self.delivery = s.delivery
                    break
                if self._cut_now:
                    self._cut_now = False
                    continue
                tail = err.strip().splitlines()[-3:]
                self.error = "firmware exited (%s) without a report: %s" % (rc, " | ".join(tail))
                break
        except SimAborted:
            self.error = self.error or "aborted"
        except Exception as e:  # reported in the summary; the other meters go on
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.kill()
            sim.clock.leave(self.meter_id)

    def kill(self) -> None:
        s = self.session
        if s is not None and s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


# -- the head-end ingest as a subprocess (--serve) ----------------------------------------------


class HeadendServe:
    """``headend serve`` in its own process group; ready once it has subscribed."""

    def __init__(self, db: str, url: str) -> None:
        cmd = [sys.executable, "-m", "headend.cli", "serve", "--db", db, "--broker", url]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 20
        while not any("subscribed" in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SimError("headend serve did not start: %s" % "".join(self.lines[-5:]))
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass


# -- the fleet ----------------------------------------------------------------------------------


def _calibration(cfg: dict, cache: dict) -> dict:
    """The factory calibration of the emulated front end for a validated config."""
    if cfg["frontend"] == "atm90e26":
        k = ("atm", cfg["meter_constant"], cfg["un"], cfg["ib"])
        if k not in cache:
            cache[k] = bench_mod.factory_calibration(cfg)
    else:
        k = ("adc", cfg["mains_hz"])
        if k not in cache:
            cache[k] = bench_mod.adc_calibration(cfg["mains_hz"])
    return dict(cache[k])


def persisted_clock(flash: str):
    """The clock (unix s) a meter's flash has saved, or None."""
    store = persist.SlotStore(flash, meter_state.STATE_NAME)
    state, _err = meter_state.read(store)
    return meter_state.clock_of(state)[0]


def _write_json(path: str, obj, private: bool = False) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1 if private else None)
    os.replace(tmp, path)


def _fmt_ts(ts) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


class FleetSim:
    """``with FleetSim(...) as sim: sim.run()`` (``__enter__`` prepares the fleet, starts the broker,
    observer and, with serve, ``headend serve``; ``__exit__`` stops all of it)."""

    def __init__(
        self,
        db: str,
        meters_dir: str,
        days: float,
        speed: float = 0.0,
        faults=None,
        broker: str | None = None,
        work: str | None = None,
        start: int | None = None,
        seed: int = 1,
        poll_s: int = 60,
        linger: float = 30.0,
        tariff: dict | None = None,
        opening_credit: int = 0,
        serve: bool = False,
        progress: float = 2.0,
        timeout: float = 3600.0,
        out=None,
        headend_port: int | None = None,
    ) -> None:
        if not 0 < days <= 366:
            raise SimError("--days must be > 0 and <= 366, got %r" % (days,))
        if speed < 0 or 0 < speed < 1:
            raise SimError("--speed must be 0 (full speed) or >= 1, got %r" % (speed,))
        if not 0.1 <= poll_s <= 60:
            raise SimError("--poll-s must be 0.1..60 (the ATM90E26's energy registers overflow beyond)")
        self.db = os.path.abspath(db)
        self.meters_dir = os.path.abspath(meters_dir)
        self.days = days
        self.speed = int(round(speed))  # the firmware divides ms by it (integers only)
        self.faults_in = faults if faults is not None else []
        self.broker_url = broker
        self.headend_port = headend_port
        self.work = os.path.abspath(work or os.path.join(self.meters_dir, "sim"))
        self.start_ts = start
        self.seed = seed
        self.poll_ms = int(poll_s * 1000)
        self.linger = linger
        self.tariff = tariff
        self.opening_credit = opening_credit
        self.serve = serve
        self.progress_s = progress
        self.timeout = timeout
        self.out = out if out is not None else sys.stderr
        self.meters: list[dict] = []
        self.runs: list[MeterRun] = []
        self.broker: MosquittoBroker | None = None
        self.broker_info: dict = {}
        self.headend_url: str | None = None
        self.observer = None
        self.headend: HeadendServe | None = None
        self.applied: list[dict] = []
        self.unstored: int | None = None
        self.clock = FleetClock([])
        self.broker_up = False
        self.t0 = time.monotonic()

    # -- preparation --------------------------------------------------------------------------

    def _load_meters(self) -> None:
        if not os.path.isdir(self.meters_dir):
            raise SimError("--meters %s is not a directory" % self.meters_dir)
        for name in sorted(os.listdir(self.meters_dir)):
            path = os.path.join(self.meters_dir, name, CONFIG_NAME)
            if not os.path.isfile(path):
                continue
            try:
                with open(path) as f:
                    raw = json.load(f)
                cfg = fw_config.validate(raw)
            except (OSError, ValueError) as e:
                raise SimError("%s: %s" % (path, e)) from None
            if cfg["meter_id"] != name:
                raise SimError("%s: meter_id %r does not match its directory" % (path, cfg["meter_id"]))
            self.meters.append({"meter_id": name, "raw": raw, "cfg": cfg, "frontend": cfg["frontend"]})
        if not self.meters:
            raise SimError(
                "no DIR/<meter_id>/config.json in %s (tools/provision_fleet.py writes them)"
                % (self.meters_dir,)
            )
        with Storage(self.db) as store:
            missing = [m["meter_id"] for m in self.meters if store.meter(m["meter_id"]) is None]
        if missing:
            raise SimError("meter(s) not registered in %s: %s" % (self.db, ", ".join(missing[:5])))

    def _prepare_flash(self) -> None:
        cache: dict = {}
        for m in self.meters:
            flash = os.path.join(self.work, "flash", m["meter_id"])
            m["flash"] = flash
            path = os.path.join(flash, CONFIG_NAME)
            if os.path.exists(path):
                continue
            os.makedirs(flash, exist_ok=True)
            raw = json.loads(json.dumps(m["raw"]))
            if not raw.get("calibration"):
                raw["calibration"] = _calibration(m["cfg"], cache)
            if self.opening_credit and m["cfg"]["prepaid"]["enabled"]:
                # first boot without prepaid; the scenario's opening balance enables it (emulator/main.py)
                raw["prepaid"] = dict(raw.get("prepaid", {}), enabled=False)
            fw_config.validate(raw)
            _write_json(path, raw, private=True)

    def _resolve_start(self) -> None:
        if self.start_ts is None:
            clocks = [c for c in (persisted_clock(m["flash"]) for m in self.meters) if c is not None]
            if clocks:
                self.start_ts = max(clocks)
            else:
                self.start_ts = int(time.time()) // DAY * DAY - int(self.days * DAY) // 3600 * 3600
        self.end_ts = self.start_ts + int(self.days * DAY)

    def _scenarios(self) -> None:
        hours = self.days * 24
        try:
            if isinstance(self.faults_in, str):
                self.faults_in = fleet_scenario.load_faults(self.faults_in)
            self.faults = fleet_scenario.parse_faults(self.faults_in, self.meters, hours)
        except fleet_scenario.FaultError as e:
            raise SimError(str(e)) from None
        if self.broker_url and any(f["kind"] == "broker_outage" for f in self.faults):
            raise SimError("a broker_outage needs the broker the simulator starts itself: drop --broker")
        os.makedirs(os.path.join(self.work, "scenarios"), exist_ok=True)
        for m in self.meters:
            segs = fleet_scenario.meter_segments(
                self.seed, m["meter_id"], self.start_ts, self.end_ts, self.faults
            )
            sc = {
                "frontend": m["frontend"],
                "start": self.start_ts,
                "mains_hz": m["cfg"]["mains_hz"],
                "segments": segs,
                "poll_ms": self.poll_ms,
            }
            if self.tariff is not None:
                sc["tariff"] = self.tariff
            if self.opening_credit and m["cfg"]["prepaid"]["enabled"]:
                sc["prepaid"] = {"balance": self.opening_credit}
            path = os.path.join(self.work, "scenarios", m["meter_id"] + ".json")
            _write_json(path, sc)
            try:
                m["scenario"] = bench_mod.Scenario(sc)
            except bench_mod.ScenarioError as e:
                raise SimError("%s: %s" % (path, e)) from None
        gates = []
        for f in self.faults:
            if f["kind"] == "broker_outage":
                gates += [(self.start_ts + f["at_s"]) * 1000, (self.start_ts + f["end_s"]) * 1000]
            elif f["kind"] == "power_cut":
                gates.append((self.start_ts + f["at_s"]) * 1000)
        self.clock = FleetClock(gates)

    def prepare(self) -> None:
        emulate.ensure_built()
        self._load_meters()
        self._prepare_flash()
        self._resolve_start()
        self._scenarios()

    # -- processes ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.broker_url is None:
            port, headend_port = free_ports(2)
            with Storage(self.db) as store:
                broker_dir = os.path.join(self.work, "broker")
                info = provision.write_broker_config(store, broker_dir, port, True, headend_port)
            self.broker = MosquittoBroker.from_conf(info["conf"], port)
            self.broker.start()
            self.broker_up = True
            host = "127.0.0.1"
            self.headend_url = info["headend_url"]
            self.broker_info = {"conf": info["conf"], "log": self.broker.log, "port": port, "own": True,
                                "headend_port": headend_port}  # fmt: skip
        else:
            u = urlsplit(self.broker_url)
            if u.scheme != "mqtt" or not u.hostname:
                raise SimError("--broker %r: expected mqtt://HOST:PORT" % (self.broker_url,))
            host, port = u.hostname, u.port or 1883
            self.broker_up = True
            with Storage(self.db) as store:
                pw = store.setting(provision.HEADEND_PASSWORD_SETTING)
            hport = self.headend_port or port + 1  # the head-end's listener (headend broker-config)
            if pw is not None:
                user = provision.HEADEND_USER
                self.headend_url = "mqtt://%s:%s@%s:%d" % (user, quote(pw, safe=""), host, hport)
            self.broker_info = {"host": host, "port": port, "own": False, "headend_port": hport}
        for m in self.meters:
            b = m["cfg"]["broker"]
            m["url"] = "mqtt://%s:%s@%s:%d" % (m["meter_id"], quote(b["password"], safe=""), host, port)
        if self.headend_url is not None:
            from tools.fleet_observer import Observer

            keys = {m["meter_id"]: m["cfg"]["key"] for m in self.meters}
            self.observer = Observer(self.headend_url, keys, "fleet-sim.observer-%d" % os.getpid())
            self.observer.connected.wait(10)
        if self.serve:
            if self.headend_url is None:
                raise SimError("--serve needs the head-end's broker password: run `headend broker-config`")
            self.headend = HeadendServe(self.db, self.headend_url)

    def close(self) -> None:
        self.clock.abort()
        for r in self.runs:
            r.kill()
        for r in self.runs:
            r.join(10)
        if self.headend is not None:
            self.headend.stop()
            self.headend = None
        if self.observer is not None:
            try:
                self.observer.close()
            finally:
                self.observer = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> FleetSim:
        try:
            self.prepare()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running ------------------------------------------------------------------------------

    def _apply_gate(self, g_ms: int) -> None:
        wall = round(time.monotonic() - self.t0, 2)
        for f in self.faults:
            at, end = (self.start_ts + f["at_s"]) * 1000, (self.start_ts + f["end_s"]) * 1000
            if f["kind"] == "broker_outage" and at == g_ms:
                self.broker.stop()
                self.broker_up = False
                self.applied.append({"fault": "broker stopped", "ts": g_ms // 1000, "wall_s": wall})
            elif f["kind"] == "broker_outage" and end == g_ms:
                self.broker.start()
                self.broker_up = True
                self.applied.append({"fault": "broker started", "ts": g_ms // 1000, "wall_s": wall})
            elif f["kind"] == "power_cut" and at == g_ms:
                self.applied.append(
                    {"fault": "power cut", "meter": f["meter"], "ts": g_ms // 1000, "wall_s": wall}
                )

    def _progress(self) -> None:
        obs = self.observer.snapshot() if self.observer is not None else {}
        elapsed = time.monotonic() - self.t0
        head = "[%7.1f s] broker %s" % (elapsed, "up" if self.broker_up else "DOWN")
        cells = []
        for r in self.runs:
            o = obs.get(r.meter_id, {})
            cells.append(
                "%s %s msgs %s boots %d%s"
                % (
                    r.meter_id,
                    _fmt_ts(r.t_ms // 1000),
                    o.get("msgs", "-"),
                    r.sessions,
                    " done" if not r.is_alive() else "",
                )
            )
        lines = [head] + ["  " + " | ".join(cells[i : i + 3]) for i in range(0, len(cells), 3)]
        print("\n".join(lines), file=self.out, flush=True)

    def run(self) -> dict:
        """Run every meter to the end of its scenario; the summary dict."""
        self.t0 = time.monotonic()
        cuts: dict[str, list[int]] = {}
        for f in self.faults:
            if f["kind"] == "power_cut":
                cuts.setdefault(f["meter"], []).append((self.start_ts + f["at_s"]) * 1000)
        for m in self.meters:
            r = MeterRun(self, m, m["scenario"], m["flash"], m["url"], cuts.get(m["meter_id"], []))
            self.runs.append(r)
            self.clock.join(r.meter_id, self.start_ts * 1000)
        for r in self.runs:
            r.start()
        next_progress = self.t0 + self.progress_s if self.progress_s else None
        deadline = self.t0 + self.timeout
        stall_s = max(STALL_S, self.linger + 60)
        last, last_change = None, self.t0
        while any(r.is_alive() for r in self.runs):
            clock = self.clock
            with clock.cond:
                clock.cond.wait(0.2)
                gate = clock.gate()
                g = gate if clock.reached() else None
                waiting = gate is not None and any(clock.pos[m] >= gate for m in clock.active)
                snap = sorted(clock.pos.items())
            now = time.monotonic()
            if g is not None:
                self._apply_gate(g)
                clock.release()
            if snap != last:
                last, last_change = snap, now
            elif waiting and now - last_change > stall_s:
                clock.abort()
                behind = [m for m in sorted(clock.active) if clock.pos[m] < gate]
                raise SimError(
                    "meters %s made no progress for %d s while the fleet waited at %s"
                    % (", ".join(behind), stall_s, _fmt_ts(gate // 1000))
                )
            if now > deadline:
                self.clock.abort()
                raise SimError("--timeout: the fleet did not finish within %d s" % self.timeout)
            if next_progress is not None and now >= next_progress:
                self._progress()
                next_progress = now + self.progress_s
        for r in self.runs:
            r.join()
        sim_wall = time.monotonic() - self.t0
        stored_wait = self._wait_stored() if self.headend is not None else None
        self.unstored = self._missing() if self.headend is not None else None
        if self.progress_s:
            self._progress()
        return self.summary(sim_wall, stored_wait)

    def _stored(self) -> dict[str, dict]:
        out = {}
        with Storage(self.db) as store:
            for m in self.meters:
                rows = store.db.execute(
                    "SELECT (SELECT count(*) FROM readings WHERE meter_id = ?),"
                    " (SELECT count(*) FROM events WHERE meter_id = ?)",
                    [m["meter_id"], m["meter_id"]],
                ).fetchone()
                out[m["meter_id"]] = {"readings": rows[0], "events": rows[1]}
        return out

    def _missing(self) -> int:
        """How many readings and events the observer saw that the database does not hold yet."""
        if self.observer is None:
            return 0
        missing = 0
        with Storage(self.db) as store:
            for meter_id, (readings, events) in self.observer.seqs().items():
                for table, seen in (("readings", readings), ("events", events)):
                    if not seen:
                        continue
                    sql = "SELECT seq FROM %s WHERE meter_id = ? AND seq >= ?" % table
                    have = {row[0] for row in store.db.execute(sql, [meter_id, min(seen)]).fetchall()}
                    missing += len(seen - have)
        return missing

    def _wait_stored(self) -> float:
        """Wait until the database holds every reading and event the observer saw; seconds waited."""
        t0 = time.monotonic()
        while self._missing() and time.monotonic() - t0 < STORE_WAIT_S:
            time.sleep(0.25)
        return round(time.monotonic() - t0, 2)

    def summary(self, wall: float, stored_wait) -> dict:
        obs = self.observer.snapshot() if self.observer is not None else {}
        try:
            stored = self._stored()
        except Exception:
            stored = {}
        meters = []
        for r in self.runs:
            st = r.state or {}
            comms = st.get("comms") or {}
            o = obs.get(r.meter_id)
            meters.append(
                {
                    "meter_id": r.meter_id,
                    "frontend": r.meter["frontend"],
                    "prepaid": r.meter["cfg"]["prepaid"]["enabled"],
                    "ok": r.error is None and r.state is not None,
                    "error": r.error,
                    "emulated_until": st.get("ts"),
                    "readings_sent": o["readings"] if o else None,
                    "events_sent": o["events"] if o else None,
                    "messages": o["msgs"] if o else None,
                    "bad_frames": o["bad"] if o else None,
                    "broker_state": st.get("broker"),
                    "delivery_exit": r.delivery[0],
                    "delivery_error": r.delivery[1],
                    "outbox_pending": comms.get("pending"),
                    "outbox_dropped": comms.get("dropped"),
                    "seq": st.get("seq"),
                    "boots": st.get("boot_count"),
                    "processes": r.sessions,
                    "power_cuts": r.cut_times,
                    "relay": st.get("relay"),
                    "imp_wh": sum(st["imp"]) if st.get("imp") else None,
                    "stored_readings": stored.get(r.meter_id, {}).get("readings"),
                    "stored_events": stored.get(r.meter_id, {}).get("events"),
                }
            )
        return {
            "ok": all(m["ok"] for m in meters),
            "delivered": not any(m["delivery_exit"] for m in meters),
            "meters": meters,
            "count": len(meters),
            "start": self.start_ts,
            "end": self.end_ts,
            "days": self.days,
            "speed": self.speed,
            "wall_s": round(wall, 2),
            "stored_wait_s": stored_wait,
            "unstored": self.unstored,
            "faults": self.applied,
            "broker": self.broker_info,
            "work": self.work,
        }


def summary_text(s: dict) -> str:
    lines = [
        "fleet: %d meters, %s .. %s (%.3g days) at %s in %.1f s real%s"
        % (
            s["count"],
            _fmt_ts(s["start"]),
            _fmt_ts(s["end"]),
            s["days"],
            "full speed" if not s["speed"] else "%gx" % s["speed"],
            s["wall_s"],
            ""
            if s["stored_wait_s"] is None
            else " (+%.1f s until stored; %d not stored)" % (s["stored_wait_s"], s["unstored"]),
        )
    ]
    for f in s["faults"]:
        lines.append(
            "fault: %-14s %s at %s (%.1f s real)"
            % (f["fault"], f.get("meter", ""), _fmt_ts(f["ts"]), f["wall_s"])
        )
    head = (
        "meter",
        "front",
        "readings",
        "stored",
        "events",
        "pending",
        "boots",
        "cuts",
        "msgs",
        "kWh",
        "broker",
    )
    lines.append("%-12s %-8s %8s %8s %6s %7s %5s %5s %8s %8s %-11s  %s" % (head + ("event codes",)))
    for m in s["meters"]:
        lines.append(
            "%-12s %-8s %8s %8s %6s %7s %5s %5d %8s %8s %-11s  %s"
            % (
                m["meter_id"],
                m["frontend"],
                "-" if m["readings_sent"] is None else m["readings_sent"],
                "-" if m["stored_readings"] is None else m["stored_readings"],
                "-" if m["stored_events"] is None else m["stored_events"],
                "-" if m["outbox_pending"] is None else m["outbox_pending"],
                "-" if m["boots"] is None else m["boots"],
                len(m["power_cuts"]),
                "-" if m["messages"] is None else m["messages"],
                "-" if m["imp_wh"] is None else "%.1f" % (m["imp_wh"] / 1000),
                (m["broker_state"] or "-").split(":")[0],
                " ".join(str(c) for c in m["events_sent"] or []) if m["ok"] else "ERROR " + str(m["error"]),
            )
        )
    for m in s["meters"]:
        if m["delivery_error"]:
            lines.append("%s: %s (exit %d)" % (m["meter_id"], m["delivery_error"], m["delivery_exit"]))
    return "\n".join(lines)


def exit_status(s: dict) -> int:
    """1 when a meter did not finish its scenario; else 3 when a meter's broker refused it or could
    not be reached with messages left, 4 when one was connected but not done when its linger ran out
    (tools/emulate.py's codes; the worst, 3 before 4); else 0."""
    if not s["ok"]:
        return 1
    codes = {m["delivery_exit"] for m in s["meters"]}
    for code in (emulate.EXIT_UNDELIVERED, emulate.EXIT_BACKLOG):
        if code in codes:
            return code
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default="headend.db", help="head-end database the meters are registered in")
    p.add_argument("--meters", required=True, metavar="DIR", help="tools/provision_fleet.py --out DIR")
    p.add_argument("--days", type=float, required=True, help="emulated days to run")
    p.add_argument("--speed", type=float, default=0, help="emulated s per real s (default 0: full speed)")
    p.add_argument("--faults", metavar="FILE", help="fault script (tools/fleet_scenario.py)")
    p.add_argument("--broker", metavar="URL", help="mqtt://HOST:PORT of a running broker (default: own)")
    p.add_argument(
        "--headend-port",
        type=int,
        metavar="P",
        help="with --broker: the head-end's listener (default PORT + 1)",
    )
    p.add_argument("--serve", action="store_true", help="also run `headend serve` and wait until stored")
    p.add_argument("--start", type=epoch_arg, help="emulated start (epoch s or ISO 8601; default: resume)")
    p.add_argument("--seed", type=int, default=1, help="load profile seed (default 1)")
    p.add_argument("--poll-s", type=float, default=60, help="emulated s between metering polls (default 60)")
    p.add_argument("--linger", type=float, default=30, help="real s a meter may take to empty its outbox")
    p.add_argument(
        "--tariff", metavar="FILE", help="set-tariff args JSON (docs/protocol.md command 3) to install"
    )
    p.add_argument("--opening-credit", type=int, default=0, help="prepaid meters' first balance, milli-units")
    p.add_argument("--work", metavar="DIR", help="flash dirs, scenarios, broker files (default METERS/sim)")
    p.add_argument("--progress", type=float, default=2.0, help="real s between progress lines (0: none)")
    p.add_argument("--timeout", type=float, default=3600, help="real s before giving up (default 3600)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)

    def stop(signum, frame):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGTERM, stop)
    try:
        tariff = None
        if args.tariff:
            with open(args.tariff) as f:
                tariff = json.load(f)
        sim = FleetSim(
            args.db,
            args.meters,
            args.days,
            speed=args.speed,
            faults=args.faults,
            broker=args.broker,
            work=args.work,
            start=args.start,
            seed=args.seed,
            poll_s=args.poll_s,
            linger=args.linger,
            tariff=tariff,
            opening_credit=args.opening_credit,
            serve=args.serve,
            progress=args.progress,
            timeout=args.timeout,
            headend_port=args.headend_port,
        )
        with sim:
            s = sim.run()
    except (SimError, OSError, ValueError, RuntimeError, emulate.EmulatorError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every process started was stopped", file=sys.stderr)
        return 130
    print(json.dumps(s) if args.json else summary_text(s))
    code = exit_status(s)
    if code in (emulate.EXIT_UNDELIVERED, emulate.EXIT_BACKLOG):
        bad = [m["meter_id"] for m in s["meters"] if m["delivery_exit"]]
        print(
            "error: %d meter(s) left messages undelivered: %s (exit %d)" % (len(bad), ", ".join(bad), code),
            file=sys.stderr,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
