"""What a route handler gets (``Request``) and gives back (``Response``).

A handler is ``handler(req) -> Response``; ``req.store`` is the head-end's Storage (used
under the server's lock), ``req.user``/``req.role`` the signed-in user, ``req.params`` the
route's path parameters, ``req.query`` and ``req.form`` the first value of each field,
``req.cookies`` the cookies.
Pages return ``page(title, body)`` (the server wraps it in the layout with the CSP nonce and
the CSRF token); the API returns ``json_response``; actions end in ``redirect``.

``req.ip`` is the client's address: the TCP peer, or, when the peer is a trusted proxy
(``headend web --trusted-proxy``), the address that proxy put in ``X-Forwarded-For``
(``client_ip``); ``req.secure`` is True when the browser reached the dashboard over TLS
(``--behind-tls``, or ``X-Forwarded-Proto: https`` from a trusted proxy).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    secure: bool = False  # reached over TLS: cookies get the Secure attribute
    session: dict | None = None  # the web_sessions row (with the user's role)
    app: object = None  # the WebApp: its rate limiter and settings


def trusted_networks(values) -> tuple[Network, ...]:
    """``--trusted-proxy`` values (each an address or network, or a comma list of them);
    ValueError naming a bad one."""
    nets = []
    for value in values:
        if isinstance(value, Network):
            nets.append(value)
            continue
        for part in value.split(","):
            try:
                nets.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError("not an IP address or network: %r" % part.strip())
    return tuple(nets)


def _address(text: str):
    try:
        a = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return (a.ipv4_mapped or a) if a.version == 6 else a


def is_trusted(peer: str, trusted: tuple[Network, ...]) -> bool:
    a = _address(peer)
    return a is not None and any(a in net for net in trusted)


def client_ip(peer: str, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy; then ``X-Forwarded-For``
    read from the right (each proxy appends the address it was reached from), skipping
    trusted proxies: the first address that is not one. Entries to the left of it were
    written by the client and are never believed; an entry that is no address stops the
    walk at the last address vouched for."""
    if not forwarded_for or not is_trusted(peer, trusted):
        return peer
    addr = peer
    for hop in reversed(forwarded_for.split(",")):
        a = _address(hop)
        if a is None:
            break
        addr = str(a)
        if not any(a in net for net in trusted):
            break
    return addr


def forwarded_https(peer: str, forwarded_proto: str | None, trusted: tuple[Network, ...]) -> bool:
    """True when a trusted proxy says the browser reached it over HTTPS (its last value)."""
    if not forwarded_proto or not is_trusted(peer, trusted):
        return False
    return forwarded_proto.split(",")[-1].strip().lower() == "https"


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
