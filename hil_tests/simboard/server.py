"""Serve a simulated board on a TCP port, as a serial port would serve a real one.

``SimBoard(workdir, load).start()``; ``url`` is ``socket://127.0.0.1:PORT`` (pyserial's
socket handler, which mpremote's SerialTransport accepts as a port); ``stop()``.

The board is ``micropython`` (the unix port, its REPL on a pseudo-terminal it owns
as controlling terminal, so Ctrl-C interrupts a running program exactly as on a
board) in a root directory laid out like a board's filesystem: ``firmware/`` and
``protocol/`` (.mpy from build/mpy), ``machine.py`` (simboard/machine.py: the
ATM90E26 model, emulator/atm90e26_model, on its SPI bus), ``bench.json`` (the load) and ``flash/config.json``
(the emulator's factory config, calibrated for the model's sensor errors) and a
``main.py`` as tools/deploy.py writes it (the unix port does not run it). Bytes are
relayed between the TCP client and the terminal; when the process exits
(``machine.reset()``) a new one starts, as a board reboots. Paths on it are relative
(run the board target with ``--board-flash flash --board-scratch hil``).

``python -m hil_tests.simboard.server [--watts W]`` serves one until Ctrl-C and prints
the pytest command line that tests it.
"""

import argparse
import fcntl
import json
import math
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import termios
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def _controlling_tty():
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class SimBoard:
    def __init__(self, workdir, urms=230.0, irms=5.0, phase_deg=0.0, heap="2M"):
        self.root = os.path.join(str(workdir), "simboard-fs")
        self.load = {"urms": urms, "irms": irms, "phase_deg": phase_deg}
        self.heap = heap
        self.proc = None
        self.master = None
        self.conn = None
        self.boots = 0
        self._stop = False
        self._lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.url = "socket://127.0.0.1:%d" % self.port
        self._thread = None

    @property
    def watts(self):
        return self.load["urms"] * self.load["irms"] * math.cos(math.radians(self.load["phase_deg"]))

    def _populate(self):
        from tools import emulate

        eb = emulate.emulate_bench
        emulate.ensure_mpy_tree()  # the .mpy a deploy without --frozen copies (pip's port runs them)
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(os.path.join(self.root, "flash"))
        for pkg in ("firmware", "protocol"):
            shutil.copytree(os.path.join(emulate.BUILD, pkg), os.path.join(self.root, pkg))
        shutil.copy(os.path.join(HERE, "machine.py"), self.root)
        # the simulated hardware: machine.py's chip model (host-only, emulator/), beside the board's files
        os.makedirs(os.path.join(self.root, "emulator"))
        for name in ("__init__.mpy", "atm90e26_model.mpy"):
            shutil.copy(os.path.join(emulate.BUILD, "emulator", name), os.path.join(self.root, "emulator"))
        with open(os.path.join(self.root, "main.py"), "w") as f:  # as deployed (the unix port never runs it)
            f.write("from firmware.boards import esp32\nesp32.main('flash')\n")
        from protocol import board_config as config

        cfg = eb.default_config(eb.Scenario({"frontend": "atm90e26", "segments": [{"seconds": 1}]}))
        cfg["poll_ms"] = 1000
        with open(os.path.join(self.root, "flash", "config.json"), "w") as f:
            f.write(config.to_json(cfg))
        bench = dict(
            self.load, cs=5, relay=26, meter_constant=cfg["meter_constant"], un=cfg["un"], ib=cfg["ib"]
        )
        bench["errors"] = dict(eb.SENSOR_ERRORS)
        with open(os.path.join(self.root, "bench.json"), "w") as f:
            json.dump(bench, f)

    def _spawn(self):
        from tools import emulate

        master, slave = pty.openpty()
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST  # no \n -> \r\n: the board's own line endings
        attrs[3] &= ~(termios.ECHO | termios.ECHOCTL)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.proc = subprocess.Popen(
            [emulate.micropython_exe(), "-X", "heapsize=" + self.heap],
            cwd=self.root,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=_controlling_tty,
            close_fds=True,
        )
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + 10
        while not seen.endswith(b">>> ") and time.monotonic() < deadline:  # booted: its REPL prompt
            if select.select([master], [], [], 0.1)[0]:
                seen += os.read(master, 4096)
        old, self.master = self.master, master
        if old is not None:
            os.close(old)
        self.boots += 1

    def start(self):
        self._populate()
        self._spawn()
        self._thread = threading.Thread(target=self._relay, name="simboard", daemon=True)
        self._thread.start()
        return self

    def _relay(self):
        while not self._stop:
            if self.proc.poll() is not None:  # machine.reset(): the board reboots
                self._spawn()
            fds = [self.srv, self.master] + ([self.conn] if self.conn is not None else [])
            try:
                ready, _w, _x = select.select(fds, [], [], 0.05)
            except (OSError, ValueError):
                continue
            for fd in ready:
                if fd is self.srv:
                    c, _addr = self.srv.accept()
                    if self.conn is not None:
                        self.conn.close()
                    self.conn = c
                elif fd is self.master:
                    try:
                        data = os.read(self.master, 4096)
                    except OSError:
                        data = b""  # the process went away; the next pass restarts it
                    if data and self.conn is not None:
                        try:
                            self.conn.sendall(data)
                        except OSError:
                            self.conn = None
                elif fd is self.conn:  # not one a send above found closed (and dropped) in this pass
                    try:
                        data = self.conn.recv(4096)
                    except OSError:
                        data = b""  # reset by the client: as a close
                    if not data:
                        self.conn.close()
                        self.conn = None
                    else:
                        try:
                            os.write(self.master, data)
                        except OSError:
                            pass

    def stop(self):
        self._stop = True
        if self._thread is not None:
            self._thread.join(5)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for s in (self.conn, self.srv):
            if s is not None:
                s.close()
        if self.master is not None:
            os.close(self.master)


def main(argv=None):
    import sys
    import tempfile

    sys.path.insert(0, ROOT)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--amps", type=float, default=5.0, help="load current, A (default 5)")
    p.add_argument("--volts", type=float, default=230.0, help="load voltage, V (default 230)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(0))  # stop cleanly (the finally below) on TERM too
    with tempfile.TemporaryDirectory() as d:
        b = SimBoard(d, urms=args.volts, irms=args.amps).start()
        print("simulated board on %s (%.0f W)" % (b.url, b.watts))
        print(
            "  pytest hil_tests --port %s --board esp32 --board-flash flash --board-scratch hil "
            "--ref-watts %g --ref-volts %g --ref-amps %g" % (b.url, b.watts, args.volts, args.amps)
        )
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            b.stop()


if __name__ == "__main__":
    main()
