"""`make demo`: a month of a small fleet, end to end, on this machine.

    .venv/bin/python tools/demo.py [--days 28.1] [--work build/demo]

1. Provisions four meters (tools/provision_fleet.py): two with the emulated
   ATM90E26, two with the direct-ADC front end, two prepaid, two postpaid;
   generated keys, broker passwords and a Mosquitto password/ACL file.
2. Creates their customer accounts on a peak/valley tariff (one in a key
   zone, whose bills are always reviewed) and installs the same tariff on
   the meters.
3. Runs the fleet (tools/fleet_sim.py: the real firmware on the MicroPython
   unix port, one process per meter) against Mosquitto with `headend serve`
   ingesting and `headend dispatch` delivering commands, over last calendar
   month (UTC) at full speed, with a tamper (cover opened), a line/neutral bypass, an
   8-hour broker outage and a power cut. The prepaid meters get a first
   top-up at once; when one runs out of credit (its relay opens) the
   customer tops it up again through the head-end.
4. Runs VEE, the prepaid reconciliation, last month's bill run and the
   alert rules as of the end of its emulated month (the fleet was switched
   off then, so each meter also shows communication loss: its will), and
   prints the bills, the prepaid ledgers, the alerts and work orders, and how
   to open the dashboard on the result. The alerts do not depend on the day
   the demo runs: see ``head_end_clock_at``.

Every process it starts (Mosquitto, the firmware, headend serve/dispatch)
is stopped before it exits, also on Ctrl-C. Exit 0 when the fleet finished,
every reading was stored and the bill run completed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

import fleet_sim  # noqa: E402

from headend.commands.tariff import set_tariff  # noqa: E402
from headend.db.storage import Storage  # noqa: E402


def last_month(now: float) -> tuple[str, int, int]:
    """The previous calendar month (UTC) before ``now``: (cycle "YYYY-MM", start ts, end ts)."""
    import calendar
    from datetime import UTC, datetime

    t = datetime.fromtimestamp(now, UTC)
    y, m = (t.year, t.month - 1) if t.month > 1 else (t.year - 1, 12)
    start = calendar.timegm((y, m, 1, 0, 0, 0))
    end = start + calendar.monthrange(y, m)[1] * 86400
    return "%04d-%02d" % (y, m), start, end


CYCLE, CYCLE_START, CYCLE_END = last_month(time.time())
START = CYCLE_START - 3600  # an hour before the cycle: its first reading (at the cycle's start) opens it
DAYS = (CYCLE_END - START + 3600) / 86400  # to an hour after the cycle's end: the reading that closes it
TARIFF = """format = "open-ami-tariff"
name = "Demo peak/valley"
currency = "CNY"
utc_offset = 0
periods = ["peak", "valley"]

[calendar]
day_profiles = [[["00:00", "valley"], ["08:00", "peak"], ["22:00", "valley"]]]
week_profiles = [[0, 0, 0, 0, 0, 0, 0]]

[energy]
peak = "0.62"
valley = "0.31"

