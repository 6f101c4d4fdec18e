"""``headend web``: the dashboard's HTTP server (stdlib ``ThreadingHTTPServer``).

Every request goes through ``Handler._handle``, in this order:

1. the session: the ``headend_session`` cookie's token, hashed, must name a live
   ``web_sessions`` row; otherwise every route but the login form answers 302 to /login
   (pages) or 401 ``{"error": "login required"}`` (/api), with nothing else in the body;
2. the route (``headend.web.routes``): 404 / 405 otherwise;
3. a POST: a urlencoded body of at most 64 KiB whose ``csrf`` field equals the session's
   token (``hmac.compare_digest``), and for an ``action`` route the operator role: 403
   otherwise;
4. the handler, holding the app's lock (one SQLite connection serves every thread);
   ``HTTPError``, and the billing, alert and prepaid errors naming bad input, become 4xx
   pages or JSON; anything else a 500 that shows no detail (logged).

The client's address (``req.ip``, for the login limiter, the session row and the log) is the
TCP peer; only when the peer is one of ``trusted_proxies`` (``headend web --trusted-proxy``)
is ``X-Forwarded-For`` read (``request.client_ip``). ``req.secure`` (cookies marked
``Secure``) when ``behind_tls`` (``--behind-tls``) or a trusted proxy sends
``X-Forwarded-Proto: https``.

Responses carry ``Cache-Control: no-store``, a Content-Security-Policy allowing only the
page's own nonce-tagged style (no scripts), ``X-Frame-Options: DENY`` and ``nosniff``.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
import traceback
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

from headend.errors import AlertError, BillingError, CommandError, PrepaidError
from headend.web import auth, routes
from headend.web.layout import Markup, esc, layout
from headend.web.pages_login import SESSION_COOKIE
from headend.web.request import (
    HTTPError,
    Request,
    Response,
    client_ip,
    forwarded_https,
    json_response,
    page,
    trusted_networks,
)

MAX_BODY = 64 * 1024
MAX_FIELDS = 50
REASONS = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    411: "Length required",
    413: "Too large",
    415: "Unsupported media type",
    500: "Server error",
}


class WebApp:
    """What the handlers share: the store (behind ``lock``), the clock, the login limiter, the
    proxies whose X-Forwarded-For/-Proto are believed, whether the browser's side is TLS."""

    def __init__(
        self,
        store,
        clock=time.time,
        session_ttl: float = auth.SESSION_TTL,
        limiter=None,
        log=None,
        trusted_proxies=(),
        behind_tls: bool = False,
    ) -> None:
        self.store, self.clock, self.session_ttl = store, clock, session_ttl
        self.limiter = limiter or auth.RateLimiter()
        self.trusted_proxies = trusted_networks(trusted_proxies)
        self.behind_tls = behind_tls
        self.lock = threading.RLock()
        self.log = log or _log


def _log(text: str) -> None:
    # one write per line: print() writes the newline apart, so threads' lines interleaved
    sys.stderr.write("headend web: %s\n" % text)
    sys.stderr.flush()


class WebServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog (socketserver's 5 reset a burst of 50 connections)

    def __init__(self, address, app: WebApp) -> None:
        super().__init__(address, Handler)
        self.app = app


def error(status: int, message: str, api: bool) -> Response:
    if api:
        return json_response({"error": message}, status)
    title = REASONS.get(status, "Error")
    body = Markup(
        '<h1>%s</h1><p class="error" id="error">%s</p><p><a href="/">Overview</a></p>'
        % (esc(title), esc(message))
    )
    return page(title, body, status)


def _first(qs: str) -> dict[str, str]:
    try:
        parsed = parse_qs(qs, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise HTTPError(400, "too many fields")
    return {k: v[0] for k, v in parsed.items()}


class Handler(BaseHTTPRequestHandler):
    server: WebServer
    server_version = "headend-web"
    sys_version = ""
    timeout = 30

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt, *args) -> None:
        self.server.app.log("%s %s" % (self.client_address[0], fmt % args))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _cookies(self) -> dict[str, str]:
        jar = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except CookieError:
            return {}
        return {k: m.value for k, m in jar.items()}

    def _body(self) -> dict[str, str]:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise HTTPError(411, "Content-Length required")
        if length < 0 or length > MAX_BODY:
            raise HTTPError(413, "the form is larger than %d bytes" % MAX_BODY)
        raw = self.rfile.read(length)
        if ctype != "application/x-www-form-urlencoded":
            raise HTTPError(415, "forms must be application/x-www-form-urlencoded")
        return _first(raw.decode("utf-8", "replace"))

    def _handle(self, method: str) -> None:
        app = self.server.app
        split = urlsplit(self.path)
        path, api = split.path or "/", routes.is_api(split.path)
        peer, trusted = self.client_address[0], app.trusted_proxies
        forwarded = ",".join(self.headers.get_all("X-Forwarded-For") or ())
        proto = ",".join(self.headers.get_all("X-Forwarded-Proto") or ())
        req = Request(method, path, app.store, app.clock(), ip=client_ip(peer, forwarded, trusted), app=app)
        req.secure = app.behind_tls or forwarded_https(peer, proto, trusted)
        try:
            if not path.startswith("/"):
                raise HTTPError(400, "bad path")
            req.cookies = self._cookies()
            with app.lock:
                session = auth.session_of(app.store, req.cookies.get(SESSION_COOKIE), req.now)
            route, req.params, allowed = routes.match(method, path)
            if session is None and (route is None or route.kind != "public"):
                self._send(self._anonymous(method, split, api), req)
                return
            if session is not None:
                req.session, req.user, req.role, req.csrf = (
                    session,
                    session["user"],
                    session["role"],
                    session["csrf"],
                )
            if route is None:
                raise HTTPError(
                    405 if allowed else 404, "no such page" if not allowed else "method not allowed"
                )
            req.query = _first(split.query)
            if method == "POST":
                req.form = self._body()
                if route.kind != "public" and not auth.csrf_ok(req.csrf, req.form.get("csrf")):
                    raise HTTPError(403, "the form's CSRF token is missing or wrong; reload the page")
                if route.action and req.role != "operator":
                    raise HTTPError(403, "viewers cannot change anything; ask an operator")
            if route.kind == "public":
                resp = route.handler(req)
            else:
                with app.lock:
                    resp = route.handler(req)
        except HTTPError as e:
            resp = error(e.status, str(e), api)
        except (BillingError, AlertError, PrepaidError, CommandError) as e:
            resp = error(400, str(e), api)
        except Exception:
            app.log("error in %s %s\n%s" % (method, path, traceback.format_exc()))
            resp = error(500, "internal error (logged)", api)
        self._send(resp, req)

    def _anonymous(self, method: str, split, api: bool) -> Response:
        if api:
            return json_response({"error": "login required"}, 401)
        target = "/login"
        if method == "GET" and split.path != "/":
            target += "?next=" + quote(split.path + ("?" + split.query if split.query else ""), safe="")
        return Response(status=302, headers=[("Location", target)], content_type="text/plain")

    def _send(self, resp: Response, req: Request) -> None:
        nonce = secrets.token_urlsafe(16)
        body = resp.body
        if resp.title is not None:
            body = layout(resp.title, resp.html, req.user, req.role, req.csrf, nonce, req.path).encode()
        self.send_response(resp.status)
        headers = [
            ("Content-Type", resp.content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "same-origin"),
            (
                "Content-Security-Policy",
                "default-src 'none'; style-src 'nonce-%s'; img-src 'self' data:;"
                " form-action 'self'; frame-ancestors 'none'; base-uri 'none'" % nonce,
            ),
            *resp.headers,
        ]
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def make_server(store, host: str = "127.0.0.1", port: int = 0, **app_kw) -> WebServer:
    return WebServer((host, port), WebApp(store, **app_kw))
