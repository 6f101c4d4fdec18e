"""Replayed commands on the meter: the real firmware on the unix port (tools/emulate.py), fed
the exact bytes of captured frames as MQTT deliveries (scenario ``frame_hex``).

- A top-up the head-end sealed for another meter (its kid, its key), replayed to this one:
  dropped as forged, never acknowledged, no credit. So is the same top-up re-addressed to
  this meter's kid but still under the other meter's key.
- This meter's own top-up frame captured and replayed: acknowledged "duplicate" while it is
  the newest command, "stale" once a newer one ran, also after a reboot; credited once.
"""

from __future__ import annotations

from protocol import cbor, cose
from tests.firmware.emulate_support import run
from tests.firmware.meter_messages import KEY, METER_ID, of_type, outbox_messages

START = 1710115200  # 2024-03-11 00:00 UTC
TARIFF = {"0": 5, "1": 0, "2": [1000], "3": [[[0, 1]]], "4": [[0, 0, 0, 0, 0, 0, 0]]}
LOAD = {"urms": 230, "irms": 10, "phase_deg": 0}
OTHER_ID, OTHER_KEY = "emu-0002", bytes(range(7, 39))


def frame(key: bytes, kid: str, seq: int, cmd: int, args: dict) -> str:
    msg = {0: 10, 1: seq, 2: START, 20: cmd, 21: args, 22: START + 86400}
    return cose.mac0_encode(key, kid.encode(), cbor.dumps(msg)).hex()


def acks(msgs):
    return [(a[30], a[31]) for a in of_type(msgs, 3)]


def topups(msgs):
    return [e[11] for e in of_type(msgs, 2) if e[10] == 10]


def test_a_command_for_another_meter_is_dropped_and_an_own_replay_runs_once(tmp_path):
    flash = tmp_path / "flash"
    for_b = frame(OTHER_KEY, OTHER_ID, 1, 1, {0: 9, 1: 70000})  # B's top-up, as B receives it
    readdressed = frame(OTHER_KEY, METER_ID, 1, 1, {0: 9, 1: 70000})  # re-labelled for A: B's key
    mine = frame(KEY, METER_ID, 1, 1, {0: 1, 1: 50000})  # A's own top-up, captured on the wire
    newer = frame(KEY, METER_ID, 2, 2, {0: 1, 1: 0})  # relay close
    cmds = [
        {"at": 300, "frame_hex": for_b},
        {"at": 400, "frame_hex": readdressed},
        {"at": 600, "frame_hex": mine},
        {"at": 700, "frame_hex": mine},  # replay while newest: duplicate
        {"at": 800, "frame_hex": newer},
        {"at": 900, "frame_hex": mine},  # replay after a newer one: stale
        {"at": 1000, "frame_hex": for_b},
    ]
    scenario = {"start": START, "segments": [{"seconds": 1800, **LOAD}], "tariff": TARIFF}
    st = run(tmp_path, "a", {**scenario, "prepaid": {"balance": 100000}, "commands": cmds}, flash=flash)
    assert st["comms"]["forged"] == 3, st["comms"]
    # after a reboot: the captured frames again
    st = run(
        tmp_path,
        "b",
        {
            "start": START,
            "segments": [{"seconds": 2400, **LOAD}],  # the meter's clock goes on from where it stopped
            "tariff": TARIFF,
            "prepaid": {"balance": 100000},
            "commands": [{"at": 1900, "frame_hex": mine}, {"at": 2000, "frame_hex": newer}],
        },
        flash=flash,
    )
    msgs = outbox_messages(flash)
    assert acks(msgs) == [(1, 0), (1, 1), (2, 0), (1, 2), (1, 2), (2, 1)], "no ack for another meter's frames"
    assert topups(msgs) == [{0: 1, 1: 50000}], "credited exactly once, never with B's top-up"
    assert st["cmd_hi"] == 2
    assert all(e[11][1] == 7 for e in of_type(msgs, 2) if e[10] == 19), "dropped as forged (reason 7)"
    assert any(e[10] == 19 for e in of_type(msgs, 2)), "the drops were reported"
