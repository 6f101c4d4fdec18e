"""Benchmark: sustained end-to-end ingest through Mosquitto into SQLite.

    .venv/bin/python tools/bench_ingest.py [--meters 1000] [--per-meter 100] [--publishers 4]
        [--workers 2] [--runs 3] [--window 50] [--privacy]

``--privacy``: every meter is registered with the privacy policy and its readings are
COSE_Encrypt0 frames (protocol.cose_enc, AES-CCM under the derived key): the figures go under
"ingest_privacy" beside the plain "ingest" (target: >= 80 % of its readings/s).

Each run provisions METERS meters, starts Mosquitto from `headend broker-config`
and `headend serve` (`--workers N`: N processes on the shared subscription),
then PUBLISHERS processes connect every meter (one MQTT 3.1.1 connection per
meter, its own user as the ACL requires) and push PER_METER readings each. The
load generator is not the system under test, so it is lean: raw sockets, frames
sealed with protocol.messages.seal and PUBLISH packets (QoS 1) encoded before
the clock starts, written pipelined with WINDOW unacknowledged per connection,
PUBACKs read with epoll. The clock runs from the first publish until the
database holds every reading (nothing lost: stored == sent == PUBACKed).
Peak RSS of the head-end is VmHWM from /proc (the largest process).

The broker's own ceiling, in the same run: a fresh broker from the same
`headend broker-config`, the same publishers and messages, and in the head-end's
place ``mosquitto_sub -q 1 -C N`` as the head-end user on the head-end listener
(a persistent session, like serve's), which only acknowledges; its clock runs
from the first publish until it has received all N. ``ratio_to_broker`` is the
median readings/s over the median ceiling (each run's own ratio is in its
row): the share of what the broker can deliver on this machine that the
head-end stores, less sensitive to other load than either figure. CPU per
message (``cpu_us_per_reading``) is each process's user + system time from
/proc over the messages, the figure to compare across loaded runs (``headend_system``:
the head-end's system share of it, mostly SQLite's WAL writes and page reads).
``read_by_layout``: [readings a known layout read, readings decoded] as serve's
workers say when they stop (headend.ingest.fast.row: nearly all, when it works).

Prints progress, then a table (each run, the median beside the target, the
ceiling and the ratio beside theirs, the machine and its load average: other
work on the machine skews the figure) and merges the figures into
bench/results.json under "ingest". Exits 0 unless a reading was lost: below
target is a finding, not a failure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pathlib
import re
import secrets
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headend.db.storage import Storage  # noqa: E402
from headend.meters import provision  # noqa: E402
from protocol import cbor, cose_enc, messages, topics  # noqa: E402
from tools.mosquitto_broker import MosquittoBroker, broker_tmpdir, free_ports  # noqa: E402

T0 = 1_700_000_100
TARGET = 10_000  # readings/s (issue 5)
RATIO_TARGET = 0.6  # readings/s over the broker's ceiling (issue 17)
RATIO_GOAL = 0.9
PG_TARGET_WORKERS = 2  # into PostgreSQL: >= TARGET with this many serve processes (issue 15)
CEILING_CLIENT_ID = "headend.ceiling"  # the head-end user's client ids carry a dot, like serve's


# ---------------------------------------------------------------- a lean MQTT 3.1.1 publisher


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, user: str, password: str) -> bytes:
    body = _str(b"MQTT") + bytes((4, 0xC2)) + struct.pack("!H", 600)  # 3.1.1, user+pass+clean, keepalive
    body += _str(client_id.encode()) + _str(user.encode()) + _str(password.encode())
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: bytes, pid: int, payload: bytes) -> bytes:
    body = _str(topic) + struct.pack("!H", pid) + payload
    return b"\x32" + _varint(len(body)) + body  # PUBLISH, QoS 1


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit("broker closed a publisher connection")
        data += chunk
    return data


def reading_message(seq: int) -> dict:
    """The benchmark's reading number ``seq`` (every meter sends the same ones)."""
    return messages.reading(
        seq,
        T0 + 900 * seq,
        900,
        [seq * 100, seq * 10, seq, 0],
        [0, 0, 0, 0],
        [seq, 0, 0, 0],
        inst={"urms_mv": 230000, "irms_ma": 1500, "p_w": 340},
        flags=0,
        tariff=1,
    )


