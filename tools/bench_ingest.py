"""Benchmark: sustained end-to-end ingest through Mosquitto into SQLite.

    .venv/bin/python tools/bench_ingest.py [--meters 1000] [--per-meter 100] [--publishers 4] [--workers 1]

Provisions METERS meters, starts Mosquitto from `headend broker-config` and
`headend serve` (WORKERS of them on the shared subscription when > 1), then
PUBLISHERS processes connect every meter (paho, MQTT 3.1.1, QoS 1, one
connection per meter as the ACL requires) and push PER_METER readings each,
sealed beforehand with protocol.messages.seal. The clock runs from the first
publish until the database holds every reading (nothing lost: count == sent).
Peak RSS of the head-end is VmHWM from /proc. Prints a table and merges the
figures into bench/results.json under "ingest".
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pathlib
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import paho.mqtt.client as mqtt  # noqa: E402

from headend import provision  # noqa: E402
from headend.storage import Storage  # noqa: E402
from protocol import messages, topics  # noqa: E402

T0 = 1_700_000_100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publisher(meters: list[dict], per_meter: int, port: int, ready, go, sent, pub_cpu) -> None:
    """One process: connect its meters, seal their frames, wait for go, publish all, wait for PUBACKs."""
    clients, frames = [], {}
    for m in meters:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=m["meter_id"])
        c.username_pw_set(m["meter_id"], m["mqtt_password"])
        c.max_inflight_messages_set(per_meter)
        c.connect("127.0.0.1", port, keepalive=600)
        clients.append(c)
        key = bytes.fromhex(m["key"])
        frames[m["meter_id"]] = [
            messages.seal(
                key,
                m["meter_id"],
                messages.reading(
                    seq,
                    T0 + 900 * seq,
                    900,
                    [seq * 100, seq * 10, seq, 0],
                    [0, 0, 0, 0],
                    [seq, 0, 0, 0],
                    inst={"urms_mv": 230000, "irms_ma": 1500, "p_w": 340},
                    flags=0,
                    tariff=1,
                ),
            )
            for seq in range(1, per_meter + 1)
        ]
    acked = [0]

    def on_publish(client, userdata, mid, reason_code, properties):
        acked[0] += 1

    by_sock = {}
    for c in clients:
        c.on_publish = on_publish
        by_sock[c.socket()] = c
    _pump(by_sock, lambda: all(c.is_connected() for c in clients), 30)
    ready.release()
    go.wait()
    cpu0 = time.process_time()
    for c in clients:
        topic = topics.up(c._client_id.decode(), "reading")
        for f in frames[c._client_id.decode()]:
            c.publish(topic, f, qos=1)
    total = len(clients) * per_meter
    _pump(by_sock, lambda: acked[0] >= total, 600)
    with sent.get_lock():
        sent.value += acked[0]
        pub_cpu.value += time.process_time() - cpu0
    for c in clients:
        c.disconnect()
        c.loop_write()


def _pump(by_sock: dict, done, timeout: float) -> None:
    """Drive many paho clients from one thread with select (no thread per client)."""
    deadline = time.monotonic() + timeout
    socks = list(by_sock)
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit("publisher timed out")
        writers = [s for s in socks if by_sock[s].want_write()]
        r, w, _ = select.select(socks, writers, [], 0.05)
        for s in r:
            by_sock[s].loop_read(100)
        for s in w:
            by_sock[s].loop_write()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children), from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def vmhwm_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meters", type=int, default=1000)
    p.add_argument("--per-meter", type=int, default=100)
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument(
        "--workers", type=int, default=1, help="headend serve processes (shared subscription if > 1)"
    )
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    args = p.parse_args(argv)
    from mosquitto_broker import find_mosquitto

    work = tempfile.mkdtemp(prefix="bench_ingest_")
    db = os.path.join(work, "headend.db")
    with Storage(db) as store:
        meters = [provision.add_meter(store, "bm%05d" % i) for i in range(args.meters)]
        port = free_port()
        cfg = provision.write_broker_config(store, os.path.join(work, "broker"), port)
    broker = subprocess.Popen(
        [find_mosquitto(), "-c", cfg["conf"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.3)
    serves = []
    for w in range(args.workers):
        extra = ["--shared", "--client-id", "bench-%d" % w] if args.workers > 1 else []
        serves.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "headend.cli",
                    "serve",
                    "--db",
                    db,
                    "--broker",
                    cfg["headend_url"],
                    "--batch",
                    str(args.batch),
                    *extra,
                ],
                cwd=ROOT,
                stderr=subprocess.DEVNULL,
            )
        )
    total = args.meters * args.per_meter
    ctx = mp.get_context("fork")
    ready, go, sent, pub_cpu = ctx.Semaphore(0), ctx.Event(), ctx.Value("q", 0), ctx.Value("d", 0.0)
    procs = [
        ctx.Process(
            target=publisher,
            args=(meters[i :: args.publishers], args.per_meter, port, ready, go, sent, pub_cpu),
        )
        for i in range(args.publishers)
    ]
    for pr in procs:
        pr.start()
    for _ in procs:
        ready.acquire()
    time.sleep(1.0)  # the head-end has subscribed long since; let the publishers' setup settle
    conn = sqlite3.connect(db, timeout=30)

    def stored() -> int:
        row = conn.execute("SELECT value FROM counters WHERE name = 'accepted:reading'").fetchone()
        return row[0] if row else 0

    cpu0 = {"broker": cpu_s(broker.pid), "headend": sum(cpu_s(x.pid) for x in serves), "publishers": 0.0}
    start = time.monotonic()
    go.set()
    samples = []
    while True:
        n = stored()
        now = time.monotonic()
        samples.append((now - start, n))
        if n >= total or now - start > 600:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - start
    cpu = {"broker": cpu_s(broker.pid), "headend": sum(cpu_s(x.pid) for x in serves)}
    for pr in procs:
        pr.join(60)
    cpu["publishers"] = pub_cpu.value
    rss = [vmhwm_kib(s.pid) for s in serves]
    count = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    for s in serves:
        s.send_signal(signal.SIGTERM)
        s.wait(30)
    broker.terminate()
    broker.wait(10)
    result = {
        "readings_sent": sent.value,
        "readings_stored": count,
        "lost": total - count,
        "seconds": round(elapsed, 2),
        "readings_per_s": round(count / elapsed),
        "headend_peak_rss_mib": round(max(rss) / 1024, 1),
        "meters": args.meters,
        "per_meter": args.per_meter,
        "publishers": args.publishers,
        "workers": args.workers,
        "batch": args.batch,
        "cpus": os.cpu_count(),
        "cpu_s": {k: round(cpu[k] - cpu0[k], 2) for k in cpu},
    }
    for k, v in result.items():
        print("%-22s %s" % (k, v))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {}
    data["ingest"] = result
    out.write_text(json.dumps(data, indent=2) + "\n")
    return 0 if count == total else 1


if __name__ == "__main__":
    sys.exit(main())
