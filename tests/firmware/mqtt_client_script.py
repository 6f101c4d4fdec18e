"""Drive firmware/mqtt_client.py step by step for tests/firmware/test_mqtt_client_broker.py.

Usage (cwd = the project root, so ``firmware`` imports from source; under a MicroPython with the
firmware frozen in, as the tests' default runtime unix32 has it, the frozen client runs):
    micropython tests/firmware/mqtt_client_script.py CONFIG.json
    python tests/firmware/mqtt_client_script.py CONFIG.json     (same, on CPython)

The configuration comes in a file: the unix port dies ("uncaught NLR") on an
argv element longer than about 255 bytes. CONFIG.json: {"host", "port",
"client_id", "username", "password", "keepalive", "clean_session",
"max_packet", "will": [topic, payload hex] (optional), "steps": [[op, arg,
...], ...]}. Ops:
    connect [timeout_ms]                 -> session_present
    connect_forever base_ms cap_ms       -> session_present, failures
    loop                                 start client.loop() as a task
    subscribe topic qos                  -> granted
    publish topic payload_hex qos retain -> pid, inflight
    wait kind n timeout_ms               wait for n events of kind (message, puback, loop_end) -> count
    puback_all                           PUBACK every QoS 1 message received and not yet acked -> acked
    sleep ms / status / disconnect / close
    hang                                 print the step, then sleep until killed
    backoff base_ms cap_ms n             -> values, ceilings (no connection needed)
Prints one JSON object a line: {"step": op, ...} after each step, {"event":
"message"|"puback"|"loop_end"|"connect_failed", ...} as things happen; every line carries "t"
(ms since start). A step that raises prints {"step", "error" (class name),
"message", "code"} and the script exits with status 3.
"""

import os
import sys

sys.path.insert(0, os.getcwd())
if sys.implementation.name == "micropython":
    sys.path.insert(0, ".frozen")  # the client frozen into the runtime (unix32), else the source
else:
    sys.path.insert(1, os.getcwd() + "/tests/shims")

import binascii  # noqa: E402
import json  # noqa: E402

from firmware.compat import ticks_diff, ticks_ms  # noqa: E402
from firmware.mqtt_client import (  # noqa: E402
    Backoff,
    MQTTClient,
    asyncio,
    connect_forever,
    sleep_ms,
)

T0 = ticks_ms()
events = {"message": [], "puback": [], "loop_end": []}


def out(obj):
    obj["t"] = ticks_diff(ticks_ms(), T0)
    sys.stdout.write(json.dumps(obj) + "\n")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


def unhex(s):
    return binascii.unhexlify(s)


def make_client(cfg):
    client = MQTTClient(
        cfg.get("client_id", "test"),
        cfg.get("username"),
        cfg.get("password"),
        cfg.get("keepalive", 60),
        cfg.get("clean_session", True),
        cfg.get("max_packet", 16384),
    )

    def on_message(topic, payload, pid):
        msg = {"event": "message", "topic": topic, "payload": binascii.hexlify(payload).decode()}
        msg["pid"] = pid
        msg["dup"] = client.dup
        msg["retain"] = client.retain
        events["message"].append(msg)
        out(msg)

    def on_puback(pid):
        ev = {"event": "puback", "pid": pid, "inflight": client.inflight()}
        events["puback"].append(ev)
        out(ev)

    client.on_message = on_message
    client.on_puback = on_puback
    if cfg.get("will"):
        client.set_will(cfg["will"][0], unhex(cfg["will"][1]))
    return client


async def run_loop(client):
    ev = {"event": "loop_end", "error": None, "message": None}
    try:
        await client.loop()
    except Exception as e:
        ev["error"] = type(e).__name__
        ev["message"] = str(e)
    events["loop_end"].append(ev)
    out(ev)


async def step(client, cfg, op, args, acked):
    res = {"step": op}
    if op == "connect":
        timeout = args[0] if args else 10000
        res["session_present"] = await client.connect(cfg["host"], cfg["port"], timeout)
    elif op == "connect_forever":
        failures = []

        def on_error(e):
            failures.append(e)
            out({"event": "connect_failed", "error": type(e).__name__, "n": len(failures)})

        backoff = Backoff(args[0], args[1])
        res["session_present"] = await connect_forever(
            client, cfg["host"], cfg["port"], backoff, on_error=on_error
        )
        res["failures"] = len(failures)
        res["failure_kinds"] = [type(e).__name__ for e in failures[:3]]
    elif op == "loop":
        asyncio.create_task(run_loop(client))
        await sleep_ms(0)  # let it start reading
    elif op == "subscribe":
        res["granted"] = await client.subscribe(args[0], args[1])
    elif op == "publish":
        res["pid"] = await client.publish(args[0], unhex(args[1]), args[2], args[3])
        res["inflight"] = client.inflight()
    elif op == "wait":
        kind, n, timeout = args
        start = ticks_ms()
        while len(events[kind]) < n and ticks_diff(ticks_ms(), start) < timeout:
            await sleep_ms(10)
        res["count"] = len(events[kind])
    elif op == "puback_all":
        res["acked"] = []
        for msg in events["message"]:
            if msg["pid"] and msg["pid"] not in acked:
                await client.puback(msg["pid"])
                acked.append(msg["pid"])
                res["acked"].append(msg["pid"])
    elif op == "sleep":
        await sleep_ms(args[0])
    elif op == "status":
        res["connected"] = client.connected
        res["inflight"] = client.inflight()
        res["pings"] = client.pings
        res["error"] = None if client.error is None else str(client.error)
    elif op == "disconnect":
        await client.disconnect()
    elif op == "close":
        client.close()
    elif op == "hang":
        out(res)
        while True:
            await sleep_ms(1000)
    elif op == "backoff":
        b = Backoff(args[0], args[1])
        res["values"] = []
        res["ceilings"] = []
        for _ in range(args[2]):
            res["ceilings"].append(b.ceiling_ms)
            res["values"].append(b.next_ms())
    else:
        raise ValueError("unknown step %r" % op)
    out(res)


async def main(cfg):
    client = make_client(cfg)
    acked = []
    for s in cfg["steps"]:
        try:
            await step(client, cfg, s[0], s[1:], acked)
        except Exception as e:
            out(
                {"step": s[0], "error": type(e).__name__, "message": str(e), "code": getattr(e, "code", None)}
            )
            return 3
    await sleep_ms(50)  # let a loop task that just ended report it
    return 0


def load(path):
    with open(path) as f:
        return json.load(f)


sys.exit(asyncio.run(main(load(sys.argv[1]))))
