"""`headend console --broker URL --db FILE` as a real subprocess against a real Mosquitto: a meter
publishes signed frames (built with the independent `cwt` package), the console prints them
decoded, shows a forged one as unverified, and a command typed on its stdin reaches the meter's
down topic sealed with the meter's key; the meter's ack shows up in the stream. Once in line
mode (stdout a pipe) and once full screen on a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

from headend.db.storage import Storage
from protocol import commands, messages, topics
from tests.headend.broker_support import (
    ROOT,
    MeterClient,
    cli_json,
    cwt_frame,
    reading_map,
    start_broker,
    wait_for,
)

TS = 1714521600  # 2024-05-01T00:00:00Z
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>78]")


@pytest.fixture
def rig(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "h.db")
    meter = cli_json(capsys, "--db", db, "meter", "add", "m1")
    with Storage(db) as store:
        store.insert_alert({"rule": "tamper", "meter_id": "m1", "key": "cover", "severity": "critical",
                            "state": "open", "summary": "terminal cover opened", "action": "inspect",
                            "evidence": {}, "first_seen": TS, "last_seen": TS, "updated_at": TS})  # fmt: skip
    broker, url = start_broker(capsys, db, str(broker_tmp / "broker"))
    m1 = MeterClient("m1", meter["mqtt_password"], broker.port)
    m1.client.subscribe(topics.meter_down_filter("m1"), qos=1)
    wait_for(lambda: m1.subacks, 10, "the meter's SUBACK")
    try:
        yield {"db": db, "url": url, "key": bytes.fromhex(meter["key"]), "meter": m1,
               "headend_port": broker.headend_port}  # fmt: skip
    finally:
        m1.close()
        broker.stop()


class Console:
    """`headend console` with its stdout a pipe (line mode), stdin ours."""

    def __init__(self, *argv: str) -> None:
        cmd = [sys.executable, "-m", "headend.cli", "console", *argv]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def wait_line(self, *parts: str, timeout: float = 15) -> str:
        def found():
            return next((ln for ln in list(self.lines) if all(p in ln for p in parts)), None)

        try:
            return wait_for(found, timeout, "a console line with %r" % (parts,))
        except AssertionError:
            raise AssertionError("no line with %r in:\n%s" % (parts, "".join(self.lines)))

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def publish(rig, kind: str, msg: dict, key: bytes | None = None) -> None:
    frame = cwt_frame(key or rig["key"], "m1", msg)
    rig["meter"].publish(topics.up("m1", kind), frame).wait_for_publish(10)


def test_line_mode_shows_the_stream_and_sends_commands(rig):
    c = Console("--broker", rig["url"], "--db", rig["db"])
    try:
        c.wait_line("subscribed to ami/v1/+/up/#")
        c.wait_line("alert #1 open critical tamper m1: terminal cover opened")
        reading = reading_map(1, TS, 12345)
        reading[8] = 5250
        publish(rig, "reading", reading)
        line = c.wait_line(" m1 reading seq 1 at 2024-05-01 00:00:00Z")
        assert "imp 12.345 kWh  exp 0.000 kWh  P 230 W  balance 5.250  flags none" in line
        publish(rig, "event", {0: 2, 1: 2, 2: TS, 10: messages.EVT_TAMPER_MAGNETIC})
        c.wait_line(" m1 event seq 2 ", "event magnetic tamper  code 4")
        publish(rig, "reading", reading_map(3, TS, 99999), key=bytes(32))  # forged
        line = c.wait_line(" m1 UNVERIFIED reading refused (tag)")
        assert "99.999" not in "".join(c.lines)
        rig["meter"].publish(topics.up("m1", "status"), topics.will_payload(), retain=True).wait_for_publish(
            10
        )
        c.wait_line(" m1 status offline (unsigned will)")

        c.type("relay m1 open")
        c.wait_line("queued command 1 to m1: seq 1 relay")
        c.wait_line("published: sent 1")
        got = wait_for(lambda: rig["meter"].received, 10, "the command on the meter's down topic")
        topic, frame = got[0]
        assert topic == "ami/v1/m1/down/cmd"
        msg = messages.open_frame(rig["key"], "m1", frame)  # verifies with the meter's key
        assert (msg["type"], msg["seq"], msg["cmd"]) == (messages.TYPE_COMMAND, 1, messages.CMD_RELAY)
        assert commands.command_args(msg["cmd"], msg["args"])["state"] == commands.RELAY_OPEN
        assert msg["args"][0] == 0

        publish(rig, "ack", {0: 3, 1: 4, 2: TS, 30: msg["seq"], 31: messages.ACK_DONE})
        c.wait_line(" m1 ack seq 4 ", "cmd seq 1  result done")

        c.type("filter m2")
        c.wait_line("showing only m2")
        publish(rig, "event", {0: 2, 1: 5, 2: TS, 10: messages.EVT_POWER_UP})
        time.sleep(0.5)  # loopback delivery takes milliseconds: a shown m1 line would be here by now
        c.type("relay m1 ajar")
        c.wait_line("error: relay: 'ajar': the relay state must be open or close")
        assert not any(" m1 event seq 5 " in ln for ln in c.lines)  # filtered out
        c.type("quit")
        assert c.proc.wait(10) == 0, c.proc.stderr.read()
    finally:
        c.close()


def test_a_refusing_broker_is_an_error(rig):
    url = "mqtt://headend.ingest:wrong@127.0.0.1:%d" % rig["headend_port"]
    p = subprocess.run([sys.executable, "-m", "headend.cli", "console", "--broker", url, "--db", rig["db"]],
                       cwd=ROOT, input="", capture_output=True, text=True, timeout=30)  # fmt: skip
    assert p.returncode == 1
    assert "error: broker refused the connection" in p.stderr


def test_full_screen_on_a_terminal(rig):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    cmd = [sys.executable, "-m", "headend.cli", "console", "--broker", rig["url"], "--db", rig["db"]]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    screen = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    threading.Thread(target=read, daemon=True).start()

    def seen(text: str):
        return lambda: text in ANSI.sub("", screen.decode("utf-8", "replace"))

    try:
        wait_for(seen("subscribed to ami/v1/+/up/#"), 15, "the console to subscribe")
        assert seen("open alerts (1)")() and seen("terminal cover opened")()
        publish(rig, "reading", reading_map(1, TS, 12345))
        wait_for(seen("imp 12.345 kWh"), 15, "the reading on screen")
        os.write(master, b"read-now m1\r")
        got = wait_for(lambda: rig["meter"].received, 10, "the command on the meter's down topic")
        msg = messages.open_frame(rig["key"], "m1", got[0][1])
        assert msg["cmd"] == messages.CMD_READ_NOW
        wait_for(seen("published: sent 1"), 10, "the result in the notes")
        os.write(master, b"quit\r")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
