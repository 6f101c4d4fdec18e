"""MQTT 3.1.1 client on asyncio streams: the meter's broker transport.

Runs on MicroPython (unix port, ESP32, RP2040) and on CPython's asyncio
(tests). Packets are built and checked by firmware/mqtt_packets.py. This is
the transport only: the persistent outbox, the in-flight window and the
reconnect loop belong to the caller.

Contract:
- ``await client.connect(host, port)`` opens TCP, sends CONNECT (client id,
  username/password, clean_session, keepalive, will from ``set_will``) and
  waits for CONNACK; returns session_present. A refusal raises MQTTError
  named after the return code ("CONNACK refused: not authorized (5)").
  ``connect(host, port, ssl=ctx)`` (an SSLContext: firmware/tls.py) speaks
  TLS, the server name ``host``; a failed handshake (the broker's certificate
  refused: unknown CA, expired, another name; a broker not speaking TLS) raises
  MQTTError "TLS with HOST:PORT failed: <why>" (mbedTLS reports a refused
  certificate as ValueError: it never escapes as one).
- ``await client.loop()`` is the reader: run it as a task while connected. It
  dispatches PUBLISH to ``on_message(topic, payload, pid)`` (pid 0 for QoS 0;
  ``client.dup``/``client.retain`` hold that message's flags during the call),
  PUBACK to ``on_puback(pid)`` (only for ids this connection has in flight),
  SUBACK to the waiting ``subscribe``. It sends PINGREQ when the client has
  sent nothing for keepalive/2 (or heard nothing for keepalive/2), real time,
  and declares the connection dead when nothing arrived for keepalive*1.5.
  It returns None when the application ended the connection (disconnect(),
  close()) and otherwise raises why it ended (MQTTError/OSError); the
  connection is closed either way and ``connected`` is False.
- Incoming QoS 1 is not acknowledged automatically: ``await client.puback(pid)``
  once the message is durably handled, so the broker redelivers it (DUP) in
  the next session if the meter dies first. Incoming QoS 2 ends the connection
  with MQTTError (subscribe with QoS <= 1).
- ``await client.publish(topic, payload, qos=1, retain=False, dup=False, pid=None)``
  writes the PUBLISH and returns its packet id (0 for QoS 0) without waiting
  for the PUBACK. Ids run 1..65535, wrapping, skipping ids in flight; pass
  ``pid`` to resend with an id of one's own choosing. ``inflight()`` counts
  QoS 1 publishes of this connection not yet acknowledged; connect() empties it.
- ``await client.subscribe(topic, qos=1)`` waits for the SUBACK (via loop() if
  it runs, else reading itself) and returns the granted QoS; 0x80 -> MQTTError.
- ``await client.disconnect()`` sends DISCONNECT and closes cleanly (the broker
  drops the will); ``client.close()`` closes at once (the broker publishes it).
- Received packets with a remaining length above ``max_packet`` (default
  16 KiB) and malformed packets raise MQTTError and close the connection.
- ``Backoff`` and ``connect_forever`` are the reconnect policy: capped
  exponential back-off with full jitter.
- Memory: a PUBLISH up to 512 bytes is assembled in one reused buffer and
  written with one write (on MicroPython straight from that buffer), PUBACKs
  too; larger publishes and received packets allocate. TCP_NODELAY is set
  where the port allows, so back-to-back small packets do not wait 40 ms.
"""

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio
import random

from micropython import const

from firmware.compat import MICROPYTHON, ticks_diff, ticks_ms
from firmware.mqtt_packets import (
    CONNACK,
    DISCONNECT_PACKET,
    NAMES,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    SUBACK_FAILURE,
    MQTTError,
    check_empty,
    check_header,
    check_length,
    connack_error,
    decode_connack,
    decode_puback,
    decode_publish,
    decode_suback,
    decode_varint,
    encode_connect,
    encode_subscribe,
    publish_header_into,
    topic_name,
)

_PACKET_BUF = const(512)  # a whole PUBLISH of a meter (header, topic, COSE payload), reused

# ---------------------------------------------------------------- MicroPython / CPython asyncio differences


def _sleep_ms(ms):  # CPython's asyncio (tests)
    return asyncio.sleep(ms / 1000)


def _wait_for_ms(aw, ms):
    return asyncio.wait_for(aw, ms / 1000)


sleep_ms = getattr(asyncio, "sleep_ms", _sleep_ms)
wait_for_ms = getattr(asyncio, "wait_for_ms", _wait_for_ms)


