"""`headend pay serve` SIGKILLed three times during a burst of 300 signed payment callbacks from four
concurrent senders that retry, as a payment platform does, every callback not answered with
SUCCESS: afterwards every payment is credited exactly once (one payment row, one ledger entry, one
top-up command with the meter's next seq and top-up id), each account's ledger sums to what was
paid into it, and replaying every callback once more changes nothing.

A kill while a callback is being handled leaves it either uncommitted (the retry credits it) or
committed but unanswered (the retry is a replay of the payment id: SUCCESS, nothing changes).
"""

from __future__ import annotations

import queue
import random
import threading
import time

from headend.db.storage import Storage
from tests.faults.support import Lines, integrity, pay_post, rows, sigkill, wait_for
from tests.headend.prepaid_support import SECRET, add_prepaid, notification
from tests.mosquitto_broker import free_port

SEED = 404
ACCOUNTS, PAYMENTS, SENDERS = 5, 300, 4


class Platform:
    """Senders that deliver each callback until it is answered SUCCESS."""

    def __init__(self, port: int, bodies: list[bytes]) -> None:
        self.port, self.todo = port, queue.Queue()
        for b in bodies:
            self.todo.put(b)
        self.done = 0
        self.attempts = 0
        self.unanswered = 0  # attempts that got no HTTP answer (the server was down or died)
        self.refused: list[tuple[int, dict]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(SENDERS)]
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        try:
            self._deliver()
        except Exception as e:  # a sender that dies must fail the test, not hang it
            self.errors.append(repr(e))

    def _deliver(self) -> None:
        while True:
            try:
                body = self.todo.get_nowait()
            except queue.Empty:
                return
            while True:
                with self._lock:
                    self.attempts += 1
                got = pay_post(self.port, body)
                if got is not None and got[0] == 200 and got[1].get("code") == "SUCCESS":
                    with self._lock:
                        self.done += 1
                    break
                if got is not None and got[0] != 200:
                    self.refused.append(got)
                    break
                if got is None:
                    with self._lock:
                        self.unanswered += 1
                time.sleep(0.02)  # the platform's retry back-off, shortened


def start(db: str, port: int, secret_file: str) -> Lines:
    srv = Lines("--db", db, "pay", "serve", "--port", str(port), "--secret-file", secret_file)
    wait_for(lambda: srv.saw("headend pay: listening") or srv.proc.poll() is not None, 15, "pay serve")
    assert srv.proc.poll() is None, "".join(srv.lines)
    return srv


def test_pay_serve_sigkilled_during_a_callback_burst_then_every_payment_credited_once(tmp_path):
    rng = random.Random(SEED)
    db = str(tmp_path / "headend.db")
    with Storage(db) as st:
        for i in range(1, ACCOUNTS + 1):
            add_prepaid(st, "m%d" % i, "P%d" % i)
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    paid: dict[str, int] = {}  # account -> milli-units
    payments, bodies = [], []
    for i in range(PAYMENTS):
        pid, account, cents = "PAY-%04d" % i, "P%d" % rng.randint(1, ACCOUNTS), rng.randint(100, 50_000)
        paid[account] = paid.get(account, 0) + cents * 10
        payments.append((pid, account, cents * 10))
        bodies.append(notification(payment_id=pid, account_id=account, amount="%d.%02d" % divmod(cents, 100)))

    port = free_port()
    srv = start(db, port, str(secret_file))
    platform = Platform(port, bodies)
    for threshold in sorted(rng.sample(range(20, PAYMENTS - 40), 3)):
        wait_for(lambda t=threshold: platform.done >= t, 30, "%d payments answered" % threshold)
        sigkill(srv.proc)
        assert integrity(db) == "ok"
        # the platform keeps retrying against the dead port: a few of its attempts find no server
        # (an event, not a guess at how long that takes on this machine)
        misses = platform.unanswered + rng.randint(1, 4)
        wait_for(lambda m=misses: platform.unanswered >= m, 30, "%d unanswered attempts" % misses)
        srv = start(db, port, str(secret_file))
    for t in platform.threads:
        t.join(60)
    assert platform.errors == [] and platform.refused == [] and platform.done == PAYMENTS
    assert platform.attempts >= PAYMENTS + platform.unanswered > PAYMENTS  # callbacks were retried

    for body in bodies:  # the platform replays everything once more
        assert pay_post(port, body) == (200, {"code": "SUCCESS", "message": "OK"})
    sigkill(srv.proc)

    assert rows(db, "SELECT payment_id, account_id, amount FROM payments ORDER BY payment_id") == payments
    ledger = rows(db, "SELECT account_id, sum(amount) FROM prepaid_ledger WHERE kind = 'topup' GROUP BY 1")
    assert dict(ledger) == paid
    assert rows(db, "SELECT count(*), count(DISTINCT ref) FROM prepaid_ledger") == [(PAYMENTS, PAYMENTS)]
    with Storage(db) as st:
        assert {a: st.ledger_balance(a) for a in paid} == paid
        for i in range(1, ACCOUNTS + 1):
            cmds = st.commands("m%d" % i)
            n = sum(account == "P%d" % i for _, account, _ in payments)
            assert [c["seq"] for c in cmds] == list(range(1, n + 1))  # one top-up command each, no gap
            assert sorted(c["args"]["0"] for c in cmds) == list(range(1, n + 1))  # top-up ids
