"""A paho-mqtt subscriber on one meter's up topics: (topic, payload) in arrival order (backlog tests)."""

import threading
import time


class Listener:
    def __init__(self, host, port, meter_id, client_id="hil-listener"):
        import paho.mqtt.client as mqtt

        self.got = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="%s-%s" % (client_id, meter_id))
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a, **k: subscribed.set()
        self.c.connect(host, port)
        self.c.subscribe("ami/v1/%s/up/#" % meter_id, 1)
        self.c.loop_start()
        if not subscribed.wait(10):
            self.close()
            raise OSError("listener: no SUBACK from the broker at %s:%d" % (host, port))

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload)))

    def frames(self):
        with self.lock:
            return list(self.got)

    def wait(self, pred, timeout=30.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred(self.frames()):
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
