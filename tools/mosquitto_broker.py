"""Start a real Mosquitto broker on a free loopback port (tests and the demo).

    with MosquittoBroker(tmp_path) as broker:
        broker.port  # connect here

``conf_lines`` adds configuration (password_file, acl_file, ...); without
them the broker allows anonymous clients, for tests of one layer only.
``MosquittoBroker.from_conf(path, port)`` runs a config written elsewhere
(`headend broker-config`) instead of generating one.
"""

import os
import shutil
import socket
import subprocess
import time


def find_mosquitto():
    exe = shutil.which("mosquitto")
    if exe:
        return exe
    for d in ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"):
        if os.path.exists(os.path.join(d, "mosquitto")):
            return os.path.join(d, "mosquitto")
    raise RuntimeError("mosquitto not found: run `make mosquitto` (tools/ensure_mosquitto.sh)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MosquittoBroker:
    def __init__(self, workdir, conf_lines=(), port=None):
        self.workdir = str(workdir)
        self.conf_lines = list(conf_lines)
        self.port = port or free_port()
        self.proc = None
        self.conf = os.path.join(self.workdir, "mosquitto-%d.conf" % self.port)
        self.log = os.path.join(self.workdir, "mosquitto-%d.log" % self.port)
        self.write_conf = True

    @classmethod
    def from_conf(cls, conf, port):
        """A broker for an existing config file that listens on ``port``; log beside the config."""
        broker = cls(os.path.dirname(os.path.abspath(conf)), port=port)
        broker.conf, broker.log, broker.write_conf = conf, conf + ".log", False
        return broker

    def start(self):
        if self.write_conf:
            lines = ["listener %d 127.0.0.1" % self.port, "persistence false"]
            if not any(line.startswith(("password_file", "allow_anonymous")) for line in self.conf_lines):
                lines.append("allow_anonymous true")
            lines += self.conf_lines
            with open(self.conf, "w") as f:
                f.write("\n".join(lines) + "\n")
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", self.conf], stdout=self._logf, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: " + open(self.log).read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not listen on port %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._logf.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
