"""Head-end and meter together: `headend command` + `headend dispatch` + `headend serve` + a real Mosquitto
with per-meter passwords and ACL + the real firmware on the MicroPython unix port (tools/emulate.py).

A command sent to the emulated meter runs once and its ack is recorded; one queued while the meter is
away reaches it through its persistent session when it returns; one whose time runs out first expires
and is never sent.
"""

from __future__ import annotations

import threading

from headend.db.storage import Storage
from protocol import board_config as config
from tests.firmware.emulate_support import emulate, write_scenario
from tests.headend.broker_support import Serve, cli_json, start_broker, wait_for

START = 1710115200
METER = "emu-7"


def _flash_for(tmp_path, meter: dict):
    """A meter's flash as provisioning leaves it: config.json with its id and key, calibrated."""
    flash = tmp_path / "flash"
    flash.mkdir()
    sc = emulate.emulate_bench.Scenario({"start": START, "segments": [{"seconds": 60}]})
    cfg = emulate.emulate_bench.default_config(sc)
    cfg["meter_id"] = METER
    cfg["key"] = bytes.fromhex(meter["key"])
    cfg["broker"]["user"] = METER
    cfg["broker"]["password"] = meter["mqtt_password"]
    (flash / "config.json").write_text(config.to_json(cfg))
    return flash


def _online(db: str) -> bool:
    with Storage(db) as store:
        return (store.meter(METER) or {}).get("online") == 1


def _acks(db: str) -> list[tuple[int, int]]:
    with Storage(db) as store:
        return [(a["cmd_seq"], a["result"]) for a in store.acks(METER)]


def test_commands_reach_the_emulated_meter_once_or_wait_for_it_or_expire(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "h.db")
    meter = cli_json(capsys, "--db", db, "meter", "add", METER)
    broker, url = start_broker(capsys, db, str(broker_tmp / "broker"))
    serve = Serve(db, url)
    flash = _flash_for(tmp_path, meter)
    meter_url = "mqtt://%s:%s@127.0.0.1:%d" % (METER, meter["mqtt_password"], broker.port)
    load = {"urms": 230, "irms": 3}
    try:
        emulate.ensure_built()
        sc = write_scenario(tmp_path / "a.json", start=START, segments=[{"seconds": 7200, **load}])
        s = emulate.Session(str(sc), str(flash), broker=meter_url, speed=360)  # ~20 s of real time
        done: list = []
        t = threading.Thread(target=lambda: done.append(s.wait(120)))
        t.start()
        wait_for(lambda: _online(db), 30, "the meter's status (online)")
        relay = cli_json(capsys, "--db", db, "command", "relay", METER, "--open", "--json")
        dispatch = ["--db", db, "dispatch", "--broker", url, "--once", "--client-id", "headend.dispatch-test"]
        assert cli_json(capsys, *dispatch)["sent"] == 1
        wait_for(lambda: (relay["seq"], 0) in _acks(db), 30, "the meter's ack of the relay command")
        t.join()
        state, err, rc = done[0]
        assert rc == 0 and state["relay"] == "open", err

        # the meter is away: one command waits for it in the broker, one runs out of time unsent
        now_cmd = cli_json(capsys, "--db", db, "command", "read-now", METER, "--json")
        late = cli_json(capsys, "--db", db, "command", "relay", METER, "--close", "--ttl", "60", "--json")
        with Storage(db) as store:
            store.db.execute("UPDATE commands SET expires = 1 WHERE id = ?", [late["id"]])  # its ttl ran out
        r = cli_json(capsys, *dispatch)
        assert (r["sent"], r["expired"]) == (1, 1)

        sc2 = write_scenario(tmp_path / "b.json", start=START, segments=[{"seconds": 9000, **load}])
        state, err = emulate.run(str(sc2), str(flash), broker=meter_url, speed=600, linger=20)
        wait_for(lambda: (now_cmd["seq"], 0) in _acks(db), 30, "the read-now ack")
        cli_json(capsys, *dispatch)
        show = cli_json(capsys, "--db", db, "command", "show", str(now_cmd["id"]), "--json")
        assert show["state"] == "acked" and show["result_name"] == "done"
        show = cli_json(capsys, "--db", db, "command", "show", str(relay["id"]), "--json")
        assert show["state"] == "acked" and [a["result_name"] for a in show["acks"]] == ["done"], "ran once"
        show = cli_json(capsys, "--db", db, "command", "show", str(late["id"]), "--json")
        assert show["state"] == "expired"
        assert state["relay"] == "open" and (late["seq"], 0) not in _acks(db), "never sent, never run"
        with Storage(db) as store:
            readings = store.readings(METER)
        assert len(readings) >= 2 * 4 + 2, "the meter's readings were stored by headend serve"
        assert len({r["seq"] for r in readings}) == len(readings)
    finally:
        assert serve.terminate() == 0, "".join(serve.lines)
        broker.stop()
