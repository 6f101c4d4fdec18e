"""A meter's privacy policy on the head-end (headend/meters/privacy.py) on both database engines:
COSE_Encrypt0 frames made by the independent `cwt` with the derived key are stored by ingest
(both paths), a privacy meter's COSE_Mac0 frames are refused as ``not_encrypted`` and never stored
(nor kept in quarantine), its commands are COSE_Encrypt0 that cwt opens, the console shows what it
cannot open as unverified, and `headend meter add --privacy` / `meter set` / `meter config` say it."""

from __future__ import annotations

import json

import cbor2
from cwt import COSE, COSEKey

from headend.cli import main
from headend.commands.queue import describe, queue
from headend.console.decode import decode
from headend.db.storage import Storage
from headend.ingest import verify
from headend.ingest.store import IngestBatch
from headend.meters import provision
from headend.meters.privacy import PrivacyKey
from protocol import cose_enc, messages, topics
from tests.headend.broker_support import cwt_frame, reading_map

TS = 1714521600
NOW = TS + 5.0


def cwt_key(key: bytes, kid: str) -> COSEKey:
    return COSEKey.from_symmetric_key(cose_enc.enc_key(key), alg="AES-CCM-16-64-128", kid=kid.encode())


def cwt_sealed(
    key: bytes, kid: str, msg: dict, direction: int = cose_enc.UP, iv_seq: int | None = None
) -> bytes:
    iv = cose_enc.iv(direction, msg[1] if iv_seq is None else iv_seq)
    return COSE.new().encode_and_encrypt(
        cbor2.dumps(msg), cwt_key(key, kid), protected={1: 10}, unprotected={4: kid.encode(), 5: iv}
    )


def _meters(store):
    p = provision.add_meter(store, "p1", privacy=True)
    m = provision.add_meter(store, "m1")
    assert p["privacy"] is True and m["privacy"] is False
    return bytes.fromhex(p["key"]), bytes.fromhex(m["key"])


def test_cwt_sealed_frames_are_stored_and_plain_ones_from_a_privacy_meter_refused(db_target):
    with Storage(db_target) as store:
        kp, km = _meters(store)
        keys = store.meter_keys()
        assert type(keys["p1"]) is PrivacyKey and keys["p1"] == kp and type(keys["m1"]) is bytes
        batch = IngestBatch()
        up = topics.up
        # through serve's path (take) and the reference (add): both store cwt's frames
        verify.take(batch, up("p1", "reading"), cwt_sealed(kp, "p1", reading_map(1, TS, 1000)), NOW, keys)
        verify.add(
            batch, up("p1", "reading"), cwt_sealed(kp, "p1", reading_map(2, TS + 900, 1100)), NOW, keys
        )
        ev = {0: 2, 1: 3, 2: TS + 901, 10: 2}
        assert verify.add(batch, up("p1", "event"), cwt_sealed(kp, "p1", ev), NOW, keys).kind == "event"
        ack = {0: 3, 1: 4, 2: TS + 902, 30: 1, 31: 0}
        assert verify.add(batch, up("p1", "ack"), cwt_sealed(kp, "p1", ack), NOW, keys).kind == "ack"
        # a non-privacy meter may encrypt too
        verify.take(batch, up("m1", "reading"), cwt_sealed(km, "m1", reading_map(1, TS, 5)), NOW, keys)
        # refused: COSE_Mac0 from the privacy meter (never stored), other key, other direction, seq != IV's
        plain = cwt_frame(kp, "p1", reading_map(5, TS + 1800, 1200))
        verify.take(batch, up("p1", "reading"), plain, NOW, keys)
        refused = [
            (cwt_sealed(km, "p1", reading_map(6, TS, 1)), "tag"),
            (cwt_sealed(kp, "p1", reading_map(7, TS, 1), direction=cose_enc.DOWN), "iv"),
            (cwt_sealed(kp, "p1", reading_map(8, TS, 1), iv_seq=9), "iv_seq"),
            (cwt_sealed(kp, "p2", reading_map(10, TS, 1)), "kid"),
        ]
        for frame, reason in refused:
            v = verify.verify(up("p1", "reading"), frame, keys)
            assert (v.kind, v.reason) == ("rejected", reason)
            verify.take(batch, up("p1", "reading"), frame, NOW, keys)
        store.commit_batch(batch)
        assert [r["seq"] for r in store.readings("p1")] == [1, 2]
        assert [r["seq"] for r in store.readings("m1")] == [1]
        c = store.counters()
        assert c["rejected:not_encrypted"] == 1 and c["rejected:tag"] == 1 and c["rejected:iv_seq"] == 1
        q = store.quarantined("not_encrypted")
        assert len(q) == 1 and not q[0]["payload"], "a plain frame of a privacy meter is not kept"
        # the policy switched off: the same plain frame is stored
        store.set_meter_privacy("p1", False)
        keys = store.meter_keys()
        batch = IngestBatch()
        verify.take(batch, up("p1", "reading"), plain, NOW, keys)
        store.commit_batch(batch)
        assert [r["seq"] for r in store.readings("p1")] == [1, 2, 5]


