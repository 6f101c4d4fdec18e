"""Meter keys at rest, against a real Mosquitto and a real `headend serve` subprocess.

Whoever reads the head-end's files (the database, its -wal and -shm, a backup) must not find a
meter key there: with one they could forge that meter's readings and the commands it obeys.
The raw bytes of each file are searched for every meter's key (hex in lower and upper case, and
the 32 raw bytes) and the head-end's broker password: none is there. Every one of those files,
and the master key file, is mode 0600. A backup restores with the same master key, not without
it; `headend keys rotate-master` leaves serve verifying readings under the new key and the old
key opening nothing; serve with the wrong master key stops with a clear error."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from headend.db import keystore
from protocol import messages as M
from protocol import topics
from tests.headend.broker_support import ROOT, MeterClient, wait_for
from tests.security.support import counters

T0 = 1_700_000_100


def headend(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "headend.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def secrets_found(path, fleet) -> list[str]:
    """Which secret, in which form, the raw bytes of ``path`` hold."""
    blob = open(path, "rb").read()
    found = []
    for m, key in fleet["key"].items():
        for form, needle in (("hex", key.hex().encode()), ("HEX", key.hex().upper().encode()), ("raw", key)):
            if needle in blob:
                found.append("%s key (%s) in %s" % (m, form, os.path.basename(path)))
    if fleet["headend_user"][1].encode() in blob:
        found.append("broker password in %s" % os.path.basename(path))
    return found


def reading(key: bytes, meter_id: str, seq: int) -> bytes:
    return M.seal(key, meter_id, M.reading(seq, T0 + 900 * seq, 900, [seq, 0, 0, 0], [0] * 4, [0] * 4))


def send(fleet, meter_id: str, seqs) -> None:
    c = MeterClient(meter_id, fleet["password"][meter_id], fleet["port"])
    try:
        c.publish_all(
            [(topics.up(meter_id, "reading"), reading(fleet["key"][meter_id], meter_id, s)) for s in seqs]
        )
    finally:
        c.close()


def accepted(db) -> int:
    return counters(db).get("accepted:reading", 0)


def test_no_key_in_the_database_its_wal_or_a_backup_and_every_file_is_0600(fleet, tmp_path):
    db, key_file = fleet["db"], tmp_path / "headend.master-key"
    serve = fleet["serve"]()
    send(fleet, "A", (1, 2))
    send(fleet, "B", (1,))
    wait_for(lambda: accepted(db) == 3, 15, "3 readings verified and stored")
    files = [db, db + "-wal", db + "-shm"]
    assert all(os.path.exists(p) for p in files) and os.path.getsize(db + "-wal") > 0  # serve has it open
    backup = tmp_path / "backup.db"
    out = headend("--db", db, "backup", "--out", str(backup))
    assert out.returncode == 0, out.stderr
    kid = keystore.read_key_file(key_file).id
    assert json.loads(out.stdout)["master_key_id"] == kid
    for path in [*files, str(backup)]:
        assert secrets_found(path, fleet) == []
    for path in [*files, str(backup), str(key_file)]:
        assert mode(path) == 0o600, (path, oct(mode(path)))
    assert serve.terminate() == 0

    restored = str(tmp_path / "restored.db")
    out = headend("--db", restored, "restore", "--from", str(backup))  # no key beside it: refused
    assert out.returncode == 1 and "no master key" in out.stderr and kid in out.stderr, out.stderr
    assert not os.path.exists(restored)
    out = headend("--db", restored, "--master-key-file", str(key_file), "restore", "--from", str(backup))
    assert out.returncode == 0, out.stderr
    assert mode(restored) == 0o600 and secrets_found(restored, fleet) == []
    out = headend("--db", restored, "--master-key-file", str(key_file), "keys", "status", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["opened"] == 3, out.stderr  # 2 meters + password


def test_serve_after_rotate_master_and_with_the_wrong_key(fleet, tmp_path):
    db, key_file, new_file = fleet["db"], tmp_path / "headend.master-key", tmp_path / "rotated.key"
    serve = fleet["serve"]()
    send(fleet, "A", (1,))
    wait_for(lambda: accepted(db) == 1, 15, "the first reading")
    assert serve.terminate() == 0

    out = headend("--db", db, "keys", "rotate-master", "--new-key-file", str(new_file))
    assert out.returncode == 0, out.stderr
    old = keystore.read_key_file(key_file)
    assert json.loads(out.stdout)["new_key_id"] == keystore.read_key_file(new_file).id != old.id
    os.replace(key_file, tmp_path / "old.key")
    os.replace(new_file, key_file)

    serve = fleet["serve"]()  # the default key file, now the new key
    send(fleet, "A", (2,))
    send(fleet, "B", (1,))
    wait_for(lambda: accepted(db) == 3, 15, "readings verified with the re-sealed keys")
    assert serve.terminate() == 0
    assert counters(db).get("rejected:tag", 0) == 0 and counters(db).get("rejected:unknown_meter", 0) == 0

    argv = ["serve", "--db", db, "--broker", fleet["url"], "--master-key-file", str(tmp_path / "old.key")]
    out = subprocess.run(
        [sys.executable, "-m", "headend.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1 and out.stderr.startswith("error: wrong master key"), out.stderr
    assert old.id in out.stderr and "Traceback" not in out.stderr
