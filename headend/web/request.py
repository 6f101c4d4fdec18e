"""What a route handler gets (``Request``) and gives back (``Response``).

A handler is ``handler(req) -> Response``; ``req.store`` is the head-end's Storage (used
under the server's lock), ``req.user``/``req.role`` the signed-in user, ``req.params`` the
route's path parameters, ``req.query`` and ``req.form`` the first value of each field,
``req.cookies`` the cookies.
Pages return ``page(title, body)`` (the server wraps it in the layout with the CSP nonce and
the CSRF token); the API returns ``json_response``; actions end in ``redirect``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


class HTTPError(Exception):
    """A handler's refusal: status and a message safe to show (it is escaped)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    store: object
    now: float
    user: str | None = None
    role: str | None = None
    csrf: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    ip: str = ""
    session: dict | None = None  # the web_sessions row (with the user's role)
    app: object = None  # the WebApp: its rate limiter and settings


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    title: str | None = None  # a page to wrap in the layout: body is its HTML fragment
    html: str = ""


def page(title: str, html: str, status: int = 200) -> Response:
    return Response(status=status, title=title, html=html)


def json_response(obj, status: int = 200) -> Response:
    data = json.dumps(obj, separators=(",", ":"), default=str).encode()
    return Response(status=status, body=data, content_type="application/json")


def redirect(location: str, status: int = 303) -> Response:
    return Response(status=status, headers=[("Location", location)], content_type="text/plain")
