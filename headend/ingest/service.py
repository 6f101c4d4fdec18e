"""``headend serve``: the MQTT edge of ingest (paho-mqtt 2).

Exactly-once into the database (SQLite or PostgreSQL) over an at-least-once broker:

- a persistent session (stable client id, ``headend.ingest`` by default, never one a
  meter could have: ``headend.mqtt.check_service_client_id``; MQTT 3.1.1 ``clean_session=False``,
  which Mosquitto keeps until the client comes back, or with ``protocol="5"``
  clean_start False and session expiry "never"), so the broker keeps QoS 1
  messages while the head-end is away;
- QoS 1 subscription to ``ami/v1/+/up/#`` (or ``$share/GROUP/ami/v1/+/up/#`` with
  ``share``, so several processes split the load);
- ``manual_ack``: each message is verified (``headend.ingest.verify.take``) into the
  open batch; the batch (up to ``batch_max`` messages or ``batch_wait`` s after
  its first) is committed in one transaction and only then are its PUBACKs
  sent. A crash before the commit leaves the messages unacknowledged: the
  broker redelivers them and ``(meter_id, seq)`` makes the redelivery a no-op.
  If the connection drops, the batch is committed but its PUBACKs are not sent
  (a packet id of the old connection may name another message by then): the
  broker redelivers, and the redeliveries count as duplicates.
- stop() (SIGTERM/SIGINT in ``serve``): stop reading, commit, ack, disconnect.
  Messages the broker sent meanwhile stay unacknowledged for next time.

Speed (tools/bench_ingest.py): one thread drives paho through its external-loop
API (``loop_read``/``loop_write``/``loop_misc``), so reading, verifying,
committing and acknowledging never hand over between threads. (A committer
thread, committing one batch while the next is read, was tried: the same wall
time and 3-10 us more CPU a reading in tools/profile_ingest.py, GIL hand-overs,
and no better bench_ingest ratio; not kept.) ``_Client``
reads the socket in 256 KiB chunks (paho itself makes four recv calls per
message) and decodes the QoS 1 PUBLISHes in them itself (MQTT 3.1.1), handing
topic, payload and packet id to ``verify.take``, which turns our meters' readings
into rows without the verdict's dict; a batch's PUBACKs go out in one ``send``
when paho has nothing else queued. CPU per reading, tools/profile_ingest.py
(no broker, ``time.process_time``): 47 us before those two steps, 27 us after,
of which SQLite's insert (the readings table and its indexes) is about
13 us (m013 dropped the unused readings(vee_state) index, ~2 us of it). The
default protocol is MQTT 3.1.1 because paho decodes an MQTT 5 PUBLISH into a
``Properties`` object, which costs about as much as the rest of the receive
path; nothing here needs MQTT 5 (Mosquitto keeps a 3.1.1 persistent session,
applies ``max_inflight_messages`` as the receive maximum
and serves ``$share`` filters to 3.1.1 clients too).

Shared subscriptions (``share="GROUP"``: ``headend serve --share GROUP --client-id ID`` on
several hosts, or ``run_workers``, ``headend serve --workers N``: N processes on one host,
sessions ``<client_id>-<i>``): the members of ``$share/GROUP/ami/v1/+/up/#`` split the load,
each with its own persistent session; PostgreSQL (or SQLite's WAL, busy_timeout) serialises
their commits and ``(meter_id, seq)`` keeps every reading once. Mosquitto 2.0 (measured with
2.0.11: tests/faults/test_serve_pg.py) keeps what was in flight to a member that dies in that
member's session, and goes on routing the member its round-robin turn of new messages while it
is away: nothing is lost or doubled, but those messages wait until the member reconnects under
the same client id (docs/scaling.md: restart it, or its share waits, up to the broker's
max_queued_messages).
"""

from __future__ import annotations

import select
import signal
import struct
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from headend.db.storage import Storage
from headend.errors import ServiceError
from headend.ingest import fast as ingest_fast
from headend.ingest import verify as ingest
from headend.ingest.store import IngestBatch
from headend.mqtt import check_service_client_id, connect_error, make_client, parse_broker_url
from protocol import topics

