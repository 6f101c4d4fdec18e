"""A privacy meter (config.json ``privacy``: true) on the real firmware (tools/emulate.py, the frozen
unix32 runtime): every record it puts in its outbox is a COSE_Encrypt0 frame that the independent
``cwt`` opens with the key derived from the meter's key; it drops COSE_Mac0 commands (event 19,
reason 9), runs COSE_Encrypt0 ones, and rotates its key with set config key 4: the ack under the
old key, everything after under the new one, and config.json holds the new key."""

import json

import cbor2
from cwt import COSE, COSEKey

from firmware.outbox import Outbox
from protocol import board_config, cose_enc
from tests.firmware.emulate_support import emulate, run

START = 1710115200
LOAD = {"urms": 230, "irms": 10, "phase_deg": 0}
OLD_KEY = bytes.fromhex(emulate.emulate_bench.KEY_HEX)
NEW_KEY = bytes(range(100, 132))
METER_ID = "emu-0001"


def cwt_open(frame, key):
    k = COSEKey.from_symmetric_key(cose_enc.enc_key(key), alg="AES-CCM-16-64-128", kid=METER_ID.encode())
    return cbor2.loads(COSE.new().decode(frame, k))


def test_privacy_meter_seals_every_record_drops_mac0_commands_and_rotates_its_key(tmp_path):
    bench = emulate.emulate_bench
    scenario = {"start": START, "segments": [{"seconds": 1800, **LOAD}]}
    flash = tmp_path / "flash"
    flash.mkdir()
    cfg = bench.default_config(bench.Scenario(scenario))
    cfg["privacy"] = True
    (flash / "config.json").write_text(board_config.to_json(cfg))
    scenario["commands"] = [
        {"at": 300, "seq": 1, "cmd": 5, "args": {}},  # COSE_Mac0 to a privacy meter: dropped
        {"at": 400, "seq": 2, "cmd": 5, "args": {}, "sealed": True},  # read now
        {"at": 500, "seq": 3, "cmd": 6, "args": {"4": NEW_KEY.hex()}, "sealed": True},  # key rotation
        {"at": 600, "seq": 4, "cmd": 5, "args": {}, "sealed": True},  # under the old key: forged now
        {"at": 700, "seq": 5, "cmd": 5, "args": {}, "sealed": True, "key_hex": NEW_KEY.hex()},
    ]
    st = run(tmp_path, "p", scenario, flash=flash)
    assert json.loads((flash / "config.json").read_text())["key"] == NEW_KEY.hex(), "rotation is durable"
    assert st["comms"]["forged"] == 1, st["comms"]
    frames = list(Outbox(str(flash) + "/outbox").open().peek(0, 1 << 30))
    assert len(frames) >= 8
    msgs = []
    key = OLD_KEY
    for seq, kind, frame in frames:
        assert frame[0] == 0xD0, "COSE_Encrypt0 (tag 16), never COSE_Mac0"
        assert b"\xa1\x01\x05" not in frame[:8]
        msg = cwt_open(frame, key)
        assert msg[0] == kind and msg[1] == seq and cbor2.loads(frame).value[1][5] == cose_enc.iv(0, seq)
        msgs.append(msg)
        if kind == 3 and msg[30] == 3:
            assert msg[31] == 0, "the rotation is acked done, under the old key"
            key = NEW_KEY
    assert key == NEW_KEY
    acks = [(m[30], m[31]) for m in msgs if m[0] == 3]
    assert acks == [(2, 0), (3, 0), (5, 0)]
    rejected = [m for m in msgs if m[0] == 2 and m[10] == 19]
    assert rejected and rejected[0][11][1] == 9, "a COSE_Mac0 command is dropped as plain (reason 9)"
    readings = [m for m in msgs if m[0] == 1]
    assert len(readings) >= 4 and all(len(m[4]) == 4 for m in readings)


def test_a_plain_meter_takes_sealed_commands_but_never_a_key_in_clear(tmp_path):
    scenario = {"start": START, "segments": [{"seconds": 900, **LOAD}]}
    scenario["commands"] = [
        {"at": 100, "seq": 1, "cmd": 6, "args": {"0": 900, "4": NEW_KEY.hex()}},  # COSE_Mac0: ack 4
        {"at": 200, "seq": 2, "cmd": 5, "args": {}, "sealed": True},  # COSE_Encrypt0 on a plain meter
    ]
    st = run(tmp_path, "plain", scenario)
    flash = tmp_path / "plain-flash"
    assert json.loads((flash / "config.json").read_text())["key"] == OLD_KEY.hex()
    assert st["comms"]["forged"] == 0 and st["comms"]["malformed"] == 0
    k = COSEKey.from_symmetric_key(OLD_KEY, alg="HS256", kid=METER_ID.encode())
    msgs = []
    for _seq, _kind, frame in Outbox(str(flash) + "/outbox").open().peek(0, 1 << 30):
        assert frame[0] == 0xD1, "a plain meter's frames stay COSE_Mac0"
        msgs.append(cbor2.loads(COSE.new().decode(frame, k)))
    acks = [(m[30], m[31]) for m in msgs if m[0] == 3]
    assert acks == [(1, 4), (2, 0)]