[fixed]
monthly = "5.00"
"""
FAULTS = [
    {"kind": "tamper", "meter": "m-0001", "at": 7 * 24 + 10, "hours": 1, "switch": "cover"},
    {"kind": "theft", "meter": "m-0003", "at": 14 * 24 + 19, "hours": 6, "mode": "bypass", "share": 0.6},
    {"kind": "broker_outage", "at": 11 * 24 + 6, "hours": 8},
    {"kind": "power_cut", "meter": "m-0004", "at": 20 * 24 + 3.5},
]
# The demo replays a past month in minutes, so the whole month reaches the head-end at once: VEE's
# delivery-delay check (a reading received over an hour after its ts without the backlog flag) would
# flag every reading. These are the demo's VEE thresholds; the rest are the defaults.
VEE_TOML = "[vee]\nmax_delivery_delay_s = 5616000  # 65 days: last month, received today\n"
FIRST_TOPUP = "40"  # currency units; a prepaid customer's first payment
SECOND_TOPUP = "120"


def head_end_clock_at(db: str, end: int) -> float:
    """Put what the fleet sent on the head-end's clock as if the demo had run in real time up to
    ``end`` (its emulated month's end), and return the shift (s, negative).

    The fleet replays a past month in minutes, so the head-end received all of it today: its
    receive times (``received_at`` of readings, events and acks, a meter's ``last_seen``) are
    today's while the meters' clocks (``ts``) are last month's. The alert rules judge
    communication loss and clock drift on the head-end's clock, and their windows (the last
    whole day, the last 7 days) on ``--now``: evaluated today, they would see meter clocks days
    behind (clock_drift) and windows without data, different on every day the demo runs. So the
    demo moves those receive times back by one constant, the last of them landing at ``end``
    (order and spacing kept: the month still arrived in the last minutes before ``end``), and
    runs ``headend alerts run --now end``."""
    import sqlite3

    cols = (("readings", "received_at"), ("events", "received_at"), ("acks", "received_at"),
            ("meters", "last_seen"))  # fmt: skip
    conn = sqlite3.connect(db)
    try:
        last = max((conn.execute("SELECT max(%s) FROM %s" % (c, t)).fetchone()[0] or 0) for t, c in cols)
        shift = min(0.0, end - last)
        with conn:
            for t, c in cols:
                conn.execute("UPDATE %s SET %s = %s + ? WHERE %s IS NOT NULL" % (t, c, c, c), (shift,))
    finally:
        conn.close()
    return shift


def say(tag: str, text: str) -> None:
    print("%-11s %s" % (tag, text), flush=True)


def headend(db: str, *args: str, check: bool = True, stdin: str | None = None) -> str:
    """Run one `headend` command (the CLI users run) and return its stdout."""
    p = subprocess.run(
        [sys.executable, "-m", "headend.cli", "--db", db, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
    )
    if check and p.returncode != 0:
        raise RuntimeError("headend %s: %s" % (" ".join(args[:2]), (p.stderr or p.stdout).strip()))
    return p.stdout


def headend_json(db: str, *args: str):
    return json.loads(headend(db, *args, "--json"))


class Dispatcher:
    """`headend dispatch` as a child process for the length of the run (resends every 2 s at first)."""

    def __init__(self, db: str, url: str) -> None:
        cmd = [sys.executable, "-m", "headend.cli", "--db", db, "dispatch", "--broker", url]
        cmd += ["--interval", "0.5", "--backoff", "2", "--backoff-max", "10"]
        cmd += ["--client-id", "headend.demo-dispatch"]
        self.log = open(os.path.join(os.path.dirname(db), "dispatch.log"), "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Customer(threading.Thread):
    """A prepaid customer who pays again once the meter has reported its credit exhausted (event 9)."""

    def __init__(self, db: str, meters: list[str]) -> None:
        super().__init__(daemon=True)
        self.db, self.meters, self.paid, self.stop = db, set(meters), [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5) and self.meters:
            try:
                with Storage(self.db) as store:
                    out = [m for m in self.meters if any(e["code"] == 9 for e in store.events(m))]
            except Exception:  # the database is busy being written: look again shortly
                continue
            for m in out:
                self.meters.discard(m)
                headend(self.db, "topup", m, SECOND_TOPUP, "--payment-id", "demo-%s-2" % m)
                self.paid.append(m)
                say("customer", "%s ran out of credit; paid %s more" % (m, SECOND_TOPUP))


def provision(work: str, db: str) -> list[dict]:
    out = os.path.join(work, "fleet")
    args = ["--db", db, "--count", "4", "--out", out, "--frontend", "mixed", "--prepaid-share", "0.5"]
    p = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "provision_fleet.py"), *args, "--json"],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise RuntimeError("provision_fleet: " + (p.stderr or p.stdout).strip())
    summary = json.loads(p.stdout)
    return summary["meters"]


def accounts(work: str, db: str, meters: list[dict]) -> None:
    path = os.path.join(work, "peak-valley.toml")
    with open(path, "w") as f:
        f.write(TARIFF)
    for i, m in enumerate(meters):
        kind = "--prepaid" if m["prepaid"] else "--postpaid"
        zone = ["--zone", "harbour", "--key-zone"] if i == 0 else ["--zone", "north"]
        headend(db, "account", "add", "A-" + m["meter_id"][2:], *zone, kind, "--tariff", path,
                "--meter", m["meter_id"])  # fmt: skip
        say("account", "A-%s  %s %s, %s front end, %s" % (
            m["meter_id"][2:], "prepaid " if m["prepaid"] else "postpaid", m["meter_id"], m["frontend"],
            "key zone (every bill reviewed)" if i == 0 else "regular zone"))  # fmt: skip
    return path


def meter_tariff(path: str) -> dict:
    """The tariff as the meters get it (set-tariff args, docs/protocol.md command 3), in force from
    the start."""
    from headend.commands.tariff import load

    tariff, _single = load(path)
    st = set_tariff(tariff, 0, START, 4, single=True)
    return {str(k): v for k, v in st.args.items()}


def show_results(db: str, meters: list[dict]) -> None:
    bills = headend_json(db, "bill", "list", "--cycle", CYCLE)
    say("bills", "%d bills for %s (prepaid accounts pay as they go)" % (len(bills), CYCLE))
    for b in bills:
        reasons = "; ".join(b["reasons"])
        row = (b["account_id"], b["state"], b["energy_kwh"], b["total"], b["currency"], reasons)
        say("", "%-8s %-8s %10s kWh %10s %s  %s" % row)
    for m in meters:
        if m["prepaid"]:
            account = "A-" + m["meter_id"][2:]
            led = headend_json(db, "prepaid", "ledger", account)
            topups = [e for e in led["entries"] if e["kind"] == "topup"]
            paid = ", ".join("%s %s" % (e["amount"] // 1000, e["delivery"]) for e in topups)
            say("prepaid", "%s top-ups %s; ledger balance %.3f" % (account, paid, led["balance"] / 1000))
    alerts = headend_json(db, "alerts", "list", "--state", "all")
    say("alerts", "%d alerts" % len(alerts))
    for a in alerts:
        say("", "#%-3s %-8s %-22s %-7s %s" % (a["id"], a["severity"], a["rule"], a["meter_id"], a["summary"]))
    wos = headend_json(db, "workorder", "list", "--state", "all")
    say("work order", "%d for suspected theft" % len(wos))
    for w in wos:
        say("", "#%-3s %-7s %s: %s" % (w["id"], w["meter_id"], w["location"], w["reason"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=DAYS, help="emulated days (default: last month and 2 h)")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "demo"), help="working directory (wiped)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    db = os.path.join(work, "headend.db")
    meters = provision(work, db)
    fleet = os.path.join(work, "fleet")
    say("provision", "%d meters; keys, configs, broker files: %s" % (len(meters), os.path.relpath(fleet)))
    tariff_path = accounts(work, db, meters)
    prepaid = [m["meter_id"] for m in meters if m["prepaid"]]
    hours = args.days * 24
    faults = [f for f in FAULTS if f["at"] + f.get("hours", 0) < hours]
    dispatcher = customer = None
    sim = fleet_sim.FleetSim(
        db,
        os.path.join(work, "fleet"),
        args.days,
        faults=faults,
        start=START,
        tariff=meter_tariff(tariff_path),
        serve=True,
        progress=5.0,
        linger=30,
    )
    try:
        with sim:
            b = sim.broker_info
            say("broker", "mosquitto with per-meter passwords and ACL: meters at 127.0.0.1:%d, the head-end"
                " at 127.0.0.1:%d" % (b["port"], b["headend_port"]))  # fmt: skip
            dispatcher = Dispatcher(db, sim.headend_url)
            for m in prepaid:
                headend(db, "topup", m, FIRST_TOPUP, "--payment-id", "demo-%s-1" % m)
                say("customer", "%s paid %s (top-up queued for the meter)" % (m, FIRST_TOPUP))
            customer = Customer(db, prepaid)
            customer.start()
            kinds = ", ".join("%s at +%gh" % (f["kind"], f["at"]) for f in faults) or "none"
            when = fleet_sim._fmt_ts(START)
            say("fleet", "%.1f emulated days from %s UTC; faults: %s" % (args.days, when, kinds))
            summary = sim.run()
            customer.stop.set()
            dispatcher.stop()
    finally:
        if customer is not None:
            customer.stop.set()
        if dispatcher is not None:
            dispatcher.stop()
    print(fleet_sim.summary_text(summary), flush=True)
    if summary.get("unstored"):
        say("demo", "FAILED: %s readings were not stored" % summary["unstored"])
        return 1
    end = str(min(START + int(args.days * 86400), CYCLE_END + 3600))
    vee_cfg = os.path.join(work, "vee.toml")
    with open(vee_cfg, "w") as f:
        f.write(VEE_TOML)
    vee = json.loads(headend(db, "vee", "run", "--json", "--now", end, "--config", vee_cfg))
    states: dict = {}
    for r in vee.values():
        for k, n in r["states"].items():
            states[k] = states.get(k, 0) + n
    say("vee", "readings by state: %s" % ", ".join("%s %d" % kv for kv in sorted(states.items()) if kv[1]))
    headend(db, "prepaid", "sync")
    say("bill run", headend(db, "bill", "run", "--cycle", CYCLE).strip().splitlines()[-1])
    head_end_clock_at(db, int(end))
    say("alerts", headend(db, "alerts", "run", "--now", end).strip().splitlines()[0])
    show_results(db, meters)
    password = secrets.token_urlsafe(12)
    headend(db, "web", "user", "add", "demo", "--role", "operator", "--password-stdin", stdin=password + "\n")
    say("dashboard", ".venv/bin/headend web --db %s --port 8080   then http://127.0.0.1:8080/ as demo / %s"
        % (os.path.relpath(db, ROOT), password))  # fmt: skip
    say("demo", "OK in %.0f s" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
