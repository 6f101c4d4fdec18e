"""Signing in and out.

``GET /login`` shows the form with a one-time login token, also set as the short-lived
``headend_login`` cookie (HttpOnly, SameSite=Strict): ``POST /login`` needs both to match
(compare_digest), so no other site can sign a browser in. Each password check is counted
before it runs (``auth.RateLimiter.begin``); when the user name must wait (the progressive
delay after 5 failures) or the address has failed too often it answers 429 with
``Retry-After`` without checking the password. A good password starts a server-side session
(``auth.start_session``): the ``headend_session`` cookie is HttpOnly, SameSite=Strict, Path=/,
with the session's lifetime, and ``Secure`` when the dashboard is served over TLS
(``req.secure``: ``headend web --behind-tls``, or ``X-Forwarded-Proto: https`` from a trusted
proxy). ``POST /logout`` (CSRF checked like every POST) deletes the session and the cookie.
"""

from __future__ import annotations

import math
import re

from headend.web import auth
from headend.web.layout import Markup, esc
from headend.web.request import Request, Response, page, redirect

SESSION_COOKIE = "headend_session"
LOGIN_COOKIE = "headend_login"
LOGIN_TTL = 900
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_LOCAL = re.compile(r"^/(?![/\\])[\x21-\x7e]*$")


def safe_next(target: str | None) -> str:
    """A local path to go to after login (never another site: //host, /\\host, scheme:)."""
    return target if target and _LOCAL.match(target) else "/"


def cookie(name: str, value: str, max_age: int, secure: bool = False) -> tuple[str, str]:
    attrs = "Path=/; HttpOnly; SameSite=Strict; Max-Age=%d%s" % (max_age, "; Secure" if secure else "")
    return ("Set-Cookie", "%s=%s; %s" % (name, value, attrs))


def _later(wait: float) -> str:
    return "%d seconds" % math.ceil(wait) if wait < 120 else "%d minutes" % math.ceil(wait / 60)


def _form(req: Request, next_path: str, error: str = "", status: int = 200, user: str = "") -> Response:
    # keep the browser's token while it lasts: a second tab (or a stray request redirected
    # here) must not invalidate the form already on screen
    token = req.cookies.get(LOGIN_COOKIE, "")
    if not _TOKEN.match(token):
        token = auth.new_token()
    body = Markup(
        '<div class="login"><h1>Sign in</h1>%s'
        '<form class="act" method="post" action="/login" id="login">'
        '<input type="hidden" name="csrf" value="%s"><input type="hidden" name="next" value="%s">'
        '<label>User<br><input type="text" name="user" value="%s" autocomplete="username" required></label>'
        '<label>Password<br><input type="password" name="password" autocomplete="current-password"'
        ' required></label><button type="submit">Sign in</button></form></div>'
        % ('<p class="error">%s</p>' % esc(error) if error else "", esc(token), esc(next_path), esc(user))
    )
    resp = page("Sign in", body, status)
    resp.headers.append(cookie(LOGIN_COOKIE, token, LOGIN_TTL, req.secure))
    return resp


def login_form(req: Request) -> Response:
    if req.user:
        return redirect(safe_next(req.query.get("next")))
    return _form(req, safe_next(req.query.get("next")))


def login(req: Request) -> Response:
    app = req.app
    next_path = safe_next(req.form.get("next"))
    if not auth.csrf_ok(req.cookies.get(LOGIN_COOKIE), req.form.get("csrf")):
        return _form(req, next_path, "The sign-in form expired; please try again.", 403)
    name, password = req.form.get("user", "").strip(), req.form.get("password", "")
    wait = app.limiter.begin(name, req.ip, req.now)  # counted as a failure until it succeeds
    if wait > 0:
        resp = _form(req, next_path, "Too many failed sign-ins; try again in %s." % _later(wait), 429, name)
        resp.headers.append(("Retry-After", str(math.ceil(wait))))
        return resp
    with app.lock:
        user = req.store.web_user(name) if name else None
    if not auth.verify_password(user, password):
        app.log("failed sign-in for %r from %s" % (name, req.ip))
        return _form(req, next_path, "Wrong user name or password.", 401, name)
    app.limiter.succeeded(name, req.ip, req.now)
    with app.lock:
        token = auth.start_session(req.store, user["name"], req.ip, req.now, app.session_ttl)
    resp = redirect(next_path)
    resp.headers += [
        cookie(SESSION_COOKIE, token, int(app.session_ttl), req.secure),
        cookie(LOGIN_COOKIE, "", 0, req.secure),
    ]
    return resp


def logout(req: Request) -> Response:
    with req.app.lock:
        req.store.delete_web_session(req.session["token_hash"])
    resp = redirect("/login")
    resp.headers.append(cookie(SESSION_COOKIE, "", 0, req.secure))
    return resp
