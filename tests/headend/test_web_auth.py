"""Who gets in, and what they may do: every route without a session gets nothing, login and
its rate limit (counted before the check, a progressive per-user delay, X-Forwarded-For only
from a trusted proxy), hardened cookies, sessions that end, CSRF on every POST, viewers read only,
HTML escaping, password keys."""

import bisect
import hashlib
import json
import threading

import pytest

from headend.errors import WebUserError
from headend.web import auth
from headend.web.pages_login import safe_next
from headend.web.request import client_ip, forwarded_https, trusted_networks
from headend.web.routes import ROUTES
from tests.headend.web_support import (
    OPERATOR,
    PASSWORD,
    VIEWER,
    Client,
    Clock,
    add_user,
    build_fleet,
    csrf_of,
    new_store,
    serving,
)


@pytest.fixture
def fleet(tmp_path):
    with new_store(tmp_path / "web.db") as store:
        ids = build_fleet(store)
        clock = Clock()
        with serving(store, clock) as (base, server):
            yield store, ids, base, clock


def _example(route, ids) -> str:
    value = {"meter_id": "m1", "account_id": "P1"}
    path = route.pattern
    for name, v in value.items():
        path = path.replace("{%s}" % name, v)
    return path.replace("{id:int}", str(ids["tamper"]))


def test_every_route_without_a_session_gets_nothing(fleet):
    store, ids, base, _ = fleet
    anonymous, forged = Client(base), Client(base)
    forged.cookies["headend_session"] = "not-a-session"
    guarded = [r for r in ROUTES if r.kind != "public"]
    assert len(guarded) >= 30 and {r.kind for r in guarded} == {"page", "api"}
    extra = [("GET", "/nope", "page"), ("GET", "/api/nope", "api"), ("POST", "/api/fleet", "api")]
    for method, path, kind in [(r.method, _example(r, ids), r.kind) for r in guarded] + extra:
        for client in (anonymous, forged):
            status, headers, body = client.request(method, path, {} if method == "POST" else None)
            if kind == "api":
                assert (status, json.loads(body)) == (401, {"error": "login required"}), path
            else:
                assert status == 302 and headers["Location"].startswith("/login"), path
                assert body == b"", path
            assert "Set-Cookie" not in headers or "headend_session" not in headers["Set-Cookie"]
    assert store.alert(ids["tamper"])["state"] == "open"  # the POSTs changed nothing
    assert store.bill_by_id(ids["held"])["state"] == "held"


def test_login_starts_a_hardened_server_side_session(fleet):
    store, _, base, _ = fleet
    c = Client(base)
    status, headers, _ = c.login(next_path="/meters/m1")
    assert status == 303 and headers["Location"] == "/meters/m1"
    cookie = [v for v in headers.get_all("Set-Cookie") if v.startswith("headend_session=")][0]
    for attr in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"):
        assert attr in cookie
    token = c.cookies["headend_session"]
    assert len(token) >= 40
    rows = store.conn.execute("SELECT token_hash, user FROM web_sessions").fetchall()
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(), OPERATOR)]  # never the token itself
    status, _, body = c.get("/api/me")
    assert status == 200 and json.loads(body)["user"] == OPERATOR and json.loads(body)["role"] == "operator"
    assert c.get("/meters/m1")[0] == 200


def test_wrong_password_and_unknown_user_fail_alike(fleet):
    store, _, base, _ = fleet
    for user, password in ((OPERATOR, "wrong password"), ("nobody", PASSWORD), ("", "")):
        c = Client(base)
        status, _, body = c.login(user, password)
        assert status == 401 and b"Wrong user name or password." in body
        assert "headend_session" not in c.cookies
    assert store.conn.execute("SELECT count(*) FROM web_sessions").fetchone()[0] == 0


def test_login_needs_the_forms_own_token(fleet):
    _, _, base, _ = fleet
    c = Client(base)
    status, _, _ = c.post("/login", {"user": OPERATOR, "password": PASSWORD, "csrf": "guess"})
    assert status == 403 and "headend_session" not in c.cookies
    c.get("/login")
    status, _, _ = c.post("/login", {"user": OPERATOR, "password": PASSWORD, "csrf": "guess"})
    assert status == 403 and "headend_session" not in c.cookies