def sealed_packets(m: dict, per_meter: int) -> list[bytes]:
    key, mid = bytes.fromhex(m["key"]), m["meter_id"]
    topic = topics.up(mid, "reading").encode()
    packets = []
    enc = cose_enc.Encrypt0(key, mid) if m.get("privacy") else None
    for seq in range(1, per_meter + 1):
        msg = reading_message(seq)
        if enc is not None:
            frame = enc.seal(cose_enc.UP, seq, cbor.dumps(msg))
        else:
            frame = messages.seal(key, mid, msg)
        packets.append(publish_packet(topic, (seq - 1) % 65535 + 1, frame))
    return packets


def publisher(meters: list[dict], per_meter: int, port: int, window: int, ready, go, out) -> None:
    """One process: connect its meters, encode their packets, wait for go, publish
    pipelined (WINDOW in flight per connection), count PUBACKs; report to out."""
    conns = []
    for m in meters:
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(connect_packet(m["meter_id"], m["meter_id"], m["mqtt_password"]))
        conns.append(s)
    for s, m in zip(conns, meters, strict=True):
        if _recv_exact(s, 4) != b"\x20\x02\x00\x00":
            raise SystemExit("broker refused meter %s" % m["meter_id"])
    packets = [sealed_packets(m, per_meter) for m in meters]
    ready.release()
    go.wait()
    cpu0 = time.process_time()
    sel = selectors.DefaultSelector()
    state = {}  # fileno -> [socket, packets, next index, acked, leftover bytes]
    for s, pk in zip(conns, packets, strict=True):
        first = min(window, len(pk))
        s.sendall(b"".join(pk[:first]))
        state[s.fileno()] = [s, pk, first, 0, b""]
        sel.register(s, selectors.EVENT_READ)
    acked, total, open_ = 0, per_meter * len(conns), len(conns)
    while open_:
        for key, _ in sel.select(30):
            st = state[key.fd]
            data = st[4] + st[0].recv(65536)
            if len(data) == len(st[4]):
                raise SystemExit("broker closed a publisher connection")
            n, st[4] = len(data) // 4, data[len(data) - len(data) % 4 :]
            st[3] += n
            acked += n
            nxt = min(st[2] + n, len(st[1]))
            if nxt > st[2]:
                st[0].sendall(b"".join(st[1][st[2] : nxt]))
                st[2] = nxt
            if st[3] >= len(st[1]):
                sel.unregister(st[0])
                open_ -= 1
    out.put((acked, time.process_time() - cpu0))
    assert acked == total
    for s in conns:
        s.sendall(b"\xe0\x00")  # DISCONNECT
        s.close()


# ---------------------------------------------------------------- measuring processes


def cpu_s(pid: int, system_only: bool = False) -> float:
    """User + system (or only system) CPU seconds of a process, from /proc (0 once it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[12 if system_only else 11 : 13]) / os.sysconf("SC_CLK_TCK")


def vmhwm_kib(pid: int) -> int:
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out waiting for " + what)
        time.sleep(0.05)


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "%d CPUs, %s" % (os.cpu_count(), model)


# ---------------------------------------------------------------- one run


def start_publishers(args, meters: list[dict], port: int):
    """The publisher processes, connected and with their packets sealed: (procs, go, out)."""
    ctx = mp.get_context("fork")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=publisher,
            args=(meters[i :: args.publishers], args.per_meter, port, args.window, ready, go, out),
        )
        for i in range(args.publishers)
    ]
    for pr in procs:
        pr.start()
    for _ in procs:
        ready.acquire()
    return procs, go, out


def collect_publishers(procs, out) -> tuple[int, float]:
    """(messages PUBACKed to the publishers, their CPU seconds) once they are done."""
    acked, pub_cpu = 0, 0.0
    for _ in procs:
        a, c = out.get(timeout=60)
        acked, pub_cpu = acked + a, pub_cpu + c
    for pr in procs:
        pr.join(30)
    return acked, pub_cpu


def start_broker(work: str, name: str, db: str) -> tuple[MosquittoBroker, dict]:
    """A broker from `headend broker-config` over the run's database, on fresh ports."""
    with Storage(db) as store:
        port, headend_port = free_ports(2)
        cfg = provision.write_broker_config(store, os.path.join(work, name), port, headend_port=headend_port)
    return MosquittoBroker.from_conf(cfg["conf"], port).start(), cfg


def per_message_us(cpu_s_: float, n: int) -> float:
    return round(cpu_s_ * 1e6 / n, 1) if n else 0.0


