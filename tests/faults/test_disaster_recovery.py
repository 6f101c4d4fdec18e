"""docs/disaster-recovery.md, followed step by step on a running system: three meters reporting
through Mosquitto into `headend serve`, a prepaid account on one of them. A backup is taken and
verified; the head-end goes on storing readings and queues a top-up; then the machine dies
(`headend serve` SIGKILLed, the database damaged) while the meters keep reporting. The restore
brings back the backup, the broker delivers what the meters sent meanwhile, and VEE estimates
exactly the readings that were stored only after the backup, with the energy totals exact (the
cumulative registers bound the hole). New commands get seqs above any the meters have taken.
"""

from __future__ import annotations

import json
import os
import time

from headend.db import keystore
from headend.db.storage import Storage
from protocol import topics
from tests.faults.support import Fleet, count, headend, rows, wait_for
from tests.headend.broker_support import cwt_frame, reading_map
from tests.headend.prepaid_support import add_prepaid

IV = 900
N = 60  # readings per meter in the test
LOST = range(41, 45)  # stored after the backup, before the disaster
BACKLOG = 16


def test_the_documented_disaster_recovery_procedure(tmp_path):
    fleet = Fleet(tmp_path, 3)
    try:
        run_procedure(fleet, tmp_path)
    finally:
        fleet.close()


def run_procedure(fleet: Fleet, tmp_path) -> None:
    live, backups = fleet.db, tmp_path / "backup"
    backups.mkdir()
    with Storage(live) as st:
        add_prepaid(st, "m00", "P1", key=fleet.key("m00"))
    now_slot = int(time.time()) // IV * IV
    ts = {k: now_slot - (N - k) * IV for k in range(1, N + 1)}
    register = {(m, k): 10_000 * (i + 1) + 37 * k + (k * k) % 11 for i, m in enumerate(fleet.ids) for k in ts}
    clients = {m: fleet.meter(m) for m in fleet.ids}

    def report(seqs) -> None:  # every meter sends these readings (flagged backlog: a day in seconds)
        for m, c in clients.items():
            for k in seqs:
                msg = reading_map(k, ts[k], register[m, k])
                msg[9] = BACKLOG
                c.publish(topics.up(m, "reading"), cwt_frame(fleet.key(m), m, msg))
        for c in clients.values():
            c.wait_acked(20)

    def ok(*argv) -> dict | list:
        out = headend("--db", live, *argv)
        assert out.returncode == 0, (argv, out.stderr)
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def topup_id(seq: int) -> int:
        [cmd] = [c for c in ok("commands", "list", "m00", "--json") if c["seq"] == seq]
        return cmd["args"]["0"]

    serve = fleet.serve()
    fleet.broker.save()  # the broker's autosave, which a long-running broker has done long ago
    report(range(1, 41))
    wait_for(lambda: count(live) == 3 * 40, 15, "the first readings")
    assert ok("topup", "m00", "5", "--payment-id", "PAY-1", "--json")["seq"] == 1

    # 1. Backup schedule: a backup while serve runs
    backup = backups / "headend-1.db"
    summary = ok("backup", "--out", str(backup))
    assert summary["integrity"] == "ok" and summary["counts"]["readings"] == 120

    # 2. Verify the backup: restore into a scratch path with the master key (kept apart from the
    # backups), look at it, delete it
    verify, master_key = tmp_path / "verify.db", str(tmp_path / "headend.master-key")
    assert summary["master_key_id"] == keystore.read_key_file(master_key).id
    out = headend("--db", str(verify), "restore", "--from", str(backup))
    assert out.returncode == 1 and "no master key" in out.stderr  # the backup alone opens nothing
    out = headend("--db", str(verify), "--master-key-file", master_key, "restore", "--from", str(backup))
    assert out.returncode == 0, out.stderr
    out = headend("--db", str(verify), "--master-key-file", master_key, "keys", "status", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["opened"] == 4, out.stderr  # 3 keys, 1 password
    out = headend("--db", str(verify), "stats", "--json")
    assert json.loads(out.stdout)["accepted_by_kind"]["reading"] == 120
    out = headend("--db", str(verify), "--master-key-file", master_key, "meter", "list", "--json")
    assert [m["meter_id"] for m in json.loads(out.stdout)] == fleet.ids
    verify.unlink()

    # the head-end goes on: readings and a top-up that only the lost database will have held
    report(LOST)
    wait_for(lambda: count(live) == 3 * 44, 15, "the readings after the backup")
    lost_topup = ok("topup", "m00", "7", "--payment-id", "PAY-2", "--json")
    assert (lost_topup["seq"], topup_id(lost_topup["seq"])) == (2, 2)  # the meter took both before the loss

    # the disaster: the machine dies mid-operation, the database and its WAL are damaged
    serve.kill()
    for path in (live, live + "-wal"):  # the disk returns garbage for both files
        with open(path, "r+b") as f:
            f.write(b"\xff" * os.path.getsize(path))
    assert headend("--db", live, "stats").returncode == 1
    report(range(45, N + 1))  # the meters go on reporting; the broker queues it for the head-end

    # 3.1 services stopped (serve is dead); the broker keeps running
    # 3.2 move the damaged database aside, with its companions
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(live + suffix):
            os.rename(live + suffix, live + ".damaged" + suffix)
    # 3.3 restore the newest verified backup
    restored = ok("restore", "--from", str(backup))
    assert restored["replaced"] is False and restored["command_seqs_advanced_by"] == 1000
    # 3.4 start serve with the same client id: the broker delivers what came meanwhile
    serve = fleet.serve()
    wait_for(lambda: count(live) == 3 * (N - len(LOST)), 30, "the readings sent while the head-end was down")
    assert serve.terminate() == 0
    kept = [k for k in ts if k not in LOST]
    for m in fleet.ids:
        assert [
            s for (s,) in rows(live, "SELECT seq FROM readings WHERE meter_id = ? ORDER BY seq", [m])
        ] == kept

    # 3.5 VEE: the hole is found, estimated, and the energy in it is exact
    vee = ok("vee", "run", "--json", "--now", str(int(time.time())))
    for m in fleet.ids:
        assert vee[m]["readings"] == len(kept)
        gap = rows(live, "SELECT ts, detail FROM vee_results WHERE meter_id = ? AND rule = 'gap'", [m])
        assert gap == [(ts[45], '"4 interval(s) missing since ts %d (seq 40)"' % ts[40])]
        est = rows(live, "SELECT interval_end FROM estimates WHERE meter_id = ? ORDER BY 1", [m])
        # the intervals ending at the lost readings, and the one ending at the first reading after
        # them (its start was a lost reading too)
        assert [e for (e,) in est] == [ts[k] for k in (*LOST, LOST[-1] + 1)]
        sql = "SELECT sum(wh_imp), count(*) FROM load_profile WHERE meter_id = ? AND interval_s = 900"
        [(wh, slots)] = rows(live, sql + " AND rate = 1", [m])
        assert (wh, slots) == (register[m, N] - register[m, 1], N - 1)  # every interval, energy exact

    # 3.6 the payment made in the lost window, not applied by the meter (the platform re-sends it):
    # its new top-up gets a seq and a top-up id above anything the meter has taken
    assert [t["payment_id"] for t in ok("topup", "list", "--json")] == ["PAY-1"]
    again = ok("topup", "m00", "7", "--payment-id", "PAY-2", "--json")
    assert again["duplicate"] is False and again["seq"] > 2 and topup_id(again["seq"]) > 2
