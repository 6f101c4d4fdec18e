"""Client identity at the broker: a meter's credentials cannot open any session but its own.

Mosquitto does not tie a client id to a username, and a login under a connected or
persistent client id takes that session over (a clean one discards it and its queue).
`headend broker-config` therefore gives the meters a listener of their own on which the
broker uses the username as the client id (``use_username_as_clientid``), and the head-end
a second listener that only the head-end user can log in to. Against a real Mosquitto from
`headend broker-config` and a real `headend serve`:

- with serve stopped, readings a meter published (acknowledged by the broker, so gone from
  the meter's outbox) survive that meter logging in under the head-end's client id, the
  current ``headend.ingest`` and the former ``headend-ingest``, with a clean session: serve
  comes back to its session and stores every one;
- meter A logging in under meter B's client id neither disconnects B nor discards B's
  session with a command queued in it;
- a meter's credentials do not log in on the head-end's listener, the head-end's not on the
  meters', anonymous on neither;
- a QoS 2 publish (docs/protocol.md uses QoS 1 only; the broker would hold it until PUBREL) gets
  the meter disconnected (``max_qos 1``).
"""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from headend.db.storage import Storage
from protocol import messages as M
from protocol import topics
from tests.headend.broker_support import MeterClient, wait_for

T0 = 1_700_000_100


def reading(key: bytes, meter_id: str, seq: int) -> bytes:
    return M.seal(key, meter_id, M.reading(seq, T0 + 900 * seq, 900, [seq, 0, 0, 0], [0] * 4, [0] * 4))


class Session:
    """One MQTT 3.1.1 connection that records what happens to it: CONNACKs (reason code,
    session present), disconnects, SUBACKs and the messages it receives."""

    def __init__(
        self, user: str | None, password: str | None, port: int, client_id: str, clean: bool
    ) -> None:
        self.client = c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean
        )
        if user is not None:
            c.username_pw_set(user, password)
        self.connacks: list[tuple] = []
        self.disconnects = 0
        self.subacks: list = []
        self.received: list[tuple[str, bytes]] = []
        self.answered = threading.Event()
        self.gone = threading.Event()

        def on_connect(client, userdata, flags, rc, props):
            self.connacks.append((rc, flags.session_present))
            self.answered.set()

        def on_disconnect(client, userdata, flags, rc, props):
            self.disconnects += 1
            self.gone.set()

        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.on_subscribe = lambda cl, u, mid, codes, p: self.subacks.append(codes)
        c.on_message = lambda cl, u, m: self.received.append((m.topic, m.payload))
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert self.answered.wait(10), "no CONNACK for %s" % client_id

    @property
    def accepted(self) -> bool:
        return not self.connacks[0][0].is_failure

    def subscribe(self, topic_filter: str) -> None:
        self.client.subscribe(topic_filter, qos=1)
        wait_for(lambda: self.subacks, 10, "SUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stored(db: str, meter_id: str) -> list[dict]:
    with Storage(db) as s:
        return s.readings(meter_id)


def login(user: str | None, password: str | None, port: int) -> bool:
    s = Session(user, password, port, "probe.%s" % user, clean=True)
    s.close()
    return s.accepted


def test_a_meter_under_the_head_ends_client_id_loses_no_reading_queued_for_it(fleet):
    ka, pa = fleet["key"]["A"], fleet["password"]["A"]
    serve = fleet["serve"]()  # its persistent session, subscribed to every meter's up topics
    assert serve.terminate() == 0
    a = MeterClient("A", pa, fleet["port"])
    frames = [reading(ka, "A", seq) for seq in range(1, 6)]
    a.publish_all([(topics.up("A", "reading"), f) for f in frames])  # PUBACKed: off the meter's outbox
    a.close()

    # the meter logs in under the head-end's client id, the current one and the former, with a
    # clean session: were it given that id, the head-end's session and its queue would be gone
    for client_id in ("headend.ingest", "headend-ingest"):
        takeover = Session("A", pa, fleet["port"], client_id, clean=True)
        takeover.subscribe(topics.meter_down_filter("A"))
        takeover.close()
        assert takeover.accepted, "the meter's own login works, under its own id"

    serve = fleet["serve"]()
    wait_for(lambda: len(stored(fleet["db"], "A")) == len(frames), 15, "every queued reading")
    assert any("session present: True" in line for line in serve.lines), "".join(serve.lines)
    assert serve.terminate() == 0
    with Storage(fleet["db"]) as s:
        assert [r["raw"] for r in s.readings("A")] == frames


def test_a_meter_under_another_meters_client_id_neither_kicks_it_nor_loses_its_commands(fleet):
    pa, pb = fleet["password"]["A"], fleet["password"]["B"]
    user, password = fleet["headend_user"]
    headend = MeterClient(user, password, fleet["headend_port"], client_id="headend.test-commands")
    b = Session("B", pb, fleet["port"], "B", clean=False)  # like the firmware: a persistent session
    b.subscribe(topics.meter_down_filter("B"))

    # B online: A logs in under B's client id; B stays connected and gets its command on that connection
    intruder = Session("A", pa, fleet["port"], "B", clean=True)
    intruder.close()
    assert intruder.accepted
    headend.publish_all([(topics.down_cmd("B"), b"one")])
    wait_for(lambda: b.received, 10, "B's command")
    assert b.received == [(topics.down_cmd("B"), b"one")] and b.disconnects == 0, "B was kicked off"
    b.close()

    # B offline, a command queued in its session: A's clean login under B's id does not discard it
    headend.publish_all([(topics.down_cmd("B"), b"two")])
    intruder = Session("A", pa, fleet["port"], "B", clean=True)
    intruder.close()
    assert intruder.accepted
    b = Session("B", pb, fleet["port"], "B", clean=False)
    wait_for(lambda: b.received, 10, "the command queued while B was away")
    assert b.connacks[0][1] is True, "B's session survived"
    assert b.received == [(topics.down_cmd("B"), b"two")]
    for c in (b, headend):
        c.close()


def test_each_listener_admits_only_its_own_users(fleet):
    pa = fleet["password"]["A"]
    user, password = fleet["headend_user"]
    assert login("A", pa, fleet["port"]) and login(user, password, fleet["headend_port"])
    assert not login("A", pa, fleet["headend_port"]), "a meter's password opened the head-end's listener"
    assert not login(user, password, fleet["port"]), "the head-end user is not a meter"
    assert not login(None, None, fleet["headend_port"]) and not login(None, None, fleet["port"])


def test_a_qos2_publish_disconnects_the_meter(fleet):
    ka, pa = fleet["key"]["A"], fleet["password"]["A"]
    s = Session("A", pa, fleet["port"], "A", clean=True)
    s.client.publish(topics.up("A", "reading"), reading(ka, "A", 1), qos=2)
    assert s.gone.wait(10), "the broker kept a QoS 2 publisher connected"
    s.close()
    a = MeterClient("A", pa, fleet["port"])  # QoS 1, as docs/protocol.md says, is fine
    a.publish_all([(topics.up("A", "reading"), reading(ka, "A", 2))])
    a.close()