def _current_task():
    try:
        return asyncio.current_task()
    except RuntimeError:  # not inside a task
        return None


def _view(mv):
    """What writer.write() gets from the reused packet buffer: the view itself on
    MicroPython (its Stream sends it at once or copies what is left), a copy on
    CPython (whose transport may keep a reference)."""
    return mv if MICROPYTHON else bytes(mv)


def _close_stream(w):
    try:
        w.close()
        s = getattr(w, "s", None)  # older MicroPython Streams closed the socket only in wait_closed()
        if MICROPYTHON and s is not None:
            s.close()
    except OSError:
        pass


def _nodelay(w):
    """TCP_NODELAY on MicroPython's socket (CPython's asyncio sets it already): without it a
    packet written right after another waits for the broker's delayed ACK (40 ms). Best effort:
    the unix port lacks the constants (6 and 1 on Linux and lwIP alike), some ports the option."""
    s = getattr(w, "s", None)
    if not MICROPYTHON or s is None:
        return
    try:
        import socket

        s.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)
    except (OSError, ImportError, AttributeError):
        pass


class _Conn:
    """One TCP connection's state; a new one per connect()."""

    def __init__(self, r, w):
        self.r = r
        self.w = w
        self.wlock = asyncio.Lock()  # one packet written at a time
        self.rlock = asyncio.Lock()  # one reader: loop() or a subscribe() waiting without it
        self.open = True
        self.by_app = False  # ended by disconnect()/close(): loop() returns instead of raising
        self.why = None  # the exception that ended it
        self.task = None  # the task running loop()
        now = ticks_ms()
        self.last_tx = now
        self.last_rx = now
        self.last_ping = now


