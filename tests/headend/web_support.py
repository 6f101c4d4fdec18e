"""Helpers for the web dashboard tests: a fleet built through Storage's public methods (meters,
15-minute readings on four rates, events raising alerts and a work order, a held and a
review bill, a prepaid top-up, an operator and a viewer), the server in a thread on a free
port, a tiny cookie-keeping HTTP client, and a PNG decoder (zlib only) for screenshots."""

from __future__ import annotations

import http.client
import json
import re
import struct
import threading
import zlib
from contextlib import contextmanager
from decimal import Decimal
from urllib.parse import urlencode

from headend.alerts.config import AlertConfig
from headend.alerts.engine import run_alerts
from headend.billing.policy import Policy
from headend.billing.run import run_bills
from headend.db.storage import Storage
from headend.ingest.store import READING_COLUMNS
from headend.prepaid.service import credit
from headend.web.auth import hash_password
from headend.web.server import make_server
from tests.headend import billrun_support as billrun
from tests.headend.alerts_support import DAY, DAY0, NOW, H, add_event
from tests.headend.prepaid_support import add_prepaid
from tools.mosquitto_broker import free_port

OPERATOR, VIEWER, PASSWORD = "olga", "vic", "correct horse battery"
TODAY = NOW - NOW % DAY  # 2024-03-17 00:00 UTC; NOW is 06:00
Q = 900


def rate_of(ts: int) -> int:
    """0-based rate of the 15-minute interval ending at ts: valley, peak, sharp, flat."""
    hour = ((ts - 1) % DAY) // H
    if hour < 7 or hour >= 22:
        return 3
    if 10 <= hour < 12:
        return 0
    if 8 <= hour < 10 or 17 <= hour < 22:
        return 1
    return 2


def wh_of(ts: int) -> int:
    """Wh of the 15-minute interval ending at ts: a daily shape, never zero."""
    hour = ((ts - 1) % DAY) // H
    return 40 + (hour * 37) % 90 + ((ts // Q) % 4) * 6


def readings(store, meter_id: str, start: int, end: int, seq0: int = 1) -> list[int]:
    """15-minute readings from start to end (inclusive) of a meter; the final registers."""
    regs, rows, seq = [0, 0, 0, 0], [], seq0
    for ts in range(start, end + 1, Q):
        if ts > start:
            regs[rate_of(ts)] += wh_of(ts)
        r = dict(
            meter_id=meter_id,
            seq=seq,
            ts=ts,
            received_at=ts + 5,
            interval=Q,
            imp=json.dumps(regs),
            exp="[0,0,0,0]",
            q="[0,0,0,0]",
            inst=None,
            balance=None,
            flags=0,
            tariff=1,
            raw=b"r%d" % seq,
        )
        rows.append(tuple(r[c] for c in READING_COLUMNS))
        seq += 1
    store.insert_readings_batch(rows)
    return regs


def add_user(store, name: str, role: str, password: str = PASSWORD) -> None:
    store.add_web_user(name, role, now=0, **hash_password(password))


def build_fleet(store) -> dict:
    """m1 online (postpaid A1, 8 days of readings, a cover-tamper and a bypass event), m2
    offline, m3 prepaid P1 with a queued top-up; bills of 2024-02: b-held held, b-key in
    review; alerts run at NOW. Returns the ids the tests look for."""
    tid = billrun.tariff_id(billrun.TOU)
    store.add_tariff(tid, "TOU", billrun.TOU)
    store.add_meter("m1", "ab" * 32, "$7$x", now=0)
    store.add_account(
        {
            "account_id": "A1",
            "zone": "Z1",
            "zone_kind": "regular",
            "billing": "postpaid",
            "tariff_id": tid,
            "address": "1 Main St",
        },
        "m1",
        0,
    )
    store.set_online("m1", True, DAY0, seq=1, fields={"fw": "1.2.3", "board": "esp32"})
    readings(store, "m1", NOW - 8 * DAY, NOW)
    add_event(store, "m1", 1, NOW - 2 * H, 3, {"open": 1})
    add_event(store, "m1", 2, NOW - H, 17, {"in_ma": 5000, "ii_ma": 200})
    store.add_meter("m2", "cd" * 32, "$7$x", now=0)
    store.set_online("m2", True, DAY0, seq=1)
    store.set_online("m2", False, DAY0 + 60)
    add_prepaid(store, "m3", "P1")
    store.set_online("m3", True, NOW - 60, seq=1)
    readings(store, "m3", NOW - DAY, NOW)
    topup = credit(store, "PAY-1", 30000, NOW - 600, account_id="P1")
    billrun.add_account(store, "b-held")
    billrun.hourly(
        store,
        "m-b-held",
        billrun.tou_rates,
        source=lambda ts: "estimated" if ts < billrun.FEB + 4 * DAY else "real",
    )
    billrun.add_account(store, "b-key", key=True)
    billrun.hourly(store, "m-b-key", billrun.tou_rates)
    run_bills(store, "2024-02", NOW, Policy(review_sample_pct=Decimal(0)))
    run_alerts(store, NOW, AlertConfig())
    add_user(store, OPERATOR, "operator")
    add_user(store, VIEWER, "viewer")
    return {
        "held": store.bill("b-held", "2024-02")["id"],
        "review": store.bill("b-key", "2024-02")["id"],
        "tamper": next(a["id"] for a in store.alerts(meter_id="m1") if a["rule"] == "tamper"),
        "work_order": store.work_orders("open")[0]["id"],
        "topup_command": topup["command_id"],
    }


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def serving(store, clock=None, **kw):
    """The dashboard on a free loopback port in a thread; yields (base URL, server)."""
    logs: list[str] = []
    server = make_server(store, "127.0.0.1", free_port(), clock=clock or Clock(), log=logs.append, **kw)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1], server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def new_store(path) -> Storage:
    return Storage(str(path))


class Client:
    """One browser's worth of HTTP: keeps cookies, never follows redirects."""

    def __init__(self, base: str) -> None:
        self.host, self.port = base.split("//")[1].split(":")
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        for value in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            val = rest.split(";")[0]
            if "Max-Age=0" in value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = val
        conn.close()
        return resp.status, resp.headers, data

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, form: dict):
        return self.request("POST", path, form)

    def login(self, user: str = OPERATOR, password: str = PASSWORD, next_path: str = "/"):
        _, _, body = self.get("/login")
        return self.post(
            "/login", {"csrf": csrf_of(body), "user": user, "password": password, "next": next_path}
        )

    def csrf(self, path: str = "/") -> str:
        """The session's CSRF token, as a page's forms carry it."""
        return csrf_of(self.get(path)[2])


def csrf_of(html: bytes) -> str:
    m = re.search(rb'name="csrf" value="([^"]*)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1).decode()


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, [], 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat.append(chunk)
        pos += 12 + length
    raw = zlib.decompress(b"".join(idat))
    stride, rows, prev = width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [r if bpp == 3 else _rgb(r) for r in rows]


def _rgb(rgba: bytes) -> bytes:
    return b"".join(rgba[i : i + 3] for i in range(0, len(rgba), 4))


def colours(rows: list[bytes]) -> set[bytes]:
    return {r[i : i + 3] for r in rows for i in range(0, len(r), 3)}
