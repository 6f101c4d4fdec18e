"""`make demo`: the wire contract at work through a real Mosquitto broker.

Part 1: the real meter firmware (MicroPython unix port, ATM90E26 front end
emulated by tools/emulate_bench.py) meters a simulated day of a 500 W load
under a four-rate time-of-use tariff; its registers per rate are checked
against the tariff calendar. Part 2 (the firmware is not networked yet):
starts Mosquitto on a free loopback port; a meter seals a status message and
a day of 15-minute readings as COSE_Mac0 frames; a head-end subscriber
verifies every frame with the meter's key, decodes it and checks each rate
register against the calendar; a forged frame and a replay under another
meter's topic are refused. Prints what it sees and exits 0 when everything
checked out.
"""

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import paho.mqtt.client as mqtt  # noqa: E402

from protocol import messages, tariff_calendar, topics  # noqa: E402
from protocol.errors import ProtocolError  # noqa: E402
from tools.mosquitto_broker import MosquittoBroker  # noqa: E402

METER = "demo-meter-01"
KEY = bytes.fromhex("8d" * 32)
START = 1767196800  # 2026-01-01T00:00:00+08:00, local midnight of the tariff calendar
RATE_NAMES = {1: "T1 sharp", 2: "T2 peak", 3: "T3 flat", 4: "T4 valley"}
# a Chinese-style peak/valley day: valley 23-07, flat 07-10, peak 10-11, sharp 11-13,
# flat 13-18, peak 18-21, flat 21-23; every day of the week; UTC+8
TARIFF = tariff_calendar.validate_tariff(
    {
        0: 7,
        1: 0,
        2: [1200, 950, 620, 310],
        3: [[[0, 4], [420, 3], [600, 2], [660, 1], [780, 3], [1080, 2], [1260, 3], [1380, 4]]],
        4: [[0, 0, 0, 0, 0, 0, 0]],
        7: 480,
    }
)


def client(port, client_id):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    return c


def meter_day():
    """A day of readings: 500 W flat load, Wh counted per rate by the calendar."""
    imp = [0, 0, 0, 0]
    out = []
    for i in range(1, 97):
        ts = START + i * 900
        rate = tariff_calendar.rate_at(TARIFF, ts - 900)
        imp[rate - 1] += 125  # 500 W for 15 minutes
        out.append(messages.reading(i + 1, ts, 900, list(imp), [0, 0, 0, 0], [i * 10, 0, 0, 0], tariff=7))
    return out


def firmware_day(tmp):
    """Run the real firmware for a day of 500 W; True when every rate register is right."""
    scenario = {
        "frontend": "atm90e26",
        "start": START,
        "mains_hz": 50,
        "segments": [{"seconds": 86400, "urms": 230, "irms": 500 / 230, "phase_deg": 0}],
        "tariff": {str(k): v for k, v in TARIFF.items()},
    }
    path = os.path.join(tmp, "day.json")
    with open(path, "w") as f:
        json.dump(scenario, f)
    print("firmware    metering a simulated day of 500 W on micropython (ATM90E26 emulated) ...")
    sys.stdout.flush()
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "emulate.py"), "--scenario", path, "--flash",
         os.path.join(tmp, "flash"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    state = json.loads(out.stdout)
    expected = [0, 0, 0, 0]
    for minute in range(1440):
        expected[tariff_calendar.rate_at(TARIFF, START + minute * 60) - 1] += 500 / 60
    ok = True
    print("register    firmware Wh   calendar Wh   error")
    for rate in range(1, 5):
        got = state["imp_mwh"][rate - 1] / 1000
        err = (got - expected[rate - 1]) / expected[rate - 1] * 100
        ok = ok and abs(err) < 0.5
        print("%-11s %11.3f %13.1f %+7.3f %%" % (RATE_NAMES[rate], got, expected[rate - 1], err))
    print("firmware    relay %s, events %s, heap peak %s bytes" % (state["relay"], state["events"],
                                                                 state.get("heap_peak")))  # fmt: skip
    print()
    return ok


def main():
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        metered = firmware_day(tmp)
    with tempfile.TemporaryDirectory() as tmp, MosquittoBroker(tmp) as broker:
        print("broker      mosquitto listening on 127.0.0.1:%d" % broker.port)
        inbox = queue.Queue()
        headend = client(broker.port, "demo-headend")
        headend.on_message = lambda _c, _u, m: inbox.put((m.topic, m.payload))
        subscribed = threading.Event()
        headend.on_subscribe = lambda *_a: subscribed.set()
        headend.subscribe(topics.HEADEND_UP_FILTER, qos=1)
        if not subscribed.wait(10):
            raise SystemExit("demo: the head-end could not subscribe")
        meter = client(broker.port, METER)
        status = messages.status(1, START, "0.1.0", "unix", "atm90e26", 4, 7, 1)
        meter.publish(topics.up(METER, "status"), messages.seal(KEY, METER, status), qos=1, retain=True)
        readings = meter_day()
        for r in readings:
            meter.publish(topics.up(METER, "reading"), messages.seal(KEY, METER, r), qos=1)
        forged = bytearray(messages.seal(KEY, METER, readings[-1]))
        forged[-3] ^= 0x40
        meter.publish(topics.up(METER, "reading"), bytes(forged), qos=1)
        meter.publish(topics.up("someone-else", "reading"), messages.seal(KEY, METER, readings[0]), qos=1)
        print("meter       %s sent 1 status + %d signed readings + 2 bad frames" % (METER, len(readings)))

        accepted, rejected, last = 0, {}, None
        for _ in range(1 + len(readings) + 2):
            topic, payload = inbox.get(timeout=10)
            meter_id, _, kind = topics.parse(topic)
            try:
                msg = messages.open_frame(KEY, meter_id, payload)
            except ProtocolError as e:
                rejected[e.field] = rejected.get(e.field, 0) + 1
                continue
            if kind == "status":
                print(
                    "head-end    status: fw %s on %s, %s front end, %d rates"
                    % (msg["fw"], msg["board"], msg["metering"], msg["rates"])
                )
            else:
                accepted += 1
                last = msg
            if accepted and accepted % 24 == 0 and kind == "reading":
                print("head-end    verified %2d/96 readings (up to %s)" % (accepted, iso(msg["ts"])))
        meter.disconnect()
        headend.disconnect()

    expected = [0, 0, 0, 0]
    for k in range(96):
        expected[tariff_calendar.rate_at(TARIFF, START + k * 900) - 1] += 125
    print()
    print("register    Wh at %s   (calendar says)" % iso(last["ts"]))
    for rate in range(1, 5):
        mark = "ok" if last["imp"][rate - 1] == expected[rate - 1] else "MISMATCH"
        print(
            "%-11s %6d                     %6d  %s"
            % (RATE_NAMES[rate], last["imp"][rate - 1], expected[rate - 1], mark)
        )
    print()
    print(
        "accepted    %d readings; rejected %s"
        % (accepted, ", ".join("%d by %s check" % (n, f) for f, n in sorted(rejected.items())))
    )
    ok = metered and accepted == 96 and rejected == {"tag": 1, "kid": 1} and last["imp"] == expected
    print("demo        %s in %.1f s" % ("OK" if ok else "FAILED", time.monotonic() - t0))
    return 0 if ok else 1


def iso(ts):
    y, m, d = tariff_calendar.civil_from_days(ts // 86400)
    s = ts % 86400
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, s // 3600, s % 3600 // 60, s % 60)


if __name__ == "__main__":
    sys.exit(main())