def test_repeated_failures_lock_the_user_then_the_address(fleet):
    _, _, base, clock = fleet
    c = Client(base)
    for _ in range(auth.MAX_USER_FAILURES):
        assert c.login(OPERATOR, "nope")[0] == 401
    status, headers, body = c.login(OPERATOR, PASSWORD)  # right, but locked: not even checked
    assert status == 429 and b"Too many failed sign-ins" in body and int(headers["Retry-After"]) > 0
    assert "headend_session" not in c.cookies
    assert c.login(VIEWER, PASSWORD)[0] == 303  # another user from the same address is not locked
    clock.now += auth.WINDOW + 1
    assert Client(base).login(OPERATOR, PASSWORD)[0] == 303  # the failures left the window
    for i in range(auth.MAX_IP_FAILURES):
        assert Client(base).login("user%d" % i, "nope")[0] == 401
    assert Client(base).login(VIEWER, PASSWORD)[0] == 429  # the address is locked for everyone


def test_the_real_user_gets_in_once_the_delay_passes(fleet):
    """After 5 failures each further check waits 30 s, 1, 2, 4, 8 min after the last failure
    (429 with Retry-After, password unchecked); the right password works as soon as it passed."""
    _, _, base, clock = fleet
    c = Client(base)
    for _ in range(auth.MAX_USER_FAILURES):
        assert c.login(OPERATOR, "guess")[0] == 401
    delays = []
    for delay in (30, 60, 120, 240, 480):
        status, headers, body = c.login(OPERATOR, PASSWORD)
        assert status == 429 and int(headers["Retry-After"]) == delay and b"Too many" in body
        delays.append(delay)
        clock.now += delay - 1
        status, headers, _ = c.login(OPERATOR, PASSWORD)
        assert status == 429 and headers["Retry-After"] == "1"
        clock.now += 1
        assert c.login(OPERATOR, "guess")[0] == 401  # the attacker takes this one: checked, wrong
    # 10 failures in a row: the next step (16 min) is past the window, which forgets them first
    status, headers, _ = c.login(OPERATOR, PASSWORD)
    assert status == 429 and int(headers["Retry-After"]) == auth.WINDOW
    clock.now += auth.WINDOW - 1
    assert c.login(OPERATOR, PASSWORD)[0] == 429
    clock.now += 1
    status, headers, _ = c.login(OPERATOR, PASSWORD)
    assert status == 303 and "headend_session" in c.cookies
    # a sign-in forgets the failures: the next 5 wrong passwords are checked at once again
    for _ in range(auth.MAX_USER_FAILURES):
        assert Client(base).login(OPERATOR, "guess")[0] == 401
    status, headers, _ = Client(base).login(OPERATOR, PASSWORD)
    assert status == 429 and headers["Retry-After"] == "30"
    clock.now += 30
    assert Client(base).login(OPERATOR, PASSWORD)[0] == 303


