"""Secrets at rest (headend/db/keystore.py): meter keys and the head-end's broker password sealed
with the master key, where the master key comes from, a wrong or missing key as a clear error,
the migration of a database that holds clear keys, and `headend keys rotate-master`."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest
from sqlite_utils import Database

from headend.cli import main as headend_main
from headend.db import keystore
from headend.db.keystore import MasterKey, MasterKeyError
from headend.db.migrations import migrations
from headend.db.storage import Storage
from headend.meters import provision

KEY = "5ec2e7" + "0123456789abcdef" * 3 + "a1b2c3d4e5"  # 64 hex digits (upper case differs)
assert len(KEY) == 64


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def raw_files(db) -> bytes:
    """Every byte of the database and its -wal/-shm as they are on disk."""
    return b"".join(open(p, "rb").read() for p in (db, db + "-wal", db + "-shm") if os.path.exists(p))


def leaks(blob: bytes, key_hex: str) -> list[str]:
    forms = {"hex": key_hex.lower().encode(), "HEX": key_hex.upper().encode(), "raw": bytes.fromhex(key_hex)}
    return [name for name, form in forms.items() if form in blob]


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = headend_main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(autouse=True)
def _no_master_key_env(monkeypatch):
    monkeypatch.delenv(keystore.ENV_FILE, raising=False)
    monkeypatch.delenv(keystore.ENV_HEX, raising=False)


def test_keys_and_the_broker_password_are_sealed_and_come_back_in_clear(tmp_path):
    db = str(tmp_path / "h.db")
    with Storage(db) as s:
        s.add_meter("m1", KEY, "$7$x", now=0)
        password = provision.headend_password(s)
        assert s.meter("m1")["key"] == KEY and s.meters()[0]["key"] == KEY
        assert s.meter_keys() == {"m1": bytes.fromhex(KEY)}
        assert s.setting(provision.HEADEND_PASSWORD_SETTING) == password
        [(stored,)] = s.conn.execute("SELECT key FROM meters").fetchall()
        [(pw_stored,)] = s.conn.execute("SELECT value FROM settings").fetchall()
        kid = s.secrets.key().id
    assert stored.startswith("v1:%s:" % kid) and pw_stored.startswith("v1:%s:" % kid)
    assert KEY not in stored and password not in pw_stored
    blob = raw_files(db)
    assert leaks(blob, KEY) == [] and password.encode() not in blob
    with Storage(db) as s:  # another process: the same key from the default file
        assert s.meter_keys() == {"m1": bytes.fromhex(KEY)}


def test_a_sealed_value_is_bound_to_its_row(tmp_path):
    db = str(tmp_path / "h.db")
    with Storage(db) as s:
        s.add_meter("m1", KEY, "$7$x", now=0)
        s.add_meter("m2", "22" * 32, "$7$x", now=0)
        [(m1,)] = s.conn.execute("SELECT key FROM meters WHERE meter_id = 'm1'").fetchall()
        s.conn.execute("UPDATE meters SET key = ? WHERE meter_id = 'm2'", [m1])  # m1's key copied to m2
        s.conn.commit()
    with Storage(db) as s:
        assert s.meter("m1")["key"] == KEY
        with pytest.raises(keystore.KeystoreError, match="meter 'm2'.s key does not decrypt"):
            s.meter("m2")
        flipped = m1[:-6] + ("A" if m1[-6] != "A" else "B") + m1[-5:]
        s.conn.execute("UPDATE meters SET key = ? WHERE meter_id = 'm1'", [flipped])
        s.conn.commit()
    with Storage(db) as s, pytest.raises(keystore.KeystoreError, match="does not decrypt"):
        s.meter_keys()


def test_the_default_master_key_file_is_made_0600_once_and_never_overwritten(tmp_path):
    db = tmp_path / "headend.db"
    key_file = tmp_path / "headend.master-key"
    with Storage(db) as s:
        assert s.meters() == [] and not key_file.exists()  # reading needs no key: none is made
        s.add_meter("m1", KEY, "$7$x", now=0)
    assert mode(key_file) == 0o600 and mode(db) == 0o600
    text = key_file.read_text()
    assert len(text.strip()) == 64 and int(text, 16) >= 0
    kid = keystore.read_key_file(key_file).id
    assert keystore.create_key_file(key_file).id == kid  # a second maker gets the existing key
    with Storage(db) as s:
        s.add_meter("m2", "33" * 32, "$7$x", now=0)
    assert key_file.read_text() == text
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_master_key_sources_in_order(tmp_path, monkeypatch):
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    ka, kb = keystore.create_key_file(a), keystore.create_key_file(b)
    hex_c = os.urandom(32).hex()
    kc = MasterKey(bytes.fromhex(hex_c))
    db = tmp_path / "h.db"

    def kid(**kw):
        return keystore.Vault(db, **kw).source.load(create=True).id

    assert kid() == keystore.read_key_file(tmp_path / "h.master-key").id  # default beside the db
    monkeypatch.setenv(keystore.ENV_HEX, hex_c)
    assert kid() == kc.id
    monkeypatch.setenv(keystore.ENV_FILE, str(b))
    assert kid() == kb.id
    assert kid(master_key_file=str(a)) == ka.id
    monkeypatch.setenv(keystore.ENV_HEX, "not hex")
    monkeypatch.delenv(keystore.ENV_FILE)
    with pytest.raises(MasterKeyError, match="HEADEND_MASTER_KEY does not hold a master key"):
        kid()


def test_the_wrong_master_key_fails_clearly_naming_both_key_ids(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    rc, out, err = run(capsys, "--db", db, "meter", "add", "m1", "--key", KEY)
    assert rc == 0 and json.loads(out)["key"] == KEY  # still printed in clear, once
    right = keystore.read_key_file(tmp_path / "h.master-key")
    wrong = tmp_path / "wrong.key"
    other = keystore.create_key_file(wrong)
    with Storage(db, master_key_file=str(wrong)) as s:
        assert s.count_readings() == 0  # what needs no secret still works
        with pytest.raises(MasterKeyError) as e:
            s.meter_keys()
    text = str(e.value)
    assert "wrong master key" in text and right.id in text and other.id in text and str(wrong) in text
    for argv in (["meter", "list"], ["keys", "status"], ["command", "read-now", "m1"]):
        rc, out, err = run(capsys, "--db", db, "--master-key-file", str(wrong), *argv)
        assert rc == 1 and err.startswith("error: wrong master key"), (argv, err)
        assert "Traceback" not in err and KEY not in out + err
    with Storage(db, master_key_file=str(wrong)) as s, pytest.raises(MasterKeyError):
        s.add_meter("m2", "44" * 32, "$7$x")  # never a second key's values in one database
    os.rename(tmp_path / "h.master-key", tmp_path / "elsewhere.key")  # the key file is gone
    rc, out, err = run(capsys, "--db", db, "meter", "list")
    assert rc == 1 and "no master key" in err and "does not exist" in err and right.id in err, err
    assert not (tmp_path / "h.master-key").exists()  # a database with sealed secrets never gets a new key
    rc, out, err = run(
        capsys, "--db", db, "--master-key-file", str(tmp_path / "elsewhere.key"), "meter", "list"
    )
    assert rc == 0 and "m1" in out


def test_keys_are_opened_once_per_storage(tmp_path, monkeypatch):
    db = str(tmp_path / "h.db")
    with Storage(db) as s:
        for i in range(20):
            s.add_meter("m%d" % i, os.urandom(32).hex(), "$7$x", now=0)
    calls = []
    real = MasterKey.open
    monkeypatch.setattr(MasterKey, "open", lambda self, *a: calls.append(a[0]) or real(self, *a))
    with Storage(db) as s:
        first = s.meter_keys()
        assert s.meter_keys() == first and [s.meter("m3")["key"] for _ in range(5)]
        s.add_meter("m20", KEY, "$7$x")
        assert s.meter_keys()["m20"] == bytes.fromhex(KEY)
    # 20 keys + the check of the master key: each once, however often they are read
    assert len(calls) == 21 and len(set(calls)) == 20


def old_database(db: str, meters: dict[str, str], password: str) -> None:
    """A database as the head-end made it before m009: migrations up to m008, clear values."""
    conn = sqlite3.connect(db)
    d = Database(conn)
    d.enable_wal()
    migrations.apply(d, stop_before="m009_sealed_secrets")
    for meter_id, key_hex in meters.items():
        conn.execute(
            "INSERT INTO meters (meter_id, key, mqtt_password_hash, created_at, online)"
            " VALUES (?, ?, '$7$x', 0, 0)",
            (meter_id, key_hex),
        )
    conn.execute(
        "INSERT INTO settings (name, value) VALUES (?, ?)", (provision.HEADEND_PASSWORD_SETTING, password)
    )
    conn.commit()
    conn.close()


def test_migration_seals_the_clear_keys_of_an_older_database(tmp_path):
    db = str(tmp_path / "old.db")
    keys = {"m%d" % i: os.urandom(32).hex() for i in range(30)}
    keys["m7"] = KEY
    old_database(db, keys, "clear-broker-password")
    assert leaks(raw_files(db), KEY) == ["hex"]  # how it was: the key in clear in the file
    os.chmod(db, 0o644)  # and readable by anyone
    with Storage(db) as s:
        assert "m009_sealed_secrets" in [m.name for m in migrations.applied(s.db)]
        assert s.meter_keys() == {m: bytes.fromhex(k) for m, k in keys.items()}
        assert s.setting(provision.HEADEND_PASSWORD_SETTING) == "clear-broker-password"
        ids, clear = keystore.key_ids(s.conn)
        assert clear == 0 and ids == {s.secrets.key().id: 31}
        assert mode(db) == 0o600 and mode(db + "-wal") == 0o600 and mode(db + "-shm") == 0o600
        assert leaks(raw_files(db), KEY) == []  # checkpointed at once: nothing of it left on disk
        assert b"clear-broker-password" not in raw_files(db)
    assert mode(tmp_path / "old.master-key") == 0o600
    assert leaks(raw_files(db), KEY) == [] and b"clear-broker-password" not in raw_files(db)


def test_a_clear_value_written_behind_the_storage_layer_is_refused(tmp_path):
    db = str(tmp_path / "h.db")
    with Storage(db) as s:
        s.add_meter("m1", KEY, "$7$x", now=0)
        s.conn.execute("UPDATE meters SET key = ?", [KEY])
        s.conn.commit()
    with Storage(db) as s, pytest.raises(keystore.KeystoreError, match="stored in clear"):
        s.meter("m1")


def test_rotate_master_reseals_everything_and_the_old_key_no_longer_opens(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    keys = {"m%d" % i: os.urandom(32).hex() for i in range(5)}
    for m, k in keys.items():
        assert run(capsys, "--db", db, "meter", "add", m, "--key", k)[0] == 0
    with Storage(db) as s:
        password = provision.headend_password(s)
    current = tmp_path / "h.master-key"
    old_text = current.read_text()
    old = keystore.read_key_file(current)
    new_file = tmp_path / "new.key"

    rc, out, err = run(capsys, "--db", db, "keys", "rotate-master", "--new-key-file", str(new_file))
    assert rc == 0, err
    result = json.loads(out)
    new = keystore.read_key_file(new_file)
    assert (result["old_key_id"], result["new_key_id"], result["resealed"]) == (old.id, new.id, 6)
    assert mode(new_file) == 0o600 and current.read_text() == old_text  # the operator swaps
    assert str(new_file) in result["next"] and str(current) in result["next"]
    with Storage(db) as s, pytest.raises(MasterKeyError, match="wrong master key"):
        s.meter_keys()  # the old key no longer opens the database
    rc, out, err = run(capsys, "--db", db, "keys", "rotate-master", "--new-key-file", str(new_file))
    assert rc == 0 and json.loads(out)["resealed"] == 0  # run again (after a crash): nothing left to do

    os.replace(new_file, current)  # the swap
    with Storage(db) as s:
        assert s.meter_keys() == {m: bytes.fromhex(k) for m, k in keys.items()}
        assert s.setting(provision.HEADEND_PASSWORD_SETTING) == password
        assert keystore.key_ids(s.conn) == ({new.id: 6}, 0)
        for table, name, stored in keystore.secret_rows(s.conn):
            with pytest.raises(MasterKeyError):
                old.open(keystore.identity(table, name), stored, name)
    rc, out, err = run(capsys, "--db", db, "keys", "status", "--json")
    s = json.loads(out)
    assert rc == 0 and (s["master_key_id"], s["opened"], s["clear"]) == (new.id, 6, 0)
    for k in keys.values():
        assert leaks(raw_files(db), k) == []


def test_rotate_master_refuses_the_current_key_and_a_wrong_one(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    assert run(capsys, "--db", db, "meter", "add", "m1", "--key", KEY)[0] == 0
    current = str(tmp_path / "h.master-key")
    rc, out, err = run(capsys, "--db", db, "keys", "rotate-master", "--new-key-file", current)
    assert rc == 1 and "holds the current master key" in err
    wrong = str(tmp_path / "wrong.key")
    keystore.create_key_file(wrong)
    argv = ["--db", db, "--master-key-file", wrong, "keys", "rotate-master", "--new-key-file"]
    rc, out, err = run(capsys, *argv, str(tmp_path / "n.key"))
    assert rc == 1 and "wrong master key" in err
    with Storage(db) as s:
        assert s.meter("m1")["key"] == KEY  # untouched


def test_the_secret_settings_include_the_broker_password():
    assert provision.HEADEND_PASSWORD_SETTING in keystore.SECRET_SETTINGS
