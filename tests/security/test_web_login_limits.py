"""The dashboard's sign-in limits against a real `headend web` (a subprocess), attacked the way
the finding did it: a burst of parallel wrong-password logins, and addresses forged in
X-Forwarded-For; and the session cookie's Secure attribute behind TLS.

- 50 concurrent wrong-password logins for one user get exactly ``MAX_USER_FAILURES`` (5)
  password checks (answered 401 and logged as failed sign-ins); the other 45 are 429 with a
  Retry-After of at most ``USER_DELAY``, the password unchecked. 50 concurrent logins for 50
  names from one address get exactly ``MAX_IP_FAILURES`` (20) checks. (The limiter used to be
  read before the ~50 ms scrypt check and updated after it: 16 checks got through.)
- Without ``--trusted-proxy`` X-Forwarded-For is ignored: 20 failures under 20 forged
  addresses lock the real peer's address. With ``--trusted-proxy 127.0.0.1`` the address the
  proxy appended counts, the entries a client prepends do not, and the session row and the
  log name the forwarded address.
- Cookies are ``Secure`` with ``--behind-tls``, or with ``X-Forwarded-Proto: https`` from a
  trusted proxy only.

The delay schedule and the real user signing in once it has passed (with an injected clock)
are in ``tests/headend/test_web_auth.py``.
"""

from __future__ import annotations

import collections
import http.client
import re
import subprocess
import sys
import threading
import uuid
from urllib.parse import urlencode

import pytest

from headend.db.storage import Storage
from headend.web import auth
from headend.web.auth import hash_password
from tests.headend.broker_support import ROOT, wait_for

PASSWORD = "correct horse battery staple"
FORWARDED = "198.51.100.7"


class Web:
    """`headend web --port 0 ARGS` on a fresh database with the operator olga; stderr kept."""

    def __init__(self, tmp_path, *args: str) -> None:
        self.db = str(tmp_path / ("h-%s.db" % uuid.uuid4().hex[:8]))
        with Storage(self.db) as s:
            s.add_web_user("olga", "operator", now=0, **hash_password(PASSWORD))
        cmd = [sys.executable, "-m", "headend.cli", "web", "--port", "0", "--db", self.db, *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True).start()
        found = wait_for(
            lambda: (
                [m for line in self.lines if (m := re.search(r"listening on http://[^:]+:(\d+)/", line))]
                or self.proc.poll() is not None
            ),
            15,
            "headend web to listen",
        )
        assert self.proc.poll() is None, "".join(self.lines)
        self.port = int(found[0].group(1))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.connect()
        return conn

    def request(self, method, path, cookie=None, form=None, headers=None, conn=None):
        conn = conn or self.connect()
        hdrs = dict(headers or {})
        if cookie:
            hdrs["Cookie"] = cookie
        body = None
        if form is not None:
            body = urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, resp.headers, data

    def login_token(self, headers=None) -> str:
        _, _, body = self.request("GET", "/login", headers=headers)
        return re.search(rb'name="csrf" value="([^"]*)"', body).group(1).decode()

    def login(self, user, password, token=None, headers=None, conn=None):
        token = token or self.login_token(headers)
        form = {"csrf": token, "user": user, "password": password, "next": "/"}
        return self.request("POST", "/login", "headend_login=" + token, form, headers, conn)

    def log_lines(self, text: str) -> list[str]:
        """The log lines holding ``text``, once every line logged before this call was read
        (each line is one write: lines of concurrent requests do not interleave)."""
        marker = "/logged-%s" % uuid.uuid4().hex
        self.request("GET", marker)  # its access-log line comes after every earlier line
        wait_for(lambda: any(marker in line for line in self.lines), 10, "the log to catch up")
        lines = "".join(self.lines).splitlines()
        assert all(line.startswith("headend web: ") for line in lines), lines
        return [line for line in lines if text in line]


@pytest.fixture
def web(tmp_path):
    started: list[Web] = []

    def start(*args: str) -> Web:
        started.append(Web(tmp_path, *args))
        return started[-1]

    yield start
    for w in started:
        w.stop()