def test_parallel_logins_are_counted_before_the_password_is_checked(fleet, monkeypatch):
    _, _, base, _ = fleet
    checks, lock = [], threading.Lock()
    verify = auth.verify_password

    def counted(user, password):
        with lock:
            checks.append(password)
        return verify(user, password)

    monkeypatch.setattr(auth, "verify_password", counted)
    clients = [Client(base) for _ in range(50)]
    tokens = [csrf_of(c.get("/login")[2]) for c in clients]
    gate, replies = threading.Barrier(50), []

    def attempt(c, token):
        gate.wait(10)
        replies.append(c.post("/login", {"csrf": token, "user": OPERATOR, "password": "guess", "next": "/"}))

    threads = [threading.Thread(target=attempt, args=a) for a in zip(clients, tokens, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(checks) == auth.MAX_USER_FAILURES  # the hook: password checks that ran
    assert sorted(r[0] for r in replies) == [401] * auth.MAX_USER_FAILURES + [429] * 45


def test_at_most_max_user_checks_per_window_whatever_the_attacker_does():
    """A simulated attacker on one user name (the address limit out of the way), trying every
    `step` seconds for 4 hours or exactly when allowed: never more than MAX_USER_CHECKS password
    checks in any WINDOW, and the schedule is the documented one."""
    for step in (None, 0.5, 1, 7, 29.5, 31, 61, 450):
        limiter, now, checks = auth.RateLimiter(per_ip=10**9), 0.0, []
        while now < 4 * 3600:
            wait = limiter.begin("olga", "192.0.2.1", now)
            if wait == 0:
                checks.append(now)
            now += step or wait
        most = max(bisect.bisect_right(checks, t + auth.WINDOW) - i for i, t in enumerate(checks))
        assert most <= auth.MAX_USER_CHECKS, (step, most)
        if step is None:
            assert most == auth.MAX_USER_CHECKS
            assert checks[:11] == [0, 0, 0, 0, 0, 30, 90, 210, 450, 930, 1830]
    limiter = auth.RateLimiter()
    for _ in range(auth.MAX_USER_FAILURES):
        assert limiter.begin("olga", "192.0.2.1", 100.0) == 0
    assert limiter.begin("OLGA", "192.0.2.2", 100.0) == 30  # names are case-folded
    assert limiter.begin("olga", "192.0.2.1", 90.0) == 30  # a request that began earlier
    limiter.succeeded("olga", "192.0.2.1", 100.0)
    assert limiter.begin("olga", "192.0.2.1", 100.0) == 0


def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy():
    trusted = trusted_networks(["10.0.0.9, 10.1.0.0/16", "::1"])
    xff = "192.0.2.1, 198.51.100.7"
    assert client_ip("203.0.113.5", xff, trusted) == "203.0.113.5"  # not a proxy: ignored
    assert client_ip("203.0.113.5", xff, ()) == "203.0.113.5"
    assert client_ip("10.0.0.9", xff, trusted) == "198.51.100.7"  # the entry the proxy appended
    assert client_ip("10.0.0.9", xff + ", 10.1.2.3", trusted) == "198.51.100.7"  # two proxies
    assert client_ip("::1", "2001:db8::5", trusted) == "2001:db8::5"
    assert client_ip("::ffff:10.0.0.9", xff, trusted) == "198.51.100.7"
    assert client_ip("10.0.0.9", "192.0.2.1, junk", trusted) == "10.0.0.9"  # no address: the proxy
    assert client_ip("10.0.0.9", "10.1.0.1", trusted) == "10.1.0.1"  # only proxies: the farthest
    assert client_ip("10.0.0.9", "", trusted) == "10.0.0.9"
    assert forwarded_https("10.0.0.9", "https", trusted) and not forwarded_https(
        "203.0.113.5", "https", trusted
    )
    assert not forwarded_https("10.0.0.9", "https, http", trusted)
    with pytest.raises(ValueError, match="not an IP address or network: 'proxy.example'"):
        trusted_networks(["10.0.0.9,proxy.example"])


def test_sessions_expire_and_logout_ends_them(fleet):
    store, _, base, clock = fleet
    c = Client(base)
    c.login()
    assert c.get("/")[0] == 200
    clock.now += auth.SESSION_TTL + 1
    assert c.get("/")[0] == 302 and c.get("/api/fleet")[0] == 401
    clock.now -= auth.SESSION_TTL + 1
    c = Client(base)
    c.login()
    token = c.cookies["headend_session"]
    assert c.post("/logout", {})[0] == 403  # logging out is a POST like any other: CSRF needed
    status, headers, _ = c.post("/logout", {"csrf": c.csrf()})
    assert status == 303 and headers["Location"] == "/login" and "headend_session" not in c.cookies
    c.cookies["headend_session"] = token  # the old cookie is worth nothing now
    assert c.get("/")[0] == 302
    assert store.web_session(hashlib.sha256(token.encode()).hexdigest(), clock.now) is None


def test_post_without_or_with_a_wrong_csrf_token_is_refused(fleet):
    store, ids, base, _ = fleet
    c = Client(base)
    c.login()
    other = Client(base)
    other.login()
    path = "/alerts/%d/ack" % ids["tamper"]
    for form in (
        {"note": "x"},
        {"note": "x", "csrf": ""},
        {"note": "x", "csrf": "wrong"},
        {"note": "x", "csrf": other.csrf()},
    ):
        status, _, body = c.post(path, form)
        assert status == 403 and b"CSRF" in body, form
    assert store.alert(ids["tamper"])["state"] == "open"
    status, headers, _ = c.post(path, {"note": "seen", "csrf": c.csrf()})
    assert status == 303 and headers["Location"] == "/alerts/%d?done=acknowledged" % ids["tamper"]
    assert store.alert(ids["tamper"])["state"] == "acknowledged"
    assert store.alert_audit(ids["tamper"])[-1]["user"] == OPERATOR


def test_viewers_read_but_every_action_is_refused(fleet):
    store, ids, base, _ = fleet
    c = Client(base)
    c.login(VIEWER)
    status, _, body = c.get("/alerts/%d" % ids["tamper"])
    assert status == 200 and b'action="/alerts/' not in body  # no action forms shown
    csrf = c.csrf()
    actions = [r for r in ROUTES if r.action]
    assert {r.method for r in actions} == {"POST"} and len(actions) >= 5
    form = {"csrf": csrf, "reason": "r", "amount": "1.00", "note": "n", "findings": "f"}
    for r in actions:
        for id_ in (ids["tamper"], ids["held"], ids["work_order"]):
            status, _, body = c.post(r.example(str(id_)), form)
            assert status == 403 and b"viewers cannot change anything" in body, r.pattern
    assert store.alert(ids["tamper"])["state"] == "open"
    assert store.bill_by_id(ids["held"])["state"] == "held" and store.bill_audit(ids["held"]) == []
    assert store.work_order(ids["work_order"])["state"] == "open"


def test_values_are_escaped_in_pages(fleet):
    store, _, base, _ = fleet
    store.add_meter('<script>alert("x")</script>', "00" * 32, "$7$x", now=0)
    c = Client(base)
    c.login()
    status, headers, body = c.get("/meters")
    assert status == 200 and b'<script>alert("x")</script>' not in body
    assert b"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no scripts
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
    status, _, body = c.get("/meters/%3Cscript%3Ealert(%22x%22)%3C%2Fscript%3E")
    assert status == 200 and b"<script>" not in body


def test_the_api_never_sends_a_meters_key(fleet):
    _, _, base, _ = fleet
    c = Client(base)
    c.login()
    for path in ("/api/meters", "/api/meters/m1", "/api/fleet"):
        status, _, body = c.get(path)
        assert status == 200 and b"ab" * 32 not in body and b"mqtt_password_hash" not in body


def test_next_after_login_stays_on_this_site():
    for bad in (
        "//evil.example",
        "/\\evil.example",
        "http://evil.example/",
        "",
        None,
        "javascript:x",
        "/a b",
    ):
        assert safe_next(bad) == "/"
    assert safe_next("/meters/m1?day=2024-03-16") == "/meters/m1?day=2024-03-16"


def test_passwords_are_kept_as_salted_scrypt_keys(tmp_path):
    with new_store(tmp_path / "u.db") as store:
        add_user(store, "ann", "operator")
        add_user(store, "bob", "viewer")
        ann, bob = store.web_user("ann"), store.web_user("bob")
        assert ann["kdf"] == "scrypt:n=16384,r=8,p=1" and ann["salt"] != bob["salt"]
        assert ann["password_hash"] != bob["password_hash"]  # same password, other salt
        assert PASSWORD.encode().hex() not in json.dumps(ann) and PASSWORD not in json.dumps(ann)
        assert auth.verify_password(ann, PASSWORD) and not auth.verify_password(ann, PASSWORD + "x")
        assert not auth.verify_password(None, PASSWORD)
        with pytest.raises(WebUserError, match="already exists"):
            add_user(store, "ann", "viewer")
    for name, role, pw in (
        ("", "operator", PASSWORD),
        ("a b", "operator", PASSWORD),
        ("x", "admin", PASSWORD),
        ("x", "viewer", "short"),
    ):
        with pytest.raises(auth.AuthError):
            auth.check_new_user(name, role, pw)
