"""Start a real Mosquitto broker on a free loopback port (tests and the demo).

    with MosquittoBroker(tmp_path) as broker:
        broker.port  # connect here

``conf_lines`` adds configuration (password_file, acl_file, ...); without
them the broker allows anonymous clients, for tests of one layer only.
``MosquittoBroker.from_conf(path, port)`` runs a config written elsewhere
(`headend broker-config`) instead of generating one; ``start()`` returns once
every listener of that file accepts connections (``ports``).

``broker_tmpdir()`` makes a directory for `headend broker-config`'s files that
the broker can reach: started as root, Mosquitto runs as user ``mosquitto``,
which cannot traverse pytest's (or mkdtemp's) mode-0700 directories. The caller
removes it (shutil.rmtree).
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
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


def free_ports(n):
    """n distinct free loopback ports (each socket held until all are picked)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def broker_tmpdir(prefix="open-ami-broker-"):
    """A new directory under the system temp dir (/tmp, mode 1777) that any user may traverse
    (mode 0711: not list); `headend broker-config` run as root makes its out dir inside it the
    broker user's."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o711)
    return d


class MosquittoBroker:
    def __init__(self, workdir, conf_lines=(), port=None):
        self.workdir = str(workdir)
        self.conf_lines = list(conf_lines)
        self.port = port or free_port()
        self.ports = [self.port]
        self.proc = None
        self.conf = os.path.join(self.workdir, "mosquitto-%d.conf" % self.port)
        self.log = os.path.join(self.workdir, "mosquitto-%d.log" % self.port)
        self.write_conf = True

    @classmethod
    def from_conf(cls, conf, port):
        """A broker for an existing config file that listens on ``port``; log beside the config."""
        broker = cls(os.path.dirname(os.path.abspath(conf)), port=port)
        broker.conf, broker.log, broker.write_conf = conf, conf + ".log", False
        with open(conf) as f:
            listeners = [int(m.group(1)) for m in re.finditer(r"^listener\s+(\d+)", f.read(), re.M)]
        broker.ports = [port] + [p for p in listeners if p != port]
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
        waiting = list(self.ports)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: " + open(self.log).read())
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2).close()
                waiting.pop(0)
                if not waiting:
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not listen on port(s) %s" % waiting)

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
