"""``headend pay serve``: the payment platform's notification callback (stdlib http.server).

``POST /pay/notify`` with the signed JSON of ``headend.prepaid.payments``:

- 200 ``{"code": "SUCCESS", "message": "OK"}`` once the payment is recorded and its top-up
  queued, and again for a replayed ``payment_id`` (nothing changes: the platform retries
  until it sees SUCCESS, so a replay must succeed);
- 401 ``{"code": "FAIL", "message": ...}`` for a bad signature, 400 for bad input (not JSON,
  a missing field, a name or value holding '&', '=' or a control character, a bad amount, a
  paid_at that is no RFC 3339 date-time, an unknown or postpaid account, a payment id reused
  for another payment); nothing is recorded;
- 503 ``{"code": "FAIL", "message": ...}`` when the database cannot record it now (disk full,
  read-only): nothing is recorded, and the platform's retry succeeds once it can;
- 404 for any other path, 405 for other methods.

Requests are read in threads (``ThreadingHTTPServer``) under a ``TIMEOUT_S`` socket timeout,
so a slow or stalled client (a body shorter than its Content-Length) neither blocks other
callbacks nor holds its connection for ever; checking and recording a payment runs one at a
time under ``lock`` (one SQLite connection serves every thread).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from headend.errors import BadNotification, CommandError, PrepaidError
from headend.prepaid.payments import SUCCESS, check_notification
from headend.prepaid.service import DEFAULT_TTL, credit

PATH = "/pay/notify"
TIMEOUT_S = 10.0  # a connection idle this long mid-request is dropped


class PayServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128  # listen backlog: socketserver's 5 reset a platform's retry burst

    def __init__(self, address, store, secret: bytes, ttl: int = DEFAULT_TTL, clock=time.time, log=None):
        super().__init__(address, _Handler)
        self.store, self.secret, self.ttl, self.clock = store, secret, ttl, clock
        self.lock = threading.Lock()
        self.log = log or (lambda text: print("headend pay: " + text, file=sys.stderr, flush=True))


class _Handler(BaseHTTPRequestHandler):
    server: PayServer
    timeout = TIMEOUT_S

    def log_message(self, fmt, *args) -> None:
        self.server.log(fmt % args)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply(405 if self.path == PATH else 404, {"code": "FAIL", "message": "POST %s only" % PATH})

    def do_POST(self) -> None:
        if self.path != PATH:
            self._reply(404, {"code": "FAIL", "message": "unknown path"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._reply(411, {"code": "FAIL", "message": "Content-Length required"})
            return
        try:
            body = self.rfile.read(max(0, min(length, 64 * 1024)))
        except OSError as e:  # TimeoutError: the client stalled; the connection is dropped
            self.server.log("request body not received: %s" % e)
            self.close_connection = True
            return
        srv = self.server
        try:
            with srv.lock:
                n = check_notification(body, srv.secret)
                got = credit(
                    srv.store,
                    n.payment_id,
                    n.amount,
                    srv.clock(),
                    account_id=n.account_id,
                    source="online",
                    paid_at=n.paid_at,
                    body=n.body,
                    ttl=srv.ttl,
                )
        except (PrepaidError, CommandError) as e:  # a top-up that cannot be queued is refused too
            status = getattr(e, "status", BadNotification.status)
            srv.log("refused: %s" % e)
            self._reply(status, {"code": "FAIL", "message": str(e)})
            return
        except sqlite3.Error as e:  # e.g. disk full: nothing was recorded, the platform retries
            srv.log("cannot record a payment now (database: %s); replied 503" % e)
            self._reply(503, {"code": "FAIL", "message": "cannot record the payment now: %s" % e})
            return
        srv.log(
            "payment %s: %s (top-up command %s)"
            % (n.payment_id, "replay" if got["duplicate"] else "credited", got["command_id"])
        )
        self._reply(200, SUCCESS)