RECEIVE_MAXIMUM = 1000  # unacked QoS 1 messages the broker may send us (matches broker max_inflight)
KEY_RELOAD_S = 5.0  # meters provisioned while serving become known within this
READ_CHUNK = 256 * 1024  # bytes per recv
IDLE_WAIT = 0.1  # s: how often an idle loop looks at stop() and the keepalive
SEEN_EVERY = 1.0  # s: meters' last_seen is written at most this often (and at stop)
PROTOCOLS = {"3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}
# SQLite, serve's own connection: checkpoint the WAL every this many pages, not SQLite's 1000. A
# batch of readings from as many meters dirties about two index leaves a reading (readings' primary
# key and (meter_id, ts) both begin with the meter), so at 1000 pages nearly every commit also
# copied its pages back into the database and synced it; ten times fewer checkpoints copy a page
# written by several batches once. The WAL grows to about this many pages (4 KiB each) between them.
SQLITE_WAL_AUTOCHECKPOINT = 10_000
SQLITE_CACHE_KIB = 32 * 1024  # one serve process keeps the index leaves it writes cached (SQLite: 2 MiB)
_PUBACK = struct.Struct("!BBH").pack  # PUBACK, remaining length 2, packet id (also valid MQTT 5)


INGEST_CLIENT_ID = "headend.ingest"  # the default persistent session of `headend serve`
SHARE_GROUP = "headend"  # the group of --shared (protocol.topics.HEADEND_SHARED_FILTER)


def check_share_group(group: str) -> str:
    """ServiceError unless ``group`` can name a shared subscription (``$share/GROUP/...``)."""
    if not isinstance(group, str) or not group or any(c in group for c in "/+#") or group.strip() != group:
        raise ServiceError(
            "a share group is a non-empty name without '/', '+', '#' or surrounding spaces, got %r" % (group,)
        )
    return group


def share_filter(group: str) -> str:
    """The shared subscription of group ``group``: ``$share/GROUP/ami/v1/+/up/#``."""
    return "$share/%s/%s" % (check_share_group(group), topics.HEADEND_UP_FILTER)


class _Client(mqtt.Client):
    """paho's client, reading the socket in large chunks, QoS 1 PUBLISHes decoded here.

    paho reads a packet with one recv for its first byte, one per length byte
    and one for the rest; this serves those reads from a READ_CHUNK buffer.
    ``buffered()`` says whether bytes wait in it (select() cannot see them).

    With ``take_publish`` set (MQTT 3.1.1 only: no properties), each read also takes
    the complete QoS 1 PUBLISH packets at the head of the buffer itself, passing
    each to ``take_publish(topic: bytes, payload: bytes, mid)``, until it returns
    False (it did not take that one: the batch is full) or another packet, or a
    partial one, comes next: that one is paho's, read its own way. paho's own path for a PUBLISH (a packet
    dict, MQTTMessage with a Condition, the topic matcher, a debug log call, the
    callback locks) cost a third of the head-end's CPU per reading; nothing in it
    matters here (no QoS 2, no filtered callbacks, manual acks)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf, self._rpos, self._rsock = b"", 0, None
        self.take_publish = None

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        if self.take_publish is not None and self._in_packet["command"] == 0 and self._read_publishes():
            return mqtt.MQTT_ERR_SUCCESS
        return super()._packet_read()  # a recv, or a packet not taken above: paho's

    def _read_publishes(self) -> bool:
        """Take the complete QoS 1 PUBLISHes at the head of the buffer; whether any were."""
        if self._rsock is not self._sock:
            return False
        buf = self._rbuf
        start = pos = self._rpos
        end, take = len(buf), self.take_publish
        while pos + 2 < end and buf[pos] & 0xF6 == 0x32:  # PUBLISH, QoS 1 (DUP and RETAIN any)
            length, i, shift = 0, pos + 1, 0
            while True:  # the remaining length: 7 bits a byte, at most 4 bytes
                if i >= end or shift > 21:
                    length = -1  # partial, or too long: paho's
                    break
                b = buf[i]
                length |= (b & 0x7F) << shift
                i, shift = i + 1, shift + 7
                if b < 0x80:
                    break
            if length < 2 or i + length > end:
                break  # a partial packet, or one too short for a topic length: paho's
            tlen = buf[i] << 8 | buf[i + 1]
            if tlen == 0 or 4 + tlen > length:
                break  # malformed (no topic, no packet id): paho names it
            j, nxt = i + 2 + tlen, i + length
            if not take(buf[i + 2 : j], buf[j + 2 : nxt], buf[j] << 8 | buf[j + 1]):
                break
            pos = nxt
        if pos == start:
            return False
        self._rpos = pos
        self._last_bytes_received = mqtt.time_func()  # paho's keepalive clock
        return True

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: the old one's bytes are void
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        pos = self._rpos
        if pos >= len(self._rbuf):
            data = super()._sock_recv(READ_CHUNK)  # BlockingIOError / OSError as paho expects
            if not data:
                return data
            self._rbuf, pos = data, 0
        self._rpos = pos + bufsize
        return self._rbuf[pos : pos + bufsize]

    def buffered(self) -> bool:
        return self._rsock is self._sock and self._rpos < len(self._rbuf)


class IngestService:
    def __init__(
        self,
        store: Storage,
        broker_url: str,
        client_id: str = INGEST_CLIENT_ID,
        shared: bool = False,
        share: str | None = None,
        batch_max: int = 500,
        batch_wait: float = 0.05,
        protocol: str = "3.1.1",
        log=None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ServiceError("MQTT protocol must be one of %s, got %r" % (", ".join(PROTOCOLS), protocol))
        check_service_client_id(client_id)
        self.store = store
        self.broker = parse_broker_url(broker_url)
        self.share = check_share_group(share) if share is not None else SHARE_GROUP if shared else None
        self.shared = self.share is not None
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.protocol = protocol
        self.log = log or _say
        self.keys = store.meter_keys()
        if getattr(store, "dialect", "sqlite") == "sqlite":
            store.conn.execute("PRAGMA wal_autocheckpoint=%d" % SQLITE_WAL_AUTOCHECKPOINT)
            store.conn.execute("PRAGMA cache_size=%d" % -SQLITE_CACHE_KIB)
        self._batch = IngestBatch()
        self._acks: list[int] = []  # packet ids of the open batch's QoS 1 messages
        self._pending = 0  # messages in the open batch
        self._first_at = 0.0
        self._seen: dict[str, float] = {}  # last_seen not yet written
        self._seen_due = 0.0
        self._stop = threading.Event()
        self.fatal: str | None = None
        self.totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        v5 = protocol == "5"
        self.client = make_client(
            self.broker,
            client_id,
            cls=_Client,
            protocol=PROTOCOLS[protocol],
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        if not v5:  # an MQTT 5 PUBLISH carries properties: paho decodes those
            self.client.take_publish = self._take_publish

    # ------------------------------------------------------------ paho callbacks (our thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.fatal = "broker refused the connection: %s" % reason_code
            self._stop.set()
            return
        flt = share_filter(self.share) if self.share is not None else topics.HEADEND_UP_FILTER
        client.subscribe(flt, qos=topics.QOS)
        self.log(
            "connected to %s:%d (MQTT %s, session present: %s), subscribed to %s"
            % (self.broker["host"], self.broker["port"], self.protocol, flags.session_present, flt)
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self._stop.is_set():
            self.log("disconnected (%s); reconnecting" % reason_code)

    def _on_message(self, client, userdata, message):
        received_at = time.time()
        ingest.take(self._batch, message.topic, message.payload, received_at, self.keys)
        if message.qos:
            self._acks.append(message.mid)
        self._pending += 1
        if self._pending == 1:
            self._first_at = received_at

    def _take_publish(self, topic: bytes, payload: bytes, mid: int) -> bool:
        """A QoS 1 PUBLISH _Client decoded itself; False (not taken) once the batch is full."""
        if self._pending >= self.batch_max:
            return False
        received_at = time.time()
        ingest.take(self._batch, topic, payload, received_at, self.keys)
        self._acks.append(mid)
        self._pending += 1
        if self._pending == 1:
            self._first_at = received_at
        return True

    # ------------------------------------------------------------ the loop

    def stop(self) -> None:
        """Ask run() to finish (safe from a signal handler)."""
        self._stop.set()

    def _commit(self, connected: bool, final: bool = False) -> None:
        if not self._pending and not (final and self._seen):
            return
        batch, acks = self._batch, self._acks
        self._batch, self._acks, self._pending = IngestBatch(), [], 0
        # one UPDATE per meter per batch costs a third of the commit: gather last_seen for a while
        self._seen.update(batch.seen)
        now = time.monotonic()
        if final or now >= self._seen_due:
            batch.seen, self._seen, self._seen_due = self._seen, {}, now + SEEN_EVERY
        else:
            batch.seen = {}
        result = self.store.commit_batch(batch)
        if connected:  # only now: the batch is durable in the database
            self._send_acks(acks)
        self.totals["accepted"] += result["accepted"]
        self.totals["duplicates"] += result["duplicates"]
        self.totals["rejected"] += len(batch.quarantine) + result["reused"]

    def _send_acks(self, mids: list[int]) -> None:
        c = self.client
        sock = c.socket()
        if not mids or sock is None:
            return
        if c.want_write():  # paho is part-way through a packet: queue ours behind it
            for mid in mids:
                c.ack(mid, 1)
            return
        data = memoryview(b"".join([_PUBACK(0x40, 2, mid) for mid in mids]))
        try:
            while data:
                try:
                    data = data[sock.send(data) :]
                except BlockingIOError:
                    select.select([], [sock], [], 1.0)
        except OSError:
            pass  # the connection is gone; the broker redelivers what we did not ack

    def _due(self) -> bool:
        return self._pending >= self.batch_max or (
            self._pending > 0 and time.time() >= self._first_at + self.batch_wait
        )

    def _connect(self, delay: float) -> float:
        """One connection attempt; the next back-off delay."""
        try:
            self.client.reconnect()
            return 0.2
        except OSError as e:
            self.log(
                "cannot reach the broker (%s); retrying in %.1f s"
                % (connect_error(e, self.broker["tls"]), delay)
            )
            self._stop.wait(delay)
            return min(delay * 2, 5.0)

    def _step(self) -> bool:
        """One select round: read, write, keepalive, commit; False if the connection dropped."""
        c = self.client
        sock = c.socket()
        if c.buffered():
            timeout = 0.0
        elif self._pending:
            timeout = max(0.0, min(IDLE_WAIT, self._first_at + self.batch_wait - time.time()))
        else:
            timeout = IDLE_WAIT
        try:
            readable, writable, _ = select.select([sock], [sock] if c.want_write() else [], [], timeout)
        except (OSError, ValueError):
            return False
        rc = mqtt.MQTT_ERR_SUCCESS
        if readable or c.buffered():
            rc = c.loop_read()
            while rc == mqtt.MQTT_ERR_SUCCESS and c.buffered() and self._pending < self.batch_max:
                rc = c.loop_read()
        if rc == mqtt.MQTT_ERR_SUCCESS and (writable or c.want_write()):
            rc = c.loop_write()
        if rc == mqtt.MQTT_ERR_SUCCESS:
            rc = c.loop_misc()
        ok = rc == mqtt.MQTT_ERR_SUCCESS and c.socket() is not None
        if self._due() or not ok:
            self._commit(ok)
        return ok

    def run(self) -> int:
        """Ingest until stop(); 0 after a clean shutdown, 2 if the broker refused us."""
        v5 = self.protocol == "5"
        self.client.connect_async(
            self.broker["host"],
            self.broker["port"],
            keepalive=60,
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=self._connect_properties() if v5 else None,
        )
        next_reload = time.monotonic() + KEY_RELOAD_S
        delay, connected = 0.2, False
        try:
            while not self._stop.is_set():
                if not connected:
                    delay = self._connect(delay)
                    connected = self.client.socket() is not None
                    continue
                connected = self._step()
                if time.monotonic() >= next_reload:
                    self.keys = self.store.meter_keys()
                    next_reload = time.monotonic() + KEY_RELOAD_S
            self._commit(connected, final=True)
        finally:
            if self.client.socket() is not None:
                self.client.disconnect()
                self.client.loop_write()
        if self.fatal:
            self.log(self.fatal)
            return 2
        by_layout, decoded = ingest_fast.counts
        self.log(
            "stopped: accepted %(accepted)d, duplicates %(duplicates)d, rejected %(rejected)d" % self.totals
            + "; readings read by a known layout: %d of %d" % (by_layout, by_layout + decoded)
        )
        return 0

    @staticmethod
    def _connect_properties() -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0xFFFFFFFF  # never: the session outlives any restart of ours
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        return props


def _say(text: str) -> None:
    """One line on stderr in one write: the workers of `serve --workers N` share their parent's
    stderr, and print()'s separate write of the newline let two workers' lines run together."""
    sys.stderr.write("headend serve: %s\n" % text)
    sys.stderr.flush()


def run_workers(n: int, child_argv, log=None) -> int:
    """Run ``child_argv(i)`` (a `headend serve --shared` command line) for i in 0..n-1
    as processes until SIGTERM/SIGINT, which is passed on; the highest exit code.
    If one worker exits by itself, the others are stopped too."""
    log = log or _say
    procs = [subprocess.Popen(child_argv(i)) for i in range(n)]
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.is_set() and all(p.poll() is None for p in procs):
            stop.wait(0.2)
        if not stop.is_set():
            log("a worker exited; stopping the others")
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        return max(p.wait() for p in procs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
