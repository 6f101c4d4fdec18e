"""The dashboard (`headend web`, a real subprocess) without a session: every route of
headend.web.routes.ROUTES but the login form answers 302 to /login (pages) or 401 (/api) and
shows no data, whatever session cookie is forged; actions change nothing; a login by SQL
injection fails; the login's ``next`` never leads off the site.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
from urllib.parse import urlencode

import pytest

from headend.db.storage import Storage
from headend.web.auth import hash_password
from headend.web.routes import ROUTES
from tests.headend.alerts_support import NOW, H, add_event, hourly, run
from tests.headend.broker_support import ROOT, wait_for
from tests.headend.prepaid_support import TARIFF

SECRETS = (b"m-secret-77", b"ACC-SECRET", b"Secret Name", b"7 Hidden Lane")
PASSWORD = "correct horse battery staple"
FORGED_COOKIES = [
    None,
    "headend_session=" + "A" * 43,
    "headend_session=x' OR '1'='1",
    "headend_session=; headend_session=..",
    'headend_session="\\"; other=1',
]


@pytest.fixture
def web(tmp_path):
    db = str(tmp_path / "h.db")
    with Storage(db) as s:
        s.add_meter("m-secret-77", "00" * 32, "$7$x", now=0)
        s.add_tariff("t-1", "t", TARIFF)
        account = {
            "account_id": "ACC-SECRET",
            "name": "Secret Name",
            "address": "7 Hidden Lane",
            "zone": "Z",
            "zone_kind": "regular",
            "billing": "prepaid",
            "tariff_id": "t-1",
        }
        s.add_account(account, "m-secret-77", 0)
        s.set_online("m-secret-77", True, NOW - 60, seq=1, fields={"fw": "1.0"})
        hourly(s, "m-secret-77")
        add_event(s, "m-secret-77", 5000, NOW - H, 17)  # a bypass: an alert and a work order
        run(s)
        s.add_web_user("olga", "operator", now=0, **hash_password(PASSWORD))
        alert_ids = [a["id"] for a in s.alerts()]
    cmd = [sys.executable, "-m", "headend.cli", "web", "--port", "0", "--db", db]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    try:
        found = wait_for(
            lambda: [m for line in lines if (m := re.search(r"http://[^:]+:(\d+)/", line))],
            15,
            "headend web to listen",
        )
        yield {"port": int(found[0].group(1)), "db": db, "alerts": alert_ids, "lines": lines}
    finally:
        proc.terminate()
        proc.wait(10)


def request(port: int, method: str, path: str, cookie: str | None = None, form: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Cookie": cookie} if cookie else {}
    body = None
    if form is not None:
        body = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.headers, data


def concrete(route, ids) -> str:
    values = {"meter_id": "m-secret-77", "account_id": "ACC-SECRET", "id": str(ids[0])}
    return re.sub(r"\{([a-z_]+)(?::int)?\}", lambda m: values[m.group(1)], route.pattern)


def test_every_route_without_a_session_is_302_or_401_and_shows_nothing(web):
    protected = [r for r in ROUTES if r.kind != "public"]
    assert len(protected) >= 20 and any(r.kind == "api" for r in protected)
    paths = [(r, concrete(r, web["alerts"])) for r in protected]
    paths += [
        (None, p) for p in ("/api/meters/..%2f..%2fetc", "/api", "/nope", "//evil.example/x", "/api/x?y=1")
    ]
    for route, path in paths:
        for cookie in FORGED_COOKIES:
            form = (
                {"csrf": "x", "note": "n", "reason": "r", "amount": "1"}
                if route and route.method == "POST"
                else None
            )
            method = route.method if route else "GET"
            status, headers, body = request(web["port"], method, path, cookie, form)
            api = path.startswith("/api")
            if api:
                assert status == 401 and json.loads(body) == {"error": "login required"}, (
                    path,
                    cookie,
                    body[:80],
                )
            else:
                assert status == 302 and headers["Location"].startswith("/login"), (path, cookie, status)
                assert body == b"", (path, body[:80])
            assert not any(s in body for s in SECRETS)
            assert not sessions(headers)
    with Storage(web["db"]) as s:  # the POSTs (ack, resolve, close, approve...) changed nothing
        assert {a["state"] for a in s.alerts()} == {"open"}
        assert {w["state"] for w in s.work_orders()} == {"open"}


def sessions(headers) -> list[str]:
    """The session cookies a response sets (not the ones it deletes)."""
    return [
        v
        for v in headers.get_all("Set-Cookie") or ()
        if v.startswith("headend_session=") and "Max-Age=0" not in v
    ]


def login(port: int, user: str, password: str, next_path: str = "/"):
    _, headers, body = request(port, "GET", "/login")
    token = re.search(rb'name="csrf" value="([^"]*)"', body).group(1).decode()
    cookie = "headend_login=" + token
    return request(
        port, "POST", "/login", cookie, {"csrf": token, "user": user, "password": password, "next": next_path}
    )


def test_sql_injection_logins_fail_and_next_stays_on_the_site(web):
    for target in ("//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)"):
        status, headers, _ = login(web["port"], "olga", PASSWORD, target)
        assert status in (302, 303) and headers["Location"] == "/", (target, headers["Location"])
        assert sessions(headers), "a good login starts a session"
    tries = [
        ("' OR '1'='1' --", "x"),
        ("olga' --", ""),
        ("olga", "' OR '1'='1"),
        ("olga\x00", PASSWORD),
        ("OLGA", PASSWORD),
        ("olga'; UPDATE web_users SET role='operator';--", PASSWORD),
    ]
    for user, password in tries:
        status, headers, body = login(web["port"], user, password)
        assert status in (401, 429), (user, status)
        assert not sessions(headers), user
