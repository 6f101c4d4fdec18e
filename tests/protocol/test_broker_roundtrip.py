"""The protocol package through a real Mosquitto broker with paho-mqtt 2.

A meter-side client seals messages and publishes them QoS 1 on its up topics;
a head-end-side client subscribed to the head-end filter opens each frame with
the meter's key. A forged copy and a frame replayed under another meter's
topic are refused with the reason docs/protocol.md gives.
"""

import queue

import paho.mqtt.client as mqtt
import pytest

from protocol import messages, topics
from protocol.errors import COSEError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def client(port, client_id):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    return c


def test_sealed_messages_cross_a_real_broker(broker):
    received = queue.Queue()
    sub = client(broker.port, "headend-test")
    sub.on_message = lambda _c, _u, msg: received.put((msg.topic, msg.payload))
    sub.subscribe(topics.HEADEND_UP_FILTER, qos=1)
    # wait until the subscription is active: a retained status proves it
    pub = client(broker.port, "m-001")
    pub.publish(topics.up("m-001", "status"), topics.will_payload(), qos=1, retain=True).wait_for_publish(5)
    topic, payload = received.get(timeout=5)
    assert topics.parse(topic) == ("m-001", "up", "status")
    assert messages.parse_will(payload)["online"] == 0

    reading = messages.reading(
        1,
        1767225600,
        900,
        [120, 30, 400, 77],
        [0, 0, 0, 5],
        [10, 0, 0, 3],
        inst={"urms_mv": 230100},
        tariff=7,
    )
    frame = messages.seal(KEY, "m-001", reading)
    pub.publish(topics.up("m-001", "reading"), frame, qos=1).wait_for_publish(5)
    forged = bytearray(frame)
    forged[-1] ^= 1
    pub.publish(topics.up("m-001", "reading"), bytes(forged), qos=1).wait_for_publish(5)
    pub.publish(topics.up("m-002", "reading"), frame, qos=1).wait_for_publish(5)

    got = [received.get(timeout=5) for _ in range(3)]
    (t1, p1), (t2, p2), (t3, p3) = got
    meter_id, _, kind = topics.parse(t1)
    msg = messages.open_frame(KEY, meter_id, p1)
    assert kind == "reading" and msg["seq"] == 1 and msg["imp"] == [120, 30, 400, 77]
    assert msg["inst"] == {"urms_mv": 230100} and msg["tariff"] == 7 and msg["flags"] == 0
    with pytest.raises(COSEError) as forged_err:
        messages.open_frame(KEY, topics.parse(t2)[0], p2)
    assert forged_err.value.field == "tag"
    with pytest.raises(COSEError) as replay_err:
        messages.open_frame(OTHER_KEY, topics.parse(t3)[0], p3)
    assert replay_err.value.field == "kid"  # the kid check comes before the tag
    pub.disconnect()
    sub.disconnect()
