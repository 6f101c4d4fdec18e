"""CPU per reading of `headend serve`'s receive path, without Mosquitto: repeatable under load.

    .venv/bin/python tools/profile_ingest.py [--meters 1000] [--per-meter 100] [--batch 500]
        [--profile FILE] [--top 25]

A stand-in broker (a forked process, so its CPU is not counted) speaks just enough
MQTT 3.1.1 to ``headend.ingest.service.IngestService``: CONNACK, SUBACK, then every
meter's sealed readings as QoS 1 PUBLISHes, interleaved across meters as a broker
delivers them, at most ``RECEIVE_MAXIMUM`` unacknowledged (Mosquitto's
``max_inflight_messages`` in `headend broker-config`). The service runs in this
process, as `headend serve` does, into a fresh database; it stops once every reading
is stored and PUBACKed. Printed: CPU µs per reading (``time.process_time``: user +
system of this process, whatever else the machine runs), how many readings a known layout
read (headend.ingest.fast.row) and, with ``--profile``, the cProfile of the run (top
functions by own time), written to FILE too.

This is the head-end's share only: tools/bench_ingest.py measures it end to end
through Mosquitto, with the broker's ceiling beside it.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing as mp
import os
import pathlib
import pstats
import shutil
import socket
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from headend.db.storage import Storage  # noqa: E402
from headend.ingest import fast as ingest_fast  # noqa: E402
from headend.ingest.service import RECEIVE_MAXIMUM, IngestService  # noqa: E402
from headend.meters import provision  # noqa: E402
from protocol import messages, topics  # noqa: E402
from tools.bench_ingest import publish_packet, reading_message  # noqa: E402


def reading_frames(meters: list[dict], per_meter: int) -> list[tuple[bytes, bytes]]:
    """(topic, sealed frame) of every reading, seq by seq across the meters."""
    out = []
    for seq in range(1, per_meter + 1):
        for m in meters:
            msg = reading_message(seq)
            key = bytes.fromhex(m["key"])
            out.append((topics.up(m["meter_id"], "reading").encode(), messages.seal(key, m["meter_id"], msg)))
    return out


def _recv_packet(sock: socket.socket) -> bytes:
    head = sock.recv(2)
    n, shift, i = 0, 0, 1
    while True:
        b = head[i] if i < len(head) else sock.recv(1)[0]
        n |= (b & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if not b & 0x80:
            break
    body = b""
    while len(body) < n:
        body += sock.recv(n - len(body))
    return head[:1] + body


def fake_broker(listener: socket.socket, packets: list[bytes]) -> None:
    """Serve one connection: CONNACK, SUBACK, the PUBLISHes with a window, count PUBACKs."""
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert _recv_packet(conn)[0] == 0x10  # CONNECT
    conn.sendall(b"\x20\x02\x00\x00")
    sub = _recv_packet(conn)
    assert sub[0] == 0x82  # SUBSCRIBE
    conn.sendall(b"\x90\x03" + sub[1:3] + b"\x01")  # SUBACK, granted QoS 1
    sent = min(RECEIVE_MAXIMUM, len(packets))
    conn.sendall(b"".join(packets[:sent]))
    acked, buf = 0, b""
    while acked < len(packets):
        data = conn.recv(65536)
        if not data:
            raise SystemExit("fake broker: the head-end closed the connection")
        buf += data
        while buf and buf[0] != 0x40:  # PINGREQ and the like: skip whole packets
            if buf[0] == 0xC0 and len(buf) >= 2:
                conn.sendall(b"\xd0\x00")
                buf = buf[2:]
            else:
                break
        n = len(buf) // 4
        acked += n
        buf = buf[n * 4 :]
        nxt = min(sent + n, len(packets))
        if nxt > sent:
            conn.sendall(b"".join(packets[sent:nxt]))
            sent = nxt
    try:
        while conn.recv(65536):  # until the head-end disconnects
            pass
    except OSError:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--meters", type=int, default=1000)
    p.add_argument("--per-meter", type=int, default=100)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--profile", metavar="FILE", help="cProfile the service; stats written to FILE")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="profile_ingest_")
    try:
        db = os.path.join(work, "headend.db")
        with Storage(db) as store:
            meters = [provision.add_meter(store, "pm%05d" % i) for i in range(args.meters)]
        frames = reading_frames(meters, args.per_meter)
        packets = [publish_packet(t, i % 65535 + 1, f) for i, (t, f) in enumerate(frames)]
        total = len(packets)
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        broker = mp.get_context("fork").Process(target=fake_broker, args=(listener, packets))
        broker.start()
        listener.close()
        with Storage(db) as store:
            service = IngestService(
                store, "mqtt://headend.ingest:x@127.0.0.1:%d" % port, batch_max=args.batch, log=lambda t: None
            )

            def stop_when_done() -> None:
                while service.totals["accepted"] < total and broker.is_alive():
                    time.sleep(0.01)
                service.stop()

            watcher = threading.Thread(target=stop_when_done, daemon=True)
            # timed in CPU time (repeatable under load); the profiler's own cost inflates small calls
            prof = cProfile.Profile(time.process_time) if args.profile else None
            cpu0, wall0 = time.process_time(), time.monotonic()
            watcher.start()
            if prof:
                prof.enable()
            service.run()
            if prof:
                prof.disable()
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            stored = store.count_readings()
        broker.join(10)
        if broker.is_alive():
            broker.kill()
        by_layout, decoded = ingest_fast.counts
        print(
            "%d readings stored of %d; CPU %.2f s = %.1f us/reading (wall %.2f s, %.0f readings/s);"
            " read by a known layout %d of %d; load average %s%s"
            % (stored, total, cpu, cpu * 1e6 / total, wall, total / wall, by_layout, by_layout + decoded,
               " ".join("%.2f" % x for x in os.getloadavg()), " (under cProfile)" if prof else "")
        )  # fmt: skip
        if prof:
            prof.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("tottime").print_stats(args.top)
        return 0 if stored == total else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
