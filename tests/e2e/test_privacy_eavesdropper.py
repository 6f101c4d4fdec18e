"""End to end: a privacy meter (the real firmware, unchanged, on the frozen unix32 MicroPython via
tools/emulate.py) publishes to a real Mosquitto while a broker user subscribed to every meter topic
eavesdrops. The eavesdropper sees only COSE_Encrypt0 frames (and the unsigned will): no CBOR
reading map, no register value in clear. `cwt` opens every frame with the key derived from the
meter's key; the head-end's ingest stores them all; a COSE_Encrypt0 command sealed by the head-end
(headend/meters/privacy.py) runs and is acked, a COSE_Mac0 one is dropped by the meter."""

import threading
import time

import cbor2
import paho.mqtt.client as mqtt
from cwt import COSE, COSEKey

from headend.db.storage import Storage
from headend.ingest import verify
from headend.ingest.store import IngestBatch
from headend.meters import privacy, provision
from protocol import board_config, cose_enc, messages, topics
from tests.firmware.emulate_support import emulate, write_scenario
from tools.mosquitto_broker import MosquittoBroker

START = 1710115200
LOAD = {"urms": 230, "irms": 7, "phase_deg": 10}
METER_ID = "emu-0001"
KEY = bytes.fromhex(emulate.emulate_bench.KEY_HEX)


class Eavesdropper:
    """A broker user subscribed to every topic of every meter, keeping what it sees."""

    def __init__(self, port, on_first):
        self.got = []
        self.lock = threading.Lock()
        self.on_first = on_first
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="eavesdropper")
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("ami/v1/#", 1)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload)))
            first, self.on_first = self.on_first, None
        if first is not None:
            first(client)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_an_eavesdropping_broker_user_sees_no_reading_in_clear(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    sc = {"start": START, "segments": [{"seconds": 4 * 3600, **LOAD}]}
    bench = emulate.emulate_bench
    cfg = bench.default_config(bench.Scenario(sc))
    cfg["privacy"] = True
    bench._write_config(str(flash / "config.json"), board_config.to_json(cfg))
    path = write_scenario(tmp_path / "sc.json", **sc)
    with Storage(str(tmp_path / "h.db")) as store:
        provision.add_meter(store, METER_ID, KEY.hex(), privacy=True)
        meter = store.meter(METER_ID)
        sealed = privacy.seal_command(meter, messages.command(1, START, messages.CMD_READ_NOW, {}))
        plain = messages.seal(KEY, METER_ID, messages.command(2, START, messages.CMD_READ_NOW, {}))

        def send_commands(client):  # once the meter is online: one sealed, one plain command
            client.publish(topics.down_cmd(METER_ID), plain, qos=1)
            client.publish(topics.down_cmd(METER_ID), sealed, qos=1)

        emulate.ensure_built()
        with MosquittoBroker(tmp_path) as broker:
            spy = Eavesdropper(broker.port, send_commands)
            try:
                url = "mqtt://%s:x@127.0.0.1:%d" % (METER_ID, broker.port)
                state, err = emulate.run(str(path), str(flash), broker=url, speed=3600, linger=5)
                assert state is not None, err
                assert state["comms"]["pending"] == 0, state["comms"]  # the meter's final count
            finally:
                spy.close()
        up = [(t, p) for t, p in spy.got if "/up/" in t]
        assert len(up) >= 6
        k = COSEKey.from_symmetric_key(cose_enc.enc_key(KEY), alg="AES-CCM-16-64-128", kid=METER_ID.encode())
        opened = []
        for t, p in up:
            if p == cbor2.dumps({0: 4, 40: 0}):
                continue  # the unsigned will (status offline), as docs/protocol.md allows
            item = cbor2.loads(p)
            assert isinstance(item, cbor2.CBORTag) and item.tag == 16, (t, p[:16].hex())
            clear = COSE.new().decode(p, k)
            msg = cbor2.loads(clear)
            assert clear not in p, "the message map never travels in clear"
            if msg[0] == 1:
                for regs in (msg[4], msg[6]):
                    assert cbor2.dumps(regs) not in p, "no register list in clear"
            opened.append((t, p, msg))
        kinds = [m[0] for _t, _p, m in opened]
        assert kinds.count(1) >= 4 and 4 in kinds, kinds
        acks = [(m[30], m[31]) for _t, _p, m in opened if m[0] == 3]
        assert acks == [(1, 0)], "the sealed command ran, the plain one was dropped"
        # the head-end stores every frame the eavesdropper could not read
        batch = IngestBatch()
        keys = store.meter_keys()
        for t, p, _m in opened:
            verify.take(batch, t, p, time.time(), keys)
        assert not batch.quarantine, batch.quarantine
        store.commit_batch(batch)
        seqs = sorted({m[1] for _t, _p, m in opened if m[0] == 1})
        assert [r["seq"] for r in store.readings(METER_ID)] == seqs
