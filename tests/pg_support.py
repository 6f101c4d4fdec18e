"""PostgreSQL for the tests: one database per test session, one schema per test.

The server: the one at 127.0.0.1:5432 when it answers (trust auth, user postgres: what this
kind of machine and CI start), else a private cluster (Debian's ``initdb`` + ``pg_ctl`` in a
temporary directory, on a free loopback port; ``make test`` installs the package when it is
missing: tools/ensure_postgresql.sh). The session creates ``openami_test_<random>`` and drops
it at the end; each test gets a schema of its own in it (``search_path`` in the URL), so tests
never see each other's rows. Only when neither server is possible are the PostgreSQL cases
skipped, saying why.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse

SERVER = os.environ.get("OPENAMI_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _answers(url: str) -> bool:
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=3).close()
        return True
    except Exception:
        return False


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name), key=lambda p: int(p.split("/")[4]))
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """initdb + pg_ctl in a temporary directory, trust auth, on a free port."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise RuntimeError("no initdb/pg_ctl (Debian's postgresql package: tools/ensure_postgresql.sh)")
        self.dir = tempfile.mkdtemp(prefix="openami-pg-")
        self.port = _free_port()
        self.user = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: as user postgres
            self.user = "postgres"
            shutil.chown(self.dir, "postgres")

    def _run(self, *argv) -> None:
        cmd = list(argv)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> str:
        data = os.path.join(self.dir, "data")
        self._run(self.initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = "-c listen_addresses=127.0.0.1 -c port=%d -k %s -c fsync=off" % (self.port, self.dir)
        self._run(self.pg_ctl, "-D", data, "-o", opts, "-w", "-l", os.path.join(self.dir, "log"), "start")
        return "postgresql://postgres@127.0.0.1:%d/postgres" % self.port

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", os.path.join(self.dir, "data"), "-m", "immediate", "stop")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class SessionDatabase:
    """``openami_test_<random>`` on a server that answers (or a private cluster)."""

    def __init__(self) -> None:
        self.cluster: PrivateCluster | None = None
        self.admin_url: str | None = None
        self.url: str | None = None
        self.why_not: str | None = None

    def start(self) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            self.why_not = "psycopg is not installed (pip install 'psycopg[binary]')"
            return
        if _answers(SERVER):
            self.admin_url = SERVER
        else:
            try:
                self.cluster = PrivateCluster()
                self.admin_url = self.cluster.start()
            except Exception as e:
                self.why_not = "no PostgreSQL at %s and no private cluster: %s" % (SERVER, e)
                return
        import psycopg

        name = "openami_test_%s" % secrets.token_hex(6)
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute('CREATE DATABASE "%s"' % name)
        self.name = name
        parts = urllib.parse.urlsplit(self.admin_url)
        self.url = urllib.parse.urlunsplit(parts._replace(path="/" + name))

    def schema_url(self, schema: str) -> str:
        """A URL whose connections work in ``schema`` (created here)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            c.execute('CREATE SCHEMA "%s"' % schema)
        sep = "&" if "?" in self.url else "?"
        return self.url + sep + "options=" + urllib.parse.quote("-csearch_path=%s" % schema)

    def stop(self) -> None:
        if self.url:
            import psycopg

            for _ in range(3):
                try:
                    with psycopg.connect(self.admin_url, autocommit=True) as c:
                        c.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.name)
                    break
                except Exception:
                    time.sleep(0.5)
        if self.cluster:
            self.cluster.stop()
