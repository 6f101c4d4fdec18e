"""A meter's key rotated end to end: `headend meter rotate-key` seals a set-config command carrying
the new key inside COSE_Encrypt0; the real firmware (tools/emulate.py, unix32) takes it, acks it
under the old key and seals everything after under the new one; ingest stores every frame of the
changeover (either key verifies while the rotation is in progress); `--finish` is refused until the
ack is stored, then makes the new key the meter's, after which the old key no longer verifies.
Nothing in the database holds the new key in clear."""

import json
import pathlib

import pytest

from firmware.outbox import Outbox
from headend.cli import main
from headend.commands.queue import describe
from headend.db.storage import Storage
from headend.errors import CommandError
from headend.ingest import verify
from headend.ingest.store import IngestBatch
from headend.meters import privacy, provision
from protocol import cose, topics
from tests.firmware.emulate_support import emulate, run

START = 1710115200
LOAD = {"urms": 230, "irms": 5, "phase_deg": 0}
METER_ID = "emu-0001"
OLD = bytes.fromhex(emulate.emulate_bench.KEY_HEX)
NEW = bytes(range(7, 39))
KINDS = {1: "reading", 2: "event", 3: "ack", 4: "status"}


def test_rotate_key_through_the_real_firmware_and_finish(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    with Storage(db) as store:
        provision.add_meter(store, METER_ID, OLD.hex())
        started = privacy.rotate_key(store, METER_ID, START, NEW.hex())
        assert started["seq"] == 1 and started["next_key"] == NEW.hex()
        c = store.command(started["command_id"])
        assert NEW.hex() not in c["args"] and c["frame"][:1] == b"\xd0"
        assert describe(store, c["id"])["args"]["key"] == "(new key)"
        with pytest.raises(CommandError, match="in progress"):
            privacy.rotate_key(store, METER_ID, START)
        with pytest.raises(CommandError, match="not acked"):
            privacy.finish_rotation(store, METER_ID)
        frame = c["frame"]
    sc = {
        "start": START,
        "segments": [{"seconds": 1800, **LOAD}],
        "commands": [
            {"at": 100, "frame_hex": frame.hex()},
            {"at": 200, "seq": 2, "cmd": 5, "args": {}, "sealed": True, "key_hex": NEW.hex()},
        ],
    }
    run(tmp_path, "m", sc)
    flash = tmp_path / "m-flash"
    assert json.loads((flash / "config.json").read_text())["key"] == NEW.hex()
    records = list(Outbox(str(flash) + "/outbox").open().peek(0, 1 << 30))
    with Storage(db) as store:
        keys = store.meter_keys()
        assert keys[METER_ID] == OLD and keys[METER_ID].next == NEW
        batch = IngestBatch()
        for _seq, kind, f in records:
            verify.add(batch, topics.up(METER_ID, KINDS[kind]), f, START + 1800.0, keys)
        assert not batch.quarantine, batch.quarantine
        store.commit_batch(batch)
        acks = [(n, a["result"]) for n in (1, 2) for a in store.command_acks(METER_ID, n)]
        assert acks == [(1, 0), (2, 0)]
        assert len(store.readings(METER_ID)) >= 2
    assert main(["meter", "rotate-key", METER_ID, "--finish", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out) == {"meter_id": METER_ID, "seq": 1, "rotated": True}
    with Storage(db) as store:
        keys = store.meter_keys()
        assert keys[METER_ID] == NEW and getattr(keys[METER_ID], "next", None) is None
        late = cose.mac0_encode(OLD, METER_ID, b"\xa0")
        assert verify.verify(topics.up(METER_ID, "event"), late, keys).reason == "tag"
    for path in pathlib.Path(tmp_path).glob("h.db*"):
        raw = path.read_bytes()
        assert NEW.hex().encode() not in raw and NEW.hex().upper().encode() not in raw and NEW not in raw