class MQTTClient:
    def __init__(
        self,
        client_id,
        username=None,
        password=None,
        keepalive=60,
        clean_session=True,
        max_packet=16384,
        on_message=None,
        on_puback=None,
    ):
        if not 0 <= keepalive <= 65535:
            raise ValueError("keepalive %r outside 0..65535 s" % (keepalive,))
        self.client_id = client_id
        self.username = username
        self.password = password
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.max_packet = max_packet
        self.on_message = on_message
        self.on_puback = on_puback
        self.will = None
        self.connected = False
        self.session_present = False
        self.error = None  # why the last connection ended; None if the application ended it
        self.dup = False  # flags of the PUBLISH being delivered to on_message
        self.retain = False
        self.pings = 0  # PINGREQs sent, all connections
        self._c = None
        self._pid = 0
        self._inflight = set()
        self._waiters = {}  # SUBSCRIBE pid -> [Event, return codes or None]
        self._buf = bytearray(_PACKET_BUF)
        self._mv = memoryview(self._buf)
        self._rx = bytearray(5)  # first byte + remaining length of the packet being read

    def set_will(self, topic, payload, qos=1, retain=True):
        """The will the broker publishes if the connection ends without DISCONNECT (next connect)."""
        topic_name(topic)
        if qos not in (0, 1, 2):
            raise ValueError("will qos %r outside 0..2" % (qos,))
        self.will = (topic, bytes(payload), qos, retain)

    def inflight(self):
        return len(self._inflight)

    # ------------------------------------------------------------ connection

    async def connect(self, host, port=1883, timeout_ms=10000, ssl=None):
        """Open the connection; returns session_present. MQTTError/OSError if it fails."""
        if self._c is not None and self._c.open:
            raise MQTTError("connect: already connected; disconnect() or close() first")
        self.connected = False
        if ssl is not None:
            try:
                return await self._connect(host, port, timeout_ms, ssl)
            except MQTTError:
                raise
            except (OSError, ValueError) as e:
                why = (str(e) or type(e).__name__).strip().replace("\n", "; ")
                raise MQTTError("TLS with %s:%d failed: %s" % (host, port, why))
        return await self._connect(host, port, timeout_ms, None)

    async def _connect(self, host, port, timeout_ms, ssl):
        try:
            if ssl is None:
                r, w = await wait_for_ms(asyncio.open_connection(host, port), timeout_ms)
            else:
                r, w = await wait_for_ms(asyncio.open_connection(host, port, ssl=ssl), timeout_ms)
        except asyncio.TimeoutError:
            raise MQTTError("connect: no TCP connection to %s:%d within %d ms" % (host, port, timeout_ms))
        _nodelay(w)
        c = _Conn(r, w)
        self._c = c
        self._inflight = set()
        will = self.will or (None, b"", 1, True)
        try:
            packet = encode_connect(
                self.client_id,
                self.username,
                self.password,
                self.clean_session,
                self.keepalive,
                will[0],
                will[1],
                will[2],
                will[3],
            )
            await self._send(c, packet)
            try:
                ptype, flags, body = await wait_for_ms(self._read_packet(c), timeout_ms)
            except asyncio.TimeoutError:
                raise MQTTError("connect: no CONNACK within %d ms" % timeout_ms)
            except OSError as e:  # closed, reset or garbage instead of an answer
                if ssl is not None:
                    raise
                raise MQTTError(
                    "connect: %s:%d ended the connection before a CONNACK (%s): a TLS listener? (config"
                    " broker.tls)" % (host, port, e)
                )
            if ptype != CONNACK:
                raise MQTTError("connect: expected CONNACK, got %s" % NAMES[ptype])
            session_present, rc = decode_connack(body)
            if rc:
                raise connack_error(rc)
        except BaseException as e:  # CancelledError too: never leave the socket open
            self._drop(c, e)
            raise
        self.session_present = session_present
        self.connected = True
        self.error = None
        return session_present

    async def disconnect(self, timeout_ms=2000):
        """Send DISCONNECT, wait (at most timeout_ms) for the broker to close, close."""
        c = self._c
        self.connected = False
        if c is None or not c.open:
            return
        c.by_app = True
        try:
            await wait_for_ms(self._bye(c), timeout_ms)
        except (OSError, asyncio.TimeoutError):
            pass  # the broker is gone or slow: close anyway
        self._drop(c, None)
        try:
            await c.w.wait_closed()
        except OSError:
            pass

    async def _bye(self, c):
        await self._send(c, DISCONNECT_PACKET)
        # Read to the broker's EOF before closing: closing with unread bytes sends
        # RST, which may lose the DISCONNECT and so publish the will. A running
        # loop() does this reading (and ends there) and hands over the lock.
        async with c.rlock:
            while c.open:
                if not await c.r.read(64):
                    return

    def close(self):
        """Close the connection at once, without DISCONNECT: the broker publishes the will."""
        c = self._c
        self.connected = False
        if c is not None:
            c.by_app = True
            self._drop(c, None)

    def _live(self, what):
        c = self._c
        if not self.connected or c is None or not c.open:
            raise MQTTError("%s: not connected" % what)
        return c

    def _drop(self, c, why):
        """End connection c (once): close the socket, stop its loop(), wake subscribe()s."""
        if not c.open:
            return
        c.open = False
        c.why = None if c.by_app else why
        if c is self._c:
            self.connected = False
            self.error = c.why
        _close_stream(c.w)
        task = c.task
        if task is not None and task is not _current_task():
            task.cancel()
        self._wake()

    def _wake(self):
        for entry in self._waiters.values():
            entry[0].set()

    # ------------------------------------------------------------ writing

    async def _send(self, c, packet):
        async with c.wlock:
            if not c.open:
                raise MQTTError("send: not connected")
            try:
                c.w.write(packet)
                await c.w.drain()
            except OSError as e:
                self._drop(c, e)
                raise
        c.last_tx = ticks_ms()

    def _next_pid(self):
        if len(self._inflight) + len(self._waiters) >= 65535:
            raise MQTTError("no free packet id: 65535 in flight")
        pid = self._pid
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if pid not in self._inflight and pid not in self._waiters:
                self._pid = pid
                return pid

    async def publish(self, topic, payload, qos=1, retain=False, dup=False, pid=None):
        """Write one PUBLISH; returns its packet id (0 for QoS 0). The PUBACK comes to on_puback."""
        c = self._live("publish")
        if qos not in (0, 1):
            raise ValueError("qos %r: publish sends QoS 0 or 1" % (qos,))
        t = topic_name(topic)
        size = 2 + len(t) + len(payload) + 2 * qos
        if size > self.max_packet:
            raise ValueError("payload: PUBLISH remaining length %d > max_packet %d" % (size, self.max_packet))
        if not qos:
            pid = 0
        elif pid is None:
            pid = self._next_pid()
        elif not 1 <= pid <= 65535:
            raise ValueError("pid %r outside 1..65535" % (pid,))
        # one write per packet: a header and a payload in two writes would meet Nagle
        # and delayed ACK (40 ms a message); meter messages fit the reused buffer
        need = len(t) + 9 + len(payload)
        buf = self._buf if need <= _PACKET_BUF else bytearray(need)
        async with c.wlock:
            if not c.open:
                raise MQTTError("publish: not connected")
            n = publish_header_into(buf, t, len(payload), qos, retain, dup, pid)
            end = n + len(payload)
            buf[n:end] = payload
            if qos:
                self._inflight.add(pid)
            try:
                c.w.write(_view(self._mv[:end]) if buf is self._buf else memoryview(buf)[:end])
                await c.w.drain()
            except OSError as e:
                self._drop(c, e)
                raise
        c.last_tx = ticks_ms()
        return pid

    async def puback(self, pid):
        """Acknowledge incoming QoS 1 PUBLISH ``pid`` (after handling it durably)."""
        c = self._live("puback")
        if not 1 <= pid <= 65535:
            raise ValueError("pid %r outside 1..65535" % (pid,))
        async with c.wlock:
            if not c.open:
                raise MQTTError("puback: not connected")
            h = self._buf
            h[0] = PUBACK << 4
            h[1] = 2
            h[2] = pid >> 8
            h[3] = pid & 0xFF
            try:
                c.w.write(_view(self._mv[:4]))
                await c.w.drain()
            except OSError as e:
                self._drop(c, e)
                raise
        c.last_tx = ticks_ms()

    async def ping(self):
        await self._ping(self._live("ping"))

    async def _ping(self, c):
        await self._send(c, PINGREQ_PACKET)
        c.last_ping = c.last_tx
        self.pings += 1

    async def subscribe(self, topic, qos=1, timeout_ms=10000):
        """Subscribe to one topic filter; returns the granted QoS. MQTTError if refused or no SUBACK."""
        c = self._live("subscribe")
        if qos not in (0, 1):
            raise ValueError("qos %r: subscribe asks for QoS 0 or 1 (incoming QoS 2 is refused)" % (qos,))
        pid = self._next_pid()
        entry = [asyncio.Event(), None]
        self._waiters[pid] = entry
        try:
            await self._send(c, encode_subscribe(pid, [(topic, qos)]))
            try:
                await wait_for_ms(self._suback(c, entry), timeout_ms)
            except asyncio.TimeoutError:
                err = MQTTError("subscribe %s: no SUBACK within %d ms" % (topic, timeout_ms))
                self._drop(c, err)  # a read may have been cut mid-packet
                raise err
        finally:
            del self._waiters[pid]
        if entry[1][0] == SUBACK_FAILURE:
            raise MQTTError("subscribe %s: refused by the broker (SUBACK 0x80)" % topic)
        return entry[1][0]

    async def _suback(self, c, entry):
        while entry[1] is None:
            if not c.open:
                raise c.why or MQTTError("subscribe: connection closed before the SUBACK")
            if c.rlock.locked():  # loop() (or another subscribe) reads and will set the event
                entry[0].clear()
                await entry[0].wait()
                continue
            async with c.rlock:
                try:
                    ptype, flags, body = await self._read_packet(c)
                    self._dispatch(ptype, flags, body)
                except Exception as e:
                    self._drop(c, e)
                    raise
            self._wake()  # another waiter may read now

    # ------------------------------------------------------------ reading

    async def loop(self):
        """Read and dispatch packets until the connection ends (see the module docstring)."""
        c = self._live("loop")
        c.task = _current_task()  # pyright: ignore[reportAttributeAccessIssue]  # typed None by __init__
        try:
            async with c.rlock:
                while c.open:
                    ptype, flags, body = await self._next_packet(c)
                    self._dispatch(ptype, flags, body)
        except asyncio.CancelledError:
            if c.open:  # cancelled by the application, not by _drop()
                self._drop(c, MQTTError("loop cancelled"))
                raise
        except Exception as e:
            self._drop(c, e)
        finally:
            c.task = None
            self._wake()
        if not c.by_app:
            raise c.why or MQTTError("connection closed")

    async def _read_packet(self, c):
        b = await c.r.read(1)
        if not b:
            raise MQTTError("connection closed by the broker")
        return await self._rest(c, b[0])

    async def _next_packet(self, c):
        """The next packet, pinging while idle; MQTTError when keepalive*1.5 passes in silence."""
        ka = self.keepalive
        if not ka:
            return await self._read_packet(c)
        while True:
            wait = await self._keepalive(c)
            try:
                b = await wait_for_ms(c.r.read(1), wait)
                break
            except asyncio.TimeoutError:
                pass
        if not b:
            raise MQTTError("connection closed by the broker")
        try:
            return await wait_for_ms(self._rest(c, b[0]), ka * 1500)
        except asyncio.TimeoutError:
            raise MQTTError("keepalive: a packet from the broker stalled for %d ms" % (ka * 1500))

    async def _keepalive(self, c):
        """Ping if due; ms until the next thing to check. MQTTError if the broker went silent."""
        half = self.keepalive * 500
        dead = self.keepalive * 1500
        now = ticks_ms()
        rx = ticks_diff(now, c.last_rx)
        if rx >= dead:
            raise MQTTError(
                "keepalive: nothing from the broker for %d ms (keepalive %d s)" % (rx, self.keepalive)
            )
        tx = ticks_diff(now, c.last_tx)
        pg = ticks_diff(now, c.last_ping)
        if tx >= half or (rx >= half and pg >= half):
            await self._ping(c)
            tx = 0
            pg = 0
        wait = min(half - tx, dead - rx, max(half - rx, half - pg))
        return wait if wait > 1 else 1

    async def _rest(self, c, first):
        """Remaining length and body of a packet whose first byte was read: (type, flags, body)."""
        ptype, flags = check_header(first)
        rx = self._rx
        k = 1
        try:
            while True:
                b = (await c.r.readexactly(1))[0]
                rx[k] = b
                k += 1
                if not b & 0x80 or k == 5:
                    break
            n = decode_varint(rx, 1, k)[0]
            check_length(n, self.max_packet)
            body = await c.r.readexactly(n) if n else b""
        except EOFError:
            raise MQTTError("connection closed by the broker inside a %s packet" % NAMES[ptype])
        c.last_rx = ticks_ms()
        return ptype, flags, body

    def _dispatch(self, ptype, flags, body):
        if ptype == PUBLISH:
            topic, payload, qos, retain, dup, pid = decode_publish(flags, body)
            if qos == 2:
                raise MQTTError("QoS 2 PUBLISH on %s: not supported (subscribe with QoS 0 or 1)" % topic)
            self.dup = dup
            self.retain = retain
            if self.on_message is not None:
                self.on_message(topic, payload, pid)
        elif ptype == PUBACK:
            pid = decode_puback(body)
            if pid in self._inflight:
                self._inflight.remove(pid)
                if self.on_puback is not None:
                    self.on_puback(pid)
        elif ptype == SUBACK:
            pid, codes = decode_suback(body)
            entry = self._waiters.get(pid)
            if entry is not None:
                entry[1] = codes
                entry[0].set()
        elif ptype == PINGRESP:
            check_empty(ptype, body)
        else:
            raise MQTTError("unexpected %s from the broker" % NAMES[ptype])