class Database:
    """The run's database: a SQLite file in the run's directory, or with ``--postgresql URL`` a
    schema ``openami_bench_<hex>`` created in that PostgreSQL database for the run (connections
    named by it: ``application_name``) and dropped after (a schema, not a database: DROP DATABASE
    waits for a checkpoint); its master key in a file of the run, passed to `headend serve` by
    $HEADEND_MASTER_KEY_FILE."""

    def __init__(self, args, work: str) -> None:
        self.server, self.name = args.postgresql, None
        if self.server is None:
            self.target = os.path.join(work, "headend.db")
            return
        import psycopg

        self.name = "openami_bench_%s" % secrets.token_hex(6)
        with psycopg.connect(self.server, autocommit=True) as c:
            c.execute('CREATE SCHEMA "%s"' % self.name)
        options = urllib.parse.quote("-csearch_path=%s" % self.name)
        self.target = "%s%soptions=%s&application_name=%s" % (
            self.server,
            "&" if "?" in self.server else "?",
            options,
            self.name,
        )
        key_file = os.path.join(work, "pg.master-key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.environ["HEADEND_MASTER_KEY_FILE"] = key_file

    def connect(self):
        if self.server is None:
            return sqlite3.connect(self.target, timeout=30)
        import psycopg

        return psycopg.connect(self.target, autocommit=True)

    def backends(self, conn) -> list[int]:
        """PostgreSQL: the pids of the server processes serving the run's connections but ``conn``
        (their CPU is the database's share); SQLite: none (it runs inside `headend serve`)."""
        if self.server is None:
            return []
        q = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()"
        return [r[0] for r in conn.execute(q, (self.name,))]

    def drop(self) -> None:
        if self.name is not None:
            import psycopg

            with psycopg.connect(self.server, autocommit=True) as c:
                c.execute('DROP SCHEMA IF EXISTS "%s" CASCADE' % self.name)


def measure(args, run: int) -> dict:
    """One run: provision the meters, the head-end's figures, then the broker's ceiling."""
    work = broker_tmpdir(prefix="bench_ingest_")  # run as root, the broker (user mosquitto) reads in here
    db = None
    try:
        db = Database(args, work)
        with Storage(db.target) as store:
            meters = [
                provision.add_meter(store, "bm%05d" % i, privacy=args.privacy) for i in range(args.meters)
            ]
        result = run_once(args, run, work, meters, db)
        if not args.no_ceiling:
            result["ceiling"] = ceiling_once(args, run, work, meters, db.target)
            result["broker_ceiling_per_s"] = result["ceiling"]["msgs_per_s"]
            result["ratio_to_broker"] = round(result["readings_per_s"] / result["broker_ceiling_per_s"], 3)
        return result
    finally:
        if db is not None and not args.keep:
            db.drop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run_once(args, run: int, work: str, meters: list[dict], database: Database) -> dict:
    """The head-end's figures: publishers -> broker -> `headend serve` -> SQLite or PostgreSQL."""
    db = database.target
    broker, cfg = start_broker(work, "broker", db)
    serve_log = os.path.join(work, "serve.log")
    logf = open(serve_log, "w")
    procs, serve = [], None
    try:
        cmd = [sys.executable] + (
            ["-m", "cProfile", "-o", "%s.%d" % (args.profile, run)] if args.profile else []
        )
        cmd += ["-m", "headend.cli", "serve", "--db", db, "--broker", cfg["headend_url"]]
        cmd += ["--batch", str(args.batch), "--workers", str(args.workers), "--mqtt", args.mqtt]
        serve = subprocess.Popen(cmd, cwd=ROOT, stderr=logf)
        wait_for(
            lambda: open(serve_log).read().count("subscribed") >= args.workers,
            15,
            "headend serve to subscribe",
        )
        serve_pids = [serve.pid] + children(serve.pid)
        total = args.meters * args.per_meter
        procs, go, out = start_publishers(args, meters, cfg["meter_port"])
        conn = database.connect()

        def stored() -> int:
            row = conn.execute("SELECT value FROM counters WHERE name = 'accepted:reading'").fetchone()
            return row[0] if row else 0

        load0 = os.getloadavg()
        pg_pids = database.backends(conn)  # serve's connections are open once it has subscribed

        def cpu_now() -> dict:
            cpu = {"broker": cpu_s(broker.proc.pid), "headend": sum(cpu_s(p) for p in serve_pids)}
            cpu["headend_system"] = sum(cpu_s(p, system_only=True) for p in serve_pids)  # of headend
            if database.server is not None:
                cpu["postgresql"] = sum(cpu_s(p) for p in pg_pids)
            return cpu

        cpu0 = cpu_now()
        start = time.monotonic()
        go.set()
        last = start
        while True:
            n, now = stored(), time.monotonic()
            if n >= total or now - start > args.timeout:
                break
            if now - last >= 1.0:
                print(
                    "  run %d: %6.1f s  %8d / %d stored  (%.0f/s so far)"
                    % (run, now - start, n, total, n / (now - start)),
                    file=sys.stderr,
                    flush=True,
                )
                last = now
            time.sleep(0.05)
        elapsed = time.monotonic() - start
        cpu = cpu_now()
        acked, pub_cpu = collect_publishers(procs, out)
        rss = max(vmhwm_kib(p) for p in serve_pids)
        count = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        conn.close()
        used = {k: cpu[k] - cpu0[k] for k in cpu}
        result = {
            "readings_sent": acked,
            "readings_stored": count,
            "lost": total - count,
            "seconds": round(elapsed, 2),
            "readings_per_s": round(count / elapsed),
            "headend_peak_rss_mib": round(rss / 1024, 1),
            "cpu_s": {k: round(v, 2) for k, v in used.items()} | {"publishers": round(pub_cpu, 2)},
            "cpu_us_per_reading": {k: per_message_us(v, count) for k, v in used.items()},
            "loadavg_1m_before": round(load0[0], 2),
        }
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.kill()
        if serve is not None and serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
        broker.stop()
        logf.close()
    result["read_by_layout"] = layout_counts(serve_log)
    return result


def layout_counts(serve_log: str) -> list[int] | None:
    """[readings read by a known layout, readings decoded] of serve's workers, from their
    "stopped:" lines (headend.ingest.fast.row); None if none said."""
    found = [re.search(r"read by a known layout: (\d+) of (\d+)", line) for line in open(serve_log)]
    found = [m for m in found if m]
    return [sum(int(m[1]) for m in found), sum(int(m[2]) for m in found)] if found else None


def ceiling_once(args, run: int, work: str, meters: list[dict], db: str) -> dict:
    """The broker's ceiling: the same publishers and messages, `mosquitto_sub -q 1 -C N`
    (head-end user, head-end listener, persistent session) in the head-end's place."""
    broker, cfg = start_broker(work, "ceiling", db)
    total = args.meters * args.per_meter
    # the password goes in mosquitto_sub's options file ($XDG_CONFIG_HOME/mosquitto_sub), not argv
    conf_home = os.path.join(work, "ceiling-conf")
    os.makedirs(conf_home, mode=0o700)
    with open(cfg["headend_password_file"]) as f:
        password = f.readline().rstrip("\n")
    with open(os.path.join(conf_home, "mosquitto_sub"), "w") as f:
        f.write("-u %s\n-P %s\n" % (provision.HEADEND_USER, password))
    env = dict(os.environ, XDG_CONFIG_HOME=conf_home)
    sub_cmd = [
        shutil.which("mosquitto_sub") or "mosquitto_sub",
        "-h",
        "127.0.0.1",
        "-p",
        str(cfg["headend_port"]),
    ]
    sub_cmd += ["-i", CEILING_CLIENT_ID, "-c", "-q", "1", "-t", topics.HEADEND_UP_FILTER]
    procs, sub = [], None
    try:
        # the persistent session and its subscription first (-E: exit on SUBACK), so that
        # nothing published from here on is missed whenever the counting client connects
        subprocess.run(sub_cmd + ["-E"], env=env, check=True, timeout=30, stdout=subprocess.DEVNULL)
        sub = subprocess.Popen(
            sub_cmd + ["-C", str(total), "-F", "%l"],  # prints only each payload's length
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for(
            lambda: open(broker.log).read().count("as %s " % CEILING_CLIENT_ID) >= 2,
            15,
            "mosquitto_sub to connect",
        )
        procs, go, out = start_publishers(args, meters, cfg["meter_port"])
        load0 = os.getloadavg()
        cpu0 = {"broker": cpu_s(broker.proc.pid), "subscriber": cpu_s(sub.pid)}
        start = time.monotonic()
        go.set()
        cpu, timed_out = cpu0, False
        while sub.poll() is None:  # it exits after the N-th message; read /proc before it goes
            cpu = {"broker": cpu_s(broker.proc.pid), "subscriber": cpu_s(sub.pid)}
            if time.monotonic() - start > args.timeout:
                timed_out = True
                break
            time.sleep(0.005)
        elapsed = time.monotonic() - start
        acked, pub_cpu = collect_publishers(procs, out)
        if timed_out or sub.returncode != 0:
            raise SystemExit(
                "bench: mosquitto_sub failed: %s" % (sub.stderr.read().decode() if sub.stderr else "")
            )
        used = {k: cpu[k] - cpu0[k] for k in cpu}
        return {
            "messages": acked,
            "seconds": round(elapsed, 2),
            "msgs_per_s": round(total / elapsed),
            "cpu_s": {k: round(v, 2) for k, v in used.items()} | {"publishers": round(pub_cpu, 2)},
            "cpu_us_per_msg": {k: per_message_us(v, total) for k, v in used.items()},
            "loadavg_1m_before": round(load0[0], 2),
        }
    finally:
        for pr in procs:
            if pr.is_alive():
                pr.kill()
        if sub is not None and sub.poll() is None:
            sub.kill()
            sub.wait()
        broker.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meters", type=int, default=1000)
    p.add_argument("--per-meter", type=int, default=100)
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument(
        "--workers", type=int, default=2, help="headend serve --workers N (default 2: one per core here)"
    )
    p.add_argument("--mqtt", choices=("3.1.1", "5"), default="3.1.1", help="headend serve --mqtt")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--window", type=int, default=50, help="unacknowledged PUBLISHes per meter connection")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600, help="s per run")
    p.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    p.add_argument("--keep", action="store_true", help="keep each run's database and broker files")
    p.add_argument(
        "--postgresql",
        metavar="URL",
        help="ingest into PostgreSQL: a schema of its own for each run in this database (e.g."
        " postgresql://postgres@127.0.0.1:5432/postgres); figures under ingest_postgresql.workers_N",
    )
    p.add_argument(
        "--privacy",
        action="store_true",
        help="every meter requires privacy: COSE_Encrypt0 readings (figures under ingest_privacy)",
    )
    p.add_argument(
        "--no-ceiling", action="store_true", help="skip the broker's ceiling (its figures are then null)"
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="run `headend serve` under cProfile, writing FILE.<run> (with --workers 1: a worker's"
        " children are not profiled)",
    )
    args = p.parse_args(argv)
    if args.profile and args.workers != 1:
        p.error("--profile needs --workers 1")
    total = args.meters * args.per_meter
    print(
        "bench_ingest: %d runs of %d meters x %d readings, %d publishers, %d head-end worker(s), MQTT %s"
        % (args.runs, args.meters, args.per_meter, args.publishers, args.workers, args.mqtt),
        file=sys.stderr,
        flush=True,
    )
    runs = []
    for i in range(1, args.runs + 1):
        runs.append(measure(args, i))
        r = runs[-1]
        print(
            "  run %d: %d readings/s, %d lost, head-end peak RSS %.1f MiB%s"
            % (i, r["readings_per_s"], r["lost"], r["headend_peak_rss_mib"],
               "" if args.no_ceiling else "; broker ceiling %d msgs/s, ratio %.2f"
               % (r["broker_ceiling_per_s"], r["ratio_to_broker"]))
        , file=sys.stderr, flush=True)  # fmt: skip
    median = round(statistics.median(r["readings_per_s"] for r in runs))
    ceiling = None if args.no_ceiling else round(statistics.median(r["broker_ceiling_per_s"] for r in runs))
    ratio = None if ceiling is None else round(median / ceiling, 3)
    cpu_us = {
        k: round(statistics.median(r["cpu_us_per_reading"][k] for r in runs), 1)
        for k in runs[0]["cpu_us_per_reading"]
    }
    if not args.no_ceiling:
        cpu_us["broker_alone"] = round(
            statistics.median(r["ceiling"]["cpu_us_per_msg"]["broker"] for r in runs), 1
        )
    counted = [r["read_by_layout"] for r in runs if r.get("read_by_layout")]
    by_layout = [sum(c[0] for c in counted), sum(c[1] for c in counted)] if counted else None
    load = os.getloadavg()
    engine = "PostgreSQL" if args.postgresql else "SQLite"
    # the PostgreSQL target (issue 15) is for two serve processes on this 2-core machine
    target = TARGET if not args.postgresql or args.workers == PG_TARGET_WORKERS else None
    result = {
        "engine": engine.lower(),
        "readings_per_s": median,
        "target_readings_per_s": target,
        "met": None if target is None else median >= target,
        "broker_ceiling_per_s": ceiling,
        "ratio_to_broker": ratio,
        "target_ratio_to_broker": RATIO_TARGET,
        "goal_ratio_to_broker": RATIO_GOAL,
        "ratio_met": None if ratio is None else ratio >= RATIO_TARGET,
        "cpu_us_per_reading": cpu_us,
        "lost": sum(r["lost"] for r in runs),
        "headend_peak_rss_mib": max(r["headend_peak_rss_mib"] for r in runs),
        "read_by_layout": by_layout,
        "machine": machine(),
        "loadavg_after": [round(x, 2) for x in load],
        "config": {
            "meters": args.meters,
            "per_meter": args.per_meter,
            "readings_per_run": total,
            "publishers": args.publishers,
            "workers": args.workers,
            "mqtt": args.mqtt,
            "batch": args.batch,
            "window": args.window,
        },
        "runs": runs,
    }
    print()
    print(
        "Ingest through Mosquitto into %s, %d serve process(es) (%s)"
        % (engine, args.workers, result["machine"])
    )
    print(
        "%-5s %12s %9s %6s %9s %26s %18s %10s %6s %8s"
        % ("run", "readings/s", "seconds", "lost", "RSS MiB", "CPU s broker/head-end/pub",
           "us/reading he/brk", "ceiling/s", "ratio", "load 1m")
    )  # fmt: skip
    for i, r in enumerate(runs, 1):
        c, us = r["cpu_s"], r["cpu_us_per_reading"]
        print(
            "%-5d %12d %9.2f %6d %9.1f %26s %18s %10s %6s %8.2f"
            % (i, r["readings_per_s"], r["seconds"], r["lost"], r["headend_peak_rss_mib"],
               "%.1f / %.1f / %.1f" % (c["broker"], c["headend"], c["publishers"]),
               "%.0f / %.0f" % (us["headend"], us["broker"]),
               r.get("broker_ceiling_per_s", "-"),
               "%.2f" % r["ratio_to_broker"] if "ratio_to_broker" in r else "-",
               r["loadavg_1m_before"])
        )  # fmt: skip
    verdict = (
        "no target"
        if target is None
        else "target %d: %s" % (target, "met" if result["met"] else "BELOW TARGET")
    )
    print(
        "median %d readings/s  (%s)   head-end peak RSS %.1f MiB   load average now %s"
        % (median, verdict, result["headend_peak_rss_mib"], " ".join("%.2f" % x for x in load))
    )  # fmt: skip
    if by_layout:
        print("readings read by a known layout (headend.ingest.fast.row): %d of %d" % tuple(by_layout))
    if "postgresql" in cpu_us:
        print("CPU us/reading: head-end %.0f, broker %.0f, PostgreSQL %.0f"
              % (cpu_us["headend"], cpu_us["broker"], cpu_us["postgresql"]))  # fmt: skip
    if ratio is not None:
        print(
            "broker ceiling %d msgs/s (mosquitto_sub -q 1, same publishers)   ratio to broker %.2f"
            "  (target >= %.1f: %s; goal %.1f)   CPU us/reading: head-end %.0f (system %.0f), broker %.0f"
            " (alone %.0f)"
            % (ceiling, ratio, RATIO_TARGET, "met" if result["ratio_met"] else "BELOW TARGET", RATIO_GOAL,
               cpu_us["headend"], cpu_us["headend_system"], cpu_us["broker"], cpu_us["broker_alone"])
        )  # fmt: skip
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {}
    if args.postgresql:
        result["command"] = "tools/bench_ingest.py " + " ".join(argv if argv is not None else sys.argv[1:])
        data.setdefault("ingest_postgresql", {})["workers_%d" % args.workers] = result
    elif args.privacy:
        plain = data.get("ingest", {}).get("readings_per_s")
        result["ratio_to_plain"] = round(median / plain, 3) if plain else None
        result["target_ratio_to_plain"] = 0.8
        print(
            "privacy: %d readings/s, %s of the plain figure (target >= 0.80)"
            % (median, result["ratio_to_plain"])
        )
        data["ingest_privacy"] = result
    else:
        data["ingest"] = result
    out.write_text(json.dumps(data, indent=2) + "\n")
    print("written to %s" % out)
    return 1 if result["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
