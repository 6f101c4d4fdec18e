"""The router: every URL the dashboard answers, in one table (``ROUTES``).

A ``Route`` is a method, a pattern (``/meters/{meter_id}``; ``{id:int}`` takes digits
only), its handler and its kind: ``public`` (the login form only), ``page`` (HTML: without
a session a 302 to /login) or ``api`` (JSON under /api/: without a session a 401).
``action`` routes change state: operators only (a viewer gets 403), and like every POST they
need the session's CSRF token. ``match(method, path)`` finds the route and its parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from headend.web import (
    api,
    pages_alerts,
    pages_bills,
    pages_fleet,
    pages_login,
    pages_meter,
    pages_prepaid,
    pages_tariffs,
    pages_workorders,
)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Callable
    kind: str = "page"  # public | page | api
    action: bool = False
    regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def part(m: re.Match) -> str:
            name, _, typ = m.group(1).partition(":")
            return "(?P<%s>%s)" % (name, "[0-9]{1,18}" if typ == "int" else "[^/]+")

        object.__setattr__(self, "regex", re.compile("^" + re.sub(r"\{([^}]+)\}", part, self.pattern) + "$"))

    def example(self, value: str = "1") -> str:
        """The pattern with every parameter set to ``value`` (tests reach each route this way)."""
        return re.sub(r"\{[^}]+\}", value, self.pattern)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/login", pages_login.login_form, "public"),
    Route("POST", "/login", pages_login.login, "public"),
    Route("POST", "/logout", pages_login.logout),
    Route("GET", "/", pages_fleet.overview),
    Route("GET", "/meters", pages_fleet.meters),
    Route("GET", "/meters/{meter_id}", pages_meter.meter),
    Route("GET", "/bills", pages_bills.bills),
    Route("GET", "/bills/{id:int}", pages_bills.bill),
    Route("POST", "/bills/{id:int}/approve", pages_bills.approve, action=True),
    Route("POST", "/bills/{id:int}/correct", pages_bills.correct, action=True),
    Route("GET", "/prepaid", pages_prepaid.overview),
    Route("GET", "/prepaid/{account_id}", pages_prepaid.account),
    Route("GET", "/alerts", pages_alerts.alerts),
    Route("GET", "/alerts/{id:int}", pages_alerts.alert),
    Route("POST", "/alerts/{id:int}/ack", pages_alerts.ack, action=True),
    Route("POST", "/alerts/{id:int}/resolve", pages_alerts.resolve, action=True),
    Route("GET", "/workorders", pages_workorders.work_orders),
    Route("GET", "/workorders/{id:int}", pages_workorders.work_order),
    Route("POST", "/workorders/{id:int}/close", pages_workorders.close, action=True),
    Route("GET", "/tariffs", pages_tariffs.tariffs_page),
    Route("GET", "/api/me", api.me, "api"),
    Route("GET", "/api/fleet", api.fleet, "api"),
    Route("GET", "/api/meters", api.meters, "api"),
    Route("GET", "/api/meters/{meter_id}", api.meter, "api"),
    Route("GET", "/api/meters/{meter_id}/profile", api.profile, "api"),
    Route("GET", "/api/meters/{meter_id}/events", api.events, "api"),
    Route("GET", "/api/bills", api.bills, "api"),
    Route("GET", "/api/bills/{id:int}", api.bill, "api"),
    Route("GET", "/api/prepaid", api.prepaid, "api"),
    Route("GET", "/api/prepaid/{account_id}", api.prepaid_account, "api"),
    Route("GET", "/api/topups", api.topups, "api"),
    Route("GET", "/api/alerts", api.alerts, "api"),
    Route("GET", "/api/alerts/{id:int}", api.alert, "api"),
    Route("GET", "/api/workorders", api.work_orders, "api"),
    Route("GET", "/api/workorders/{id:int}", api.work_order, "api"),
)


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def match(method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
    """(route, its parameters, []) or (None, {}, methods the path answers to: empty if none)."""
    allowed = []
    for route in ROUTES:
        m = route.regex.match(path)
        if m is None:
            continue
        if route.method == method:
            return route, {k: unquote(v) for k, v in m.groupdict().items()}, []
        allowed.append(route.method)
    return None, {}, allowed
