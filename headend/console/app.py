"""The console's I/O loop: a paho client thread, an input thread, and the main thread drawing.

``ConsoleApp(store, broker_url, meter=None, client_id=None, out=sys.stdout, inp=sys.stdin,
live=None).run() -> 0`` connects with its own client id (``headend.console.<random>``, a clean
session: a viewer keeps nothing at the broker), subscribes to ``ami/v1/+/up/#`` QoS 1 and
shows every message decoded (``headend.console.decode``) with the keys from the database
(reloaded every ``KEY_RELOAD_S``), plus the active alerts (re-read every ``alerts_every`` s).

Everything the threads receive goes through one queue to the main thread, the only one that
touches the database and the screen. Input lines become actions (``headend.console.commands``);
a command is queued (``headend.console.actions``) and then published at once by a dispatcher
round (``headend.commands.dispatch.Dispatcher``, its own connection ``<client id>-cmd``, made
on first use), so the meter's ack shows up in the stream. If the broker cannot be reached
then, the command stays queued for ``headend dispatch``.

Display: ``live`` (default: stdout is a terminal) draws ``view.screen`` with
``rich.live.Live`` on the alternate screen; a terminal stdin is then read key by key (no
echo; Enter runs the line, Backspace, Ctrl-U, Up/Down for history, Ctrl-D on an empty line
quits). Otherwise every message, alert change and command result is one plain line on
stdout (``view.plain_*``) and stdin is read line by line. ``quit``, end of input, SIGINT or
SIGTERM end the console with 0; a broker that refuses the connection raises ``ServiceError``.
"""

from __future__ import annotations

import os
import queue
import secrets
import select
import signal
import sqlite3
import sys
import threading
import time
from contextlib import nullcontext

from rich.console import Console
from rich.live import Live

from headend.console.actions import queue_action
from headend.console.commands import parse_line
from headend.console.decode import decode
from headend.console.state import ConsoleState
from headend.console.view import help_lines, plain_alert, plain_note, plain_row, screen
from headend.errors import ConsoleError, HeadendError, ServiceError
from headend.mqtt import check_service_client_id, connect_error, make_client, parse_broker_url
from protocol import topics

KEY_RELOAD_S = 5.0  # meters provisioned while the console runs become verifiable within this
ALERTS_EVERY_S = 5.0
CONNECT_TIMEOUT_S = 10.0
DRAW_EVERY_S = 0.1  # at most this often on news
REDRAW_S = 1.0  # at least this often (terminal resizes)
HISTORY = 100  # input lines kept for Up/Down
QUEUE_ERRORS = (ValueError, HeadendError, OSError, sqlite3.Error)