def burst(web: Web, users: list[str], headers=None) -> list:
    """One wrong-password login per name in ``users``, all sent at once (connections opened
    first, then every request released together); the responses."""
    token = web.login_token()
    conns = [web.connect() for _ in users]
    gate = threading.Barrier(len(users))
    replies: list = []
    errors: list = []

    def one(user, conn):
        try:
            gate.wait(10)
            replies.append(web.login(user, "wrong password", token, headers, conn))
        except Exception as e:  # a failed request must fail the test, not vanish
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=a) for a in zip(users, conns, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(replies) == len(users), errors
    return replies


def sessions(headers) -> list[str]:
    return [v for v in headers.get_all("Set-Cookie") or () if v.startswith("headend_session=")]


def test_a_burst_of_parallel_wrong_logins_gets_only_the_documented_password_checks(web):
    w = web()
    replies = burst(w, ["olga"] * 50)
    statuses = collections.Counter(status for status, _, _ in replies)
    assert statuses == {401: auth.MAX_USER_FAILURES, 429: 50 - auth.MAX_USER_FAILURES}, statuses
    for status, headers, body in replies:
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= auth.USER_DELAY, headers["Retry-After"]
            assert b"Too many failed sign-ins" in body and not sessions(headers)
    checked = w.log_lines("failed sign-in for 'olga'")
    assert len(checked) == auth.MAX_USER_FAILURES, checked  # every check that ran, logged
    status, headers, _ = w.login("olga", PASSWORD)  # the right password waits too: not checked
    assert status == 429 and not sessions(headers)
    assert len(w.log_lines("failed sign-in")) == auth.MAX_USER_FAILURES

    # 50 names at once from the same address: its limit holds under the same race (5 of its
    # MAX_IP_FAILURES are olga's above)
    left = auth.MAX_IP_FAILURES - auth.MAX_USER_FAILURES
    replies = burst(w, ["user%d" % i for i in range(50)])
    statuses = collections.Counter(status for status, _, _ in replies)
    assert statuses == {401: left, 429: 50 - left}, statuses
    assert len(w.log_lines("failed sign-in for 'user")) == left


def test_x_forwarded_for_is_ignored_without_a_trusted_proxy(web):
    w = web()
    for i in range(auth.MAX_IP_FAILURES):  # one attacker, a new forged address each time
        xff = {"X-Forwarded-For": "203.0.113.%d" % i}
        assert w.login("name%d" % i, "wrong", headers=xff)[0] == 401
    assert all(line.endswith("from 127.0.0.1") for line in w.log_lines("failed sign-in"))
    status, headers, _ = w.login("olga", PASSWORD, headers={"X-Forwarded-For": "203.0.113.99"})
    assert status == 429 and not sessions(headers)  # the real peer's address is the one limited


def test_x_forwarded_for_is_honoured_from_a_trusted_proxy_only(web):
    w = web("--trusted-proxy", "10.0.0.9,127.0.0.1", "--trusted-proxy", "::1")
    assert any("believed from 10.0.0.9/32, 127.0.0.1/32, ::1/128" in line for line in w.lines), w.lines
    proxy = {"X-Forwarded-For": FORWARDED}
    for i in range(auth.MAX_IP_FAILURES):
        assert w.login("name%d" % i, "wrong", headers=proxy)[0] == 401
    lines = w.log_lines("failed sign-in")
    assert len(lines) == auth.MAX_IP_FAILURES and all(line.endswith("from " + FORWARDED) for line in lines)
    assert w.login("olga", PASSWORD, headers=proxy)[0] == 429  # that client's address is limited
    # a client that sends its own X-Forwarded-For gets the proxy's address appended after it:
    # the rightmost untrusted entry counts, what the client wrote does not
    spoofed = {"X-Forwarded-For": "192.0.2.1, " + FORWARDED}
    assert w.login("olga", PASSWORD, headers=spoofed)[0] == 429
    spoofed_chain = {"X-Forwarded-For": "192.0.2.1, %s, 10.0.0.9" % FORWARDED}  # via two trusted proxies
    assert w.login("olga", PASSWORD, headers=spoofed_chain)[0] == 429
    status, headers, _ = w.login("olga", PASSWORD, headers={"X-Forwarded-For": "198.51.100.8"})
    assert status == 303 and sessions(headers)  # another client behind the same proxy is not
    with Storage(w.db) as s:
        assert [r[0] for r in s.conn.execute("SELECT ip FROM web_sessions")] == ["198.51.100.8"]


def test_session_cookies_are_secure_behind_tls(web):
    def cookies(w, headers=None):
        status, got, _ = w.request("GET", "/login", headers=headers)
        [login_cookie] = got.get_all("Set-Cookie")
        status, got, _ = w.login("olga", PASSWORD, headers=headers)
        assert status == 303
        [session] = sessions(got)
        return login_cookie, session

    https = {"X-Forwarded-Proto": "https"}
    plain = web()
    for headers in (None, https):  # not trusted: X-Forwarded-Proto is anyone's to send
        assert not any("Secure" in c for c in cookies(plain, headers))
    proxied = web("--trusted-proxy", "127.0.0.1")
    assert not any("Secure" in c for c in cookies(proxied))
    assert not any("Secure" in c for c in cookies(proxied, {"X-Forwarded-Proto": "http"}))
    for c in cookies(proxied, https):
        assert c.endswith("; Secure") and "HttpOnly" in c and "SameSite=Strict" in c, c
    tls = web("--behind-tls")
    for c in cookies(tls):
        assert c.endswith("; Secure") and "HttpOnly" in c and "SameSite=Strict" in c, c