def test_commands_to_a_privacy_meter_are_encrypt0_that_cwt_opens(tmp_path):
    with Storage(str(tmp_path / "h.db")) as store:
        kp, km = _meters(store)
        row = queue(store, "p1", messages.CMD_READ_NOW, {}, NOW)
        frame = store.command(row["id"])["frame"]
        assert frame[:1] == b"\xd0"
        msg = cbor2.loads(COSE.new().decode(frame, cwt_key(kp, "p1")))
        assert msg[0] == 10 and msg[1] == row["seq"] and msg[20] == 5
        assert cbor2.loads(frame).value[1][5] == cose_enc.iv(cose_enc.DOWN, row["seq"])
        assert describe(store, row["id"])["name"] == row["name"]
        plain = store.command(queue(store, "m1", messages.CMD_READ_NOW, {}, NOW)["id"])["frame"]
        assert plain[:1] == b"\xd1"


def test_console_shows_encrypted_trusted_and_what_it_cannot_open_unverified():
    kp = bytes(range(32))
    keys = {"p1": PrivacyKey(kp)}
    row = decode(topics.up("p1", "reading"), cwt_sealed(kp, "p1", reading_map(7, TS, 12345)), keys, NOW)
    assert (row["kind"], row["auth"], row["trusted"], row["seq"]) == ("reading", "encrypted", True, 7)
    other = cwt_sealed(bytes(32), "p1", reading_map(8, TS, 1))
    row = decode(topics.up("p1", "reading"), other, keys, NOW)
    assert (row["auth"], row["trusted"], row["reason"]) == ("unverified", False, "tag")
    assert "12345" not in row["summary"]
    row = decode(topics.up("p1", "reading"), cwt_frame(kp, "p1", reading_map(9, TS, 4242)), keys, NOW)
    assert (row["auth"], row["trusted"], row["reason"]) == ("unverified", False, "not_encrypted")
    assert "4242" not in row["summary"] and "4.242" not in row["summary"]


def _cli(capsys, *argv):
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_add_set_list_and_config_say_privacy(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    rc, out, _ = _cli(capsys, "meter", "add", "p1", "--privacy", "--db", db)
    added = json.loads(out)
    assert rc == 0 and added["privacy"] is True
    pw = tmp_path / "pw"
    pw.write_text(added["mqtt_password"])
    out_dir = str(tmp_path / "f")
    rc, out, _ = _cli(
        capsys, "meter", "config", "p1", "--out", out_dir, "--password-file", str(pw), "--json", "--db", db
    )
    assert rc == 0 and json.loads(out)["privacy"] is True
    assert json.loads((tmp_path / "f" / "config.json").read_text())["privacy"] is True
    rc, out, _ = _cli(capsys, "meter", "set", "p1", "--privacy", "off", "--db", db)
    assert rc == 0 and json.loads(out) == {"meter_id": "p1", "privacy": False}
    rc, out, _ = _cli(capsys, "meter", "list", "--json", "--db", db)
    assert json.loads(out)[0]["privacy"] is False
    rc, out, err = _cli(capsys, "meter", "set", "nope", "--privacy", "on", "--db", db)
    assert rc != 0 and "unknown meter" in err


def test_bench_ingest_privacy_stores_every_sealed_reading_beside_the_plain_figure(tmp_path):
    """tools/bench_ingest.py --privacy at toy size: every meter private, its COSE_Encrypt0 readings
    all stored through Mosquitto and serve, the figures under ingest_privacy with the ratio to the
    plain run's."""
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    out = tmp_path / "results.json"
    cmd = [sys.executable, "tools/bench_ingest.py", "--meters", "4", "--per-meter", "25", "--publishers", "2"]
    cmd += ["--runs", "1", "--no-ceiling", "--out", str(out)]
    for extra in ([], ["--privacy"]):
        run = subprocess.run(cmd + extra, cwd=root, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    priv = data["ingest_privacy"]
    assert priv["lost"] == 0 and priv["runs"][0]["readings_stored"] == 100
    assert priv["ratio_to_plain"] == round(priv["readings_per_s"] / data["ingest"]["readings_per_s"], 3)
    assert "privacy:" in run.stdout and "of the plain figure" in run.stdout


def test_a_master_key_rotation_waits_for_meter_key_rotations(tmp_path):
    import pytest

    from headend.db import keystore
    from headend.meters import privacy

    with Storage(str(tmp_path / "h.db")) as store:
        provision.add_meter(store, "m1")
        privacy.rotate_key(store, "m1", NOW)
        with pytest.raises(keystore.MasterKeyError, match="rotation is in progress for m1"):
            store.rotate_master_key(keystore.MasterKey(bytes(range(32))))
        assert store.meter_keys()["m1"].next is not None  # nothing changed