# ---------------------------------------------------------------- reconnect policy


class Backoff:
    """Capped exponential back-off with full jitter.

    next_ms() is uniform in [0, min(cap_ms, base_ms * 2**n)] for the n-th call
    since reset(). ``rand(bits)`` gives random bits (random.getrandbits unless
    a test injects one); the value is rand(30) mod (ceiling + 1).
    """

    def __init__(self, base_ms=1000, cap_ms=300000, rand=None):
        if base_ms < 1 or cap_ms < base_ms or cap_ms >= 1 << 29:
            raise ValueError("back-off needs 1 <= base_ms <= cap_ms < 2**29, got %r, %r" % (base_ms, cap_ms))
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.rand = rand if rand is not None else random.getrandbits
        self.attempts = 0
        self.ceiling_ms = base_ms

    def next_ms(self):
        ceiling = self.ceiling_ms
        self.attempts += 1
        self.ceiling_ms = min(self.cap_ms, ceiling * 2)
        return self.rand(30) % (ceiling + 1)

    def reset(self):
        self.attempts = 0
        self.ceiling_ms = self.base_ms


async def connect_forever(client, host, port, backoff, network_up=None, on_error=None):
    """client.connect() until it succeeds, sleeping backoff.next_ms() after each failure.

    ``network_up()`` (e.g. a WLAN's isconnected) is polled every base_ms
    while it is False, without spending back-off. ``on_error(exc)`` sees each
    failure. Returns session_present; backoff is reset on success.
    """
    while True:
        if network_up is not None and not network_up():
            await sleep_ms(backoff.base_ms)
            continue
        try:
            session_present = await client.connect(host, port)
            backoff.reset()
            return session_present
        except (OSError, asyncio.TimeoutError) as e:
            if on_error is not None:
                on_error(e)
        await sleep_ms(backoff.next_ms())