class ConsoleApp:
    def __init__(
        self,
        store,
        broker_url: str,
        meter: str | None = None,
        client_id: str | None = None,
        out=None,
        inp=None,
        live: bool | None = None,
        alerts_every: float = ALERTS_EVERY_S,
    ) -> None:
        if meter is not None and not topics.meter_id_valid(meter):
            raise ConsoleError("--meter %r is not a meter id (1-32 characters of A-Z a-z 0-9 _ -)" % meter)
        if alerts_every <= 0:
            raise ConsoleError("the alerts refresh interval must be > 0 s, got %r" % alerts_every)
        self.store = store
        self.url = broker_url
        self.broker = parse_broker_url(broker_url)
        self.client_id = client_id or "headend.console." + secrets.token_hex(4)
        check_service_client_id(self.client_id)
        self.out = out or sys.stdout
        self.inp = inp or sys.stdin
        self.live = self.out.isatty() if live is None else live
        self.alerts_every = alerts_every
        self.state = ConsoleState(
            broker="%s:%d" % (self.broker["host"], self.broker["port"]), client_id=self.client_id,
            meter_filter=meter,
        )  # fmt: skip
        self.keys = store.meter_keys()
        self.events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.fatal: str | None = None
        self._dispatcher = None
        self._history: list[str] = []
        self._hpos = 0
        self._esc = 0
        self._dirty = True
        self._alerts_read = False
        self._answered = False  # the broker has accepted or refused our CONNECT
        self._eof_deadline: float | None = None
        self.client = make_client(self.broker, self.client_id, clean_session=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # ------------------------------------------------------------ paho callbacks (paho's thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.events.put(("refused", str(reason_code)))
            return
        client.subscribe(topics.HEADEND_UP_FILTER, qos=topics.QOS)
        self.events.put(("connected", None))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.events.put(("subscribed", [str(c) for c in reason_codes if c.is_failure]))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.events.put(("disconnected", str(reason_code)))

    def _on_message(self, client, userdata, message) -> None:
        try:
            row = decode(message.topic, message.payload, self.keys, time.time())
        except Exception as e:  # never lose the thread to one odd message
            self.events.put(("note", ("error", "cannot show a message on %r: %s" % (message.topic, e))))
            return
        self.events.put(("row", row))

    # ------------------------------------------------------------ input (the input thread)

    def _read_lines(self) -> None:
        while not self._stop.is_set():
            line = self.inp.readline()
            if not line:
                self.events.put(("eof", None))
                return
            self.events.put(("line", line.rstrip("\r\n")))

    def _read_keys(self, fd: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                data = os.read(fd, 1024)
                if not data:
                    self.events.put(("eof", None))
                    return
                self.events.put(("keys", data.decode("utf-8", "replace")))

    # ------------------------------------------------------------ main thread

    def stop(self) -> None:
        self._stop.set()

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _note(self, level: str, text: str) -> None:
        self.state.note(level, text)
        if not self.live:
            self._say(plain_note(level, text))

    def _connect(self) -> None:
        try:
            self.client.connect(self.broker["host"], self.broker["port"], keepalive=60)
        except OSError as e:
            raise ServiceError(
                "cannot reach the broker at %s: %s"
                % (self.state.broker, connect_error(e, self.broker["tls"]))
            )
        self.client.loop_start()

    def refresh_alerts(self) -> None:
        try:
            alerts = self.store.active_alerts()
        except sqlite3.Error as e:
            self.state.alerts_error = str(e)
            return
        first, self._alerts_read = not self._alerts_read, True
        self.state.alerts_error = None
        changes = self.state.alert_changes(alerts)
        if not self.live:
            if first and not self.state.visible_alerts():
                self._say("no open alerts")
            for change, a in changes:
                if self.state.shows(a["meter_id"]):
                    self._say(plain_alert(change, a))
        self._dirty = self._dirty or bool(changes)

    def handle_event(self, kind: str, value) -> None:
        """One thing from the threads: a row, an input line or keys, a connection change."""
        self._dirty = True
        if kind == "row":
            if self.state.add_row(value) and not self.live:
                self._say(plain_row(value))
        elif kind == "line":
            self.handle_line(value)
        elif kind == "keys":
            self._keys(value)
        elif kind == "connected":
            self._answered = True
            self.state.connected = True
            self._note("ok", "connected to %s as %s" % (self.state.broker, self.client_id))
        elif kind == "subscribed":
            if value:
                self._note("error", "the broker refused the subscription to %s: %s"
                           % (topics.HEADEND_UP_FILTER, ", ".join(value)))  # fmt: skip
            else:
                self._note("ok", "subscribed to %s" % topics.HEADEND_UP_FILTER)
        elif kind == "disconnected":
            if not self._stop.is_set():
                self.state.connected = False
                if not self._answered and not self.broker["tls"]:  # closed before any CONNACK
                    value += ", before any answer: a TLS listener? then use mqtts:// and --cafile"
                self._note("warn", "disconnected (%s); reconnecting" % value)
        elif kind == "refused":
            self._answered = True
            self.fatal = "broker refused the connection: %s" % value
            self.stop()
        elif kind == "note":
            self._note(*value)
        elif kind == "eof":
            # Input can end before the broker has answered our CONNECT (``console < /dev/null``):
            # wait for its answer, so a refusal is still reported as an error, not an exit 0.
            if self._answered:
                self.stop()
            else:
                self._eof_deadline = time.monotonic() + CONNECT_TIMEOUT_S
        if self._eof_deadline is not None and self._answered:
            self.stop()

    def handle_line(self, line: str) -> None:
        """Run one input line: a command, filter, help or quit."""
        if not self.live and line.strip():
            self._say("> " + line.strip())
        try:
            action = parse_line(line, time.time())
        except ConsoleError as e:
            self._note("error", str(e))
            return
        if action is None:
            return
        self.state.show_help = False
        if action.verb == "quit":
            self.stop()
        elif action.verb == "help":
            self.state.show_help = True
            if not self.live:
                for text in help_lines():
                    self._say(text)
        elif action.verb == "filter":
            self._filter(action.meter_id)
        else:
            self._send(action)

    def _filter(self, meter_id: str | None) -> None:
        self.state.meter_filter = meter_id
        known = meter_id is None or meter_id in self.keys
        self._note("ok" if known else "warn", "showing %s%s" % (
            "all meters" if meter_id is None else "only " + meter_id,
            "" if known else " (not a registered meter: its frames cannot verify)"))  # fmt: skip
        if not self.live:
            alerts = self.state.visible_alerts()
            self._say("open alerts: %d" % len(alerts))
            for a in alerts:
                self._say(plain_alert(a["state"], a))

    def _send(self, action) -> None:
        try:
            got = queue_action(self.store, action, time.time())
        except QUEUE_ERRORS as e:
            self._note("error", "%s %s not queued: %s" % (action.verb, action.meter_id, e))
            return
        self._note("ok", got["text"])
        for n in got["notes"]:
            self._note("info", "note: " + n)
        try:
            if self._dispatcher is None:
                from headend.commands.dispatch import Dispatcher

                d = Dispatcher(self.store, self.url, client_id=self.client_id + "-cmd",
                               log=lambda text: self._note("info", "dispatch: " + text))  # fmt: skip
                d.connect(CONNECT_TIMEOUT_S)
                self._dispatcher = d
            r = self._dispatcher.round(time.time())
        except QUEUE_ERRORS as e:
            self._note("error", "queued but not published now (%s); `headend dispatch` will deliver it" % e)
            return
        text = "published: sent %(sent)d, acked %(acked)d, failed %(failed)d, expired %(expired)d" % r
        self._note("ok" if r["sent"] else "warn", text)

    def _keys(self, data: str) -> None:
        s = self.state
        for ch in data:
            if self._esc:
                if self._esc == 1 and ch in "[O":
                    self._esc = 2
                    continue
                self._esc = 0
                if ch in "AB" and self._history:
                    step = -1 if ch == "A" else 1
                    self._hpos = max(0, min(len(self._history), self._hpos + step))
                    s.input_buffer = self._history[self._hpos] if self._hpos < len(self._history) else ""
                continue
            if ch in "\r\n":
                line, s.input_buffer = s.input_buffer, ""
                if line.strip():
                    self._history = (self._history + [line])[-HISTORY:]
                self._hpos = len(self._history)
                self.handle_line(line)
            elif ch in "\x7f\x08":
                s.input_buffer = s.input_buffer[:-1]
            elif ch == "\x15":
                s.input_buffer = ""
            elif ch == "\x04":
                if not s.input_buffer:
                    self.stop()
            elif ch == "\x1b":
                self._esc = 1
            elif ch.isprintable():
                s.input_buffer += ch

    def _pump(self, timeout: float) -> None:
        try:
            kind, value = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        self.handle_event(kind, value)
        for _ in range(1000):  # whatever else is waiting, then draw once
            if self._stop.is_set():
                return
            try:
                kind, value = self.events.get_nowait()
            except queue.Empty:
                return
            self.handle_event(kind, value)

    def _start_input(self) -> object | None:
        """Start the input thread; the terminal's old settings if it went into key mode."""
        fd, old = None, None
        if self.live:
            try:
                fd = self.inp.fileno()
                if not os.isatty(fd):
                    fd = None
            except (AttributeError, OSError, ValueError):
                fd = None
        if fd is not None:
            import termios
            import tty

            old = termios.tcgetattr(fd)
            tty.setcbreak(fd)  # keys one by one, no echo; Ctrl-C still interrupts
            target, args = self._read_keys, (fd,)
        else:
            self.state.input_hint = "(commands are read from stdin)" if self.live else ""
            target, args = self._read_lines, ()
        threading.Thread(target=target, args=args, name="console-input", daemon=True).start()
        return old

    def run(self) -> int:
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self.stop())
        term = None
        console = Console(file=self.out) if self.live else None
        try:
            self._connect()
            term = self._start_input()
            self.refresh_alerts()
            display = Live(console=console, screen=True, auto_refresh=False) if self.live else nullcontext()
            with display as live:
                self._loop(live, console)
        finally:
            self._stop.set()
            if term is not None:
                import termios

                termios.tcsetattr(self.inp.fileno(), termios.TCSADRAIN, term)
            self.client.disconnect()
            self.client.loop_stop()
            if self._dispatcher is not None:
                self._dispatcher.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.fatal:
            raise ServiceError(self.fatal)
        return 0

    def _loop(self, live, console) -> None:
        now = time.monotonic()
        next_alerts, next_keys, drawn = now + self.alerts_every, now + KEY_RELOAD_S, 0.0
        while not self._stop.is_set():
            self._pump(DRAW_EVERY_S)
            now = time.monotonic()
            if self._eof_deadline is not None and now >= self._eof_deadline and not self._stop.is_set():
                self.fatal = "the broker at %s did not answer within %.0f s" % (
                    self.state.broker,
                    CONNECT_TIMEOUT_S,
                )
                self.stop()
            if now >= next_alerts:
                self.refresh_alerts()
                next_alerts = now + self.alerts_every
            if now >= next_keys:
                try:
                    self.keys = self.store.meter_keys()
                except sqlite3.Error as e:
                    self._note("error", "cannot reload meter keys: %s" % e)
                next_keys = now + KEY_RELOAD_S
            if live is not None and (
                (self._dirty and now - drawn >= DRAW_EVERY_S) or now - drawn >= REDRAW_S
            ):
                live.update(screen(self.state, console.size.height, console.size.width), refresh=True)
                self._dirty, drawn = False, now
