"""``headend pay serve``: the payment platform's notification callback (stdlib http.server).

``POST /pay/notify`` with the signed JSON of ``headend.prepaid.payments``:

- 200 ``{"code": "SUCCESS", "message": "OK"}`` once the payment is recorded and its top-up
  queued, and again for a replayed ``payment_id`` (nothing changes: the platform retries
  until it sees SUCCESS, so a replay must succeed);
- 401 ``{"code": "FAIL", "message": ...}`` for a bad signature, 400 for bad input (not JSON,
  a missing field, a bad amount, an unknown or postpaid account, a payment id reused for
  another payment); nothing is recorded;
- 404 for any other path, 405 for other methods.

One request at a time (``HTTPServer``): SQLite writes are serialised anyway.
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from headend.prepaid import PrepaidError
from headend.prepaid.payments import SUCCESS, BadNotification, check_notification
from headend.prepaid.service import DEFAULT_TTL, credit

PATH = "/pay/notify"


class PayServer(HTTPServer):
    allow_reuse_address = True

    def __init__(self, address, store, secret: bytes, ttl: int = DEFAULT_TTL, clock=time.time, log=None):
        super().__init__(address, _Handler)
        self.store, self.secret, self.ttl, self.clock = store, secret, ttl, clock
        self.log = log or (lambda text: print("headend pay: " + text, file=sys.stderr, flush=True))


class _Handler(BaseHTTPRequestHandler):
    server: PayServer

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
        body = self.rfile.read(max(0, min(length, 64 * 1024)))
        srv = self.server
        try:
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
        except PrepaidError as e:
            status = getattr(e, "status", BadNotification.status)
            srv.log("refused: %s" % e)
            self._reply(status, {"code": "FAIL", "message": str(e)})
            return
        srv.log(
            "payment %s: %s (top-up command %s)"
            % (n.payment_id, "replay" if got["duplicate"] else "credited", got["command_id"])
        )
        self._reply(200, SUCCESS)
