"""tools/fleet_sim.py: three emulated meters (the real firmware on the unix port) for two days at full speed
against a Mosquitto the simulator runs, with `headend serve` storing what they send, through a tamper, a
6-hour broker outage, a power cut and a line/neutral bypass: every reading is stored once per (meter, seq),
one per 15-minute interval, and the faults show in what the head-end stored."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from headend.db.storage import Storage
from headend.meters import fleet as provision_fleet
from protocol import messages as M
from tests.headend.broker_support import Serve, wait_for
from tools import fleet_scenario, fleet_sim

START = 1710115200  # Monday 2024-03-11 00:00 UTC
H = 3600
DAYS = 2
FAULTS = {
    "faults": [
        {"kind": "tamper", "meter": 0, "at": 10, "hours": 1, "switch": "cover"},
        {"kind": "broker_outage", "at": 20, "hours": 6},
        {"kind": "power_cut", "meter": "m-0002", "at": 30},
        {"kind": "theft", "meter": 2, "at": 36, "hours": 2, "mode": "bypass", "share": 0.6},
    ]
}
ROOT = pathlib.Path(__file__).resolve().parents[2]
INTERVALS = list(range(START + 900, START + DAYS * 86400 + 1, 900))


def _stored(db: str) -> dict[str, tuple[list, list]]:
    with Storage(db) as store:
        return {m: (store.readings(m), store.events(m)) for m in ("m-0001", "m-0002", "m-0003")}


def test_fleet_with_outage_power_cut_tamper_and_theft_stores_every_reading_once(tmp_path, broker_tmp):
    db, out = str(tmp_path / "h.db"), broker_tmp / "fleet"  # run as root, the broker reads WORK/broker
    provision_fleet.provision_fleet(db, 3, str(out))
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps(FAULTS))
    with fleet_sim.FleetSim(db, str(out), DAYS, faults=str(faults), start=START, progress=0) as sim:
        serve = Serve(db, sim.headend_url)
        try:
            s = sim.run()
            wait_for(
                lambda: all(len(r) >= len(INTERVALS) for r, _e in _stored(db).values()), 30, "every reading"
            )
            time.sleep(0.5)  # anything late (a duplicate) would land now
        finally:
            assert serve.terminate() == 0, "".join(serve.lines)
        procs = [r.session.proc for r in sim.runs]
        broker = sim.broker
    assert broker.proc is None and all(p.poll() is not None for p in procs), "every process stopped"
    assert s["ok"] and s["delivered"] and s["unstored"] is None, s
    stored = _stored(db)
    by_id = {m["meter_id"]: m for m in s["meters"]}
    for meter_id, (readings, events) in stored.items():
        m = by_id[meter_id]
        assert (m["outbox_pending"], m["outbox_dropped"], m["bad_frames"]) == (0, 0, 0), m
        ts = [r["ts"] for r in readings]
        assert sorted(ts) == INTERVALS, meter_id + ": exactly one reading per 15-minute interval"
        assert len({r["seq"] for r in readings}) == len(readings) == m["readings_sent"] == len(INTERVALS)
        imp = [sum(r["imp"]) for r in sorted(readings, key=lambda r: r["seq"])]
        assert imp == sorted(imp) and imp[-1] > 0, "registers never decrease"
        late = [r for r in readings if START + 21 * H <= r["ts"] < START + 26 * H]
        assert late and all(r["flags"] & M.FLAG_BACKLOG for r in late), "made while the broker was down"
        assert [e["code"] for e in events].count(M.EVT_POWER_UP) == m["boots"]
        assert (m["broker_state"], m["delivery_exit"], m["delivery_error"]) == ("connected", 0, None), m

    assert [(f["fault"], f["ts"]) for f in s["faults"]] == [
        ("broker stopped", START + 20 * H),
        ("broker started", START + 26 * H),
        ("power cut", START + 30 * H),
    ]
    readings, events = stored["m-0001"]
    cover = [e for e in events if e["code"] == M.EVT_TAMPER_COVER]
    assert len(cover) == 1 and START + 10 * H <= cover[0]["ts"] <= START + 11 * H, "tamper event stored"
    assert all(r["flags"] & M.FLAG_TAMPER_LATCHED for r in readings if r["ts"] > START + 11 * H)
    assert not any(r["flags"] & M.FLAG_TAMPER_LATCHED for r in readings if r["ts"] < START + 10 * H)

    readings, events = stored["m-0002"]
    assert by_id["m-0002"]["power_cuts"] == [START + 30 * H] and by_id["m-0002"]["processes"] == 2
    assert by_id["m-0002"]["boots"] == 2 and [e["code"] for e in events].count(M.EVT_POWER_DOWN) == 1
    assert all(by_id[m]["boots"] == 1 for m in ("m-0001", "m-0003"))

    readings, _events = stored["m-0003"]
    for r in readings:
        i_l, i_n = r["inst"]["irms_ma"], r["inst"]["irms_n_ma"]
        if START + 36 * H < r["ts"] <= START + 38 * H:
            assert i_n > 2 * i_l, "bypass: the neutral carries the whole load, the line 40 %"
        else:
            assert abs(i_n - i_l) <= 0.05 * i_l + 50


def test_fault_script_errors_name_the_entry_and_field():
    meters = [{"meter_id": "m-0001", "frontend": "adc"}]
    cases = [
        ([{"kind": "flood", "at": 1}], "faults[0].kind"),
        ([{"kind": "power_cut", "at": 1}], "faults[0].meter: required"),
        ([{"kind": "power_cut", "at": 1, "meter": 3}], "faults[0].meter: index 3"),
        ([{"kind": "tamper", "at": 1, "hours": 1, "meter": 0, "switch": "lid"}], "faults[0].switch"),
        ([{"kind": "broker_outage", "at": 47, "hours": 6}], "faults[0].hours"),
        ([{"kind": "theft", "at": 1, "hours": 1, "meter": 0}], "needs the atm90e26 front end"),
        ([{"kind": "power_cut", "at": 1, "meter": 0, "why": "x"}], "faults[0].why: unknown key"),
    ]
    for script, msg in cases:
        try:
            fleet_scenario.parse_faults(script, meters, 48)
        except fleet_scenario.FaultError as e:
            assert msg in str(e), (msg, str(e))
        else:
            raise AssertionError("accepted: %r" % (script,))


def test_load_profile_is_seeded_daily_shaped_and_cut_at_fault_edges():
    faults = fleet_scenario.parse_faults(
        [{"kind": "tamper", "meter": 0, "at": 1.5, "hours": 0.5, "switch": "magnet"}],
        [{"meter_id": "m-0001", "frontend": "atm90e26"}],
        24,
    )
    segs = fleet_scenario.meter_segments(7, "m-0001", START, START + 86400, faults)
    assert sum(s["seconds"] for s in segs) == 86400
    assert [s.get("magnet", 0) for s in segs[:4]] == [0, 0, 1, 0] and segs[2]["seconds"] == 1800
    assert segs == fleet_scenario.meter_segments(7, "m-0001", START, START + 86400, faults), "seeded"
    hours = range(START // H, START // H + 24)
    assert [fleet_scenario.hourly_load(7, "m-0002", h) for h in hours] != [
        fleet_scenario.hourly_load(7, "m-0001", h) for h in hours
    ], "each meter has its own profile"
    day = [fleet_scenario.hourly_load(7, "m-0001", START // H + h)[1] for h in range(24 * 14)]
    night = sum(day[h] for h in range(len(day)) if h % 24 in (2, 3, 4))
    evening = sum(day[h] for h in range(len(day)) if h % 24 in (18, 19, 20))
    assert evening > 2.5 * night, "evening peak, night trough"


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tasks:
            try:
                kids = open("/proc/%d/task/%s/children" % (p, t)).read().split()
            except OSError:
                continue
            for k in map(int, kids):
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_cli_stops_every_process_on_sigterm_and_a_rerun_resumes_without_gaps(tmp_path, broker_tmp):
    db, out = str(tmp_path / "h.db"), broker_tmp / "fleet"
    provision_fleet.provision_fleet(db, 2, str(out), frontend="mixed", prepaid_share=0.5)
    cmd = [sys.executable, str(ROOT / "tools" / "fleet_sim.py"), "--db", db, "--meters", str(out)]
    slow = cmd + ["--days", "2", "--speed", "7200", "--serve", "--start", str(START)]
    slow += ["--opening-credit", "90000"]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(slow, stdout=pipe, stderr=pipe, text=True, start_new_session=True)
    flashes = [str(out / "sim" / "flash" / m) for m in ("m-0001", "m-0002")]

    def progressed() -> bool:  # both meters have saved a clock 4 h in: the SIGTERM comes mid-run
        clocks = [fleet_sim.persisted_clock(f) if os.path.isdir(f) else None for f in flashes]
        return all(c is not None and c >= START + 4 * H for c in clocks)

    try:
        # gated on the meters' own progress, not on a wall-clock guess: 2 days at 7200x take 24 s real,
        # so the SIGTERM lands ~20 emulated hours before the end however long starting up took
        wait_for(lambda: progressed() or proc.poll() is not None, 120, "both meters 4 h in")
        kids = _descendants(proc.pid)
        assert proc.poll() is None and len(kids) >= 4, "2 firmware processes, mosquitto, headend serve"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "every process started was stopped" in err
    assert not [k for k in kids if _alive(k)], "nothing left running"

    done = subprocess.run(cmd + ["--days", "0.25", "--serve", "--json", "--progress", "0"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    assert START + 4 * H <= s["start"] < START + 2 * 86400, "resumed from the persisted clock"
    assert s["ok"] and s["unstored"] == 0, "--serve waited until the head-end stored everything"
    with Storage(db) as store:
        counters = store.counters()
        for m in s["meters"]:
            ts = sorted(r["ts"] for r in store.readings(m["meter_id"]))
            assert ts == list(range(START + 900, ts[-1] + 1, 900)) and ts[-1] >= s["end"] - 900, m
            assert m["stored_readings"] == len(ts) and m["boots"] == 2, "one boot per run"
    assert not any(k.startswith("rejected") and v for k, v in counters.items()), counters
    prepaid = [m for m in s["meters"] if m["prepaid"]]
    assert len(prepaid) == 1 and prepaid[0]["relay"] == "closed" and prepaid[0]["imp_wh"] > 0


def test_a_meter_the_broker_refuses_is_named_in_the_summary_and_the_exit_status(tmp_path, broker_tmp):
    db, out = str(tmp_path / "h.db"), broker_tmp / "fleet"
    provision_fleet.provision_fleet(db, 2, str(out))
    path = out / "m-0002" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["broker"]["password"] = "WRONG"  # not the password the broker has for m-0002
    path.write_text(json.dumps(cfg))
    cmd = [sys.executable, str(ROOT / "tools" / "fleet_sim.py"), "--db", db, "--meters", str(out)]
    cmd += ["--days", "0.125", "--start", str(START), "--linger", "1", "--progress", "0", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    s = json.loads(done.stdout)
    assert s["ok"] and not s["delivered"], "both ran their scenario; one could not deliver"
    by_id = {m["meter_id"]: m for m in s["meters"]}
    good, bad = by_id["m-0001"], by_id["m-0002"]
    assert (good["broker_state"], good["outbox_pending"], good["delivery_exit"]) == ("connected", 0, 0), good
    assert good["seq"] >= 13, "12 readings and a power-up event made (and the status), all delivered"
    made = bad["seq"]
    assert made >= 13 and bad["outbox_pending"] == made and bad["messages"] == 0, bad
    assert bad["broker_state"] == "refused: not authorized (CONNACK 5)" and bad["delivery_exit"] == 3
    assert bad["delivery_error"] == (
        "the broker at 127.0.0.1:%d refused the meter (user m-0002): not authorized (CONNACK 5); "
        "%d messages left undelivered in the outbox" % (s["broker"]["port"], made)
    )
    assert "error: 1 meter(s) left messages undelivered: m-0002 (exit 3)" in done.stderr
    text = fleet_sim.summary_text(s).splitlines()
    [row] = [line for line in text if line.startswith("m-0002 ")]
    assert " refused " in row and "ERROR" not in row
    assert "m-0002: %s (exit 3)" % bad["delivery_error"] in text
    assert [line.split()[10] for line in text if line.startswith("m-0001 ")] == ["connected"]
