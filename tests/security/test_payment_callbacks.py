"""The payment platform's callback (headend.prepaid.payserver.PayServer, the server of
`headend pay serve`) under forged, replayed and stalled requests, over real HTTP.

- Bad signatures (another secret, a field changed after signing, an unsigned field added, an
  empty or truncated sign, a sign of another body) are 401 and record nothing.
- A replayed payment id is credited once: replayed in sequence and 20 times concurrently, it
  answers SUCCESS every time (the platform retries until it does) with one ledger entry and
  one top-up command; the same id with another amount or account is refused (400).
- A signed value carrying ``&payment_id=...`` cannot be re-split into another payment under the
  same sign (the signed string has no escaping): every name or value holding '&', '=' or a
  control character is 400 naming the field, and nothing is credited, once or twice.
- A paid_at that is not an RFC 3339 date-time with an offset is 400 naming paid_at; a valid
  one is stored as sent.
- Bodies that used to escape as undocumented exceptions (nested 15000 deep, lone surrogates)
  are 400.
- A client that stalls mid-body does not block other callbacks (it used to hold the
  single-threaded server for ever) and is dropped after TIMEOUT_S.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest

from headend.prepaid import payserver
from headend.prepaid.payments import canonical, sign
from headend.prepaid.payserver import PayServer
from tests.headend.prepaid_support import SECRET, add_prepaid, notification, prepaid_store

NOW = 1709280000.0


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setattr(payserver, "TIMEOUT_S", 1.0)
    monkeypatch.setattr(payserver._Handler, "timeout", 1.0)
    store = prepaid_store(tmp_path / "p.db")
    add_prepaid(store, "m2", "P2")
    logs: list[str] = []
    srv = PayServer(("127.0.0.1", 0), store, SECRET, clock=lambda: NOW, log=logs.append)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.logs = logs
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)
    store.close()


def post(srv, body: bytes):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_port, timeout=10)
    conn.request("POST", "/pay/notify", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data)


def recorded(store):
    return store.topups(), store.ledger("P1"), store.ledger("P2"), store.commands("m1"), store.commands("m2")


def fields(**over) -> dict:
    return json.loads(notification(**over))


def dumps(d: dict) -> bytes:
    return json.dumps(d).encode()


def test_bad_signatures_are_401_and_record_nothing(server):
    good = fields()
    forged = [
        notification(secret=b"guessed-secret"),
        dumps({**good, "amount": "3000.00"}),  # changed after signing
        dumps({**good, "account_id": "P2"}),  # redirected to another account
        dumps({**good, "note": "unsigned"}),  # every field is signed, also unknown ones
        dumps({**good, "sign": good["sign"][:-1]}),
        dumps({**good, "sign": "0" * 64}),
        dumps({**good, "sign": " "}),
        dumps({**good, "sign": fields(payment_id="PAY-2")["sign"]}),  # another body's sign
        dumps({**good, "sign": sign({**good, "sign": ""}, b"")}),  # signed with an empty secret
    ]
    for body in forged:
        status, reply = post(server, body)
        assert (status, reply["code"]) == (401, "FAIL"), body
    assert post(server, dumps({**good, "sign": ""}))[0] == 400  # empty: not even a signature
    assert recorded(server.store) == ([], [], [], [], [])


def test_a_replayed_payment_id_is_credited_once(server):
    body = notification()
    assert post(server, body) == (200, {"code": "SUCCESS", "message": "OK"})
    replies: list = []

    def replay():
        replies.append(post(server, body))

    threads = [threading.Thread(target=replay) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert replies == [(200, {"code": "SUCCESS", "message": "OK"})] * 20
    assert [(e["kind"], e["amount"], e["ref"]) for e in server.store.ledger("P1")] == [
        ("topup", 30000, "PAY-1")
    ]
    assert len(server.store.commands("m1")) == 1 and len(server.store.topups()) == 1
    for other in (notification(amount="31.00"), notification(account_id="P2")):
        status, reply = post(server, other)
        assert status == 400 and "already used" in reply["message"], reply
    assert server.store.ledger_balance("P1") == 30000 and server.store.ledger("P2") == []


def test_a_signed_value_cannot_be_re_split_into_a_second_payment(server):
    paid_at = "2024-03-01T09:00:00+08:00"
    base = {"account_id": "P1", "amount": "30.00", "paid_at": paid_at}
    # signed by the platform: payment PAY-1 with two extra fields, one carrying "&payment_id=PAY-2"
    signed = {**base, "pay": "x", "payment_id": "PAY-1", "q": "1&payment_id=PAY-2"}
    signed["sign"] = sign(signed, SECRET)
    # the same signed string split at other '&': payment PAY-2, the rest folded into "pay"
    resplit = {**base, "pay": "x&payment_id=PAY-1&q=1", "payment_id": "PAY-2", "sign": signed["sign"]}
    assert canonical(resplit) == canonical(signed)  # why it worked: one string, two payments
    assert sign(resplit, SECRET) == signed["sign"]
    for body, field in ((signed, "q"), (resplit, "pay")):
        status, reply = post(server, dumps(body))
        assert (status, reply["code"]) == (400, "FAIL"), reply
        assert reply["message"].startswith(field + ": ") and "'&', '='" in reply["message"], reply
    assert recorded(server.store) == ([], [], [], [], [])
    # the platform's own notification of PAY-1 is credited once; the re-split one still is not
    assert post(server, notification())[0] == 200
    assert post(server, dumps(resplit))[0] == 400
    assert [(t["payment_id"], t["amount"]) for t in server.store.topups()] == [("PAY-1", 30000)]
    assert server.store.ledger_balance("P1") == 30000 and len(server.store.commands("m1")) == 1


@pytest.mark.parametrize(
    "over, field",
    [
        ({"payment_id": "PAY=1"}, "payment_id"),
        ({"account_id": "P1&"}, "account_id"),
        ({"amount": "30.00\n"}, "amount"),
        ({"note": "a\x00b"}, "note"),
        ({"note": "\x7f"}, "note"),
        ({"note": "\x85"}, "note"),
        ({"n&ote": "x"}, "'n&ote'"),  # a bad name is shown quoted
        ({"n=te": "x"}, "'n=te'"),
    ],
)
def test_separators_and_control_characters_are_400_naming_the_field(server, over, field):
    status, reply = post(server, notification(**over))  # signed with the right secret
    assert (status, reply["code"]) == (400, "FAIL") and reply["message"].startswith(field + ": "), reply
    assert recorded(server.store) == ([], [], [], [], [])


@pytest.mark.parametrize(
    "paid_at",
    ["not a date", "2024-03-01", "2024-03-01T09:00:00", "2024-02-30T09:00:00Z", "2024-03-01T25:00:00Z",
     "1709280000", "2024-03-01 09:00:00+08:00"],
)  # fmt: skip
def test_a_paid_at_that_is_no_rfc3339_date_time_is_400(server, paid_at):
    status, reply = post(server, notification(paid_at=paid_at))  # signed with the right secret
    assert (status, reply["code"]) == (400, "FAIL") and reply["message"].startswith("paid_at: "), reply
    assert recorded(server.store) == ([], [], [], [], [])


def test_a_valid_paid_at_is_stored_as_sent(server):
    for i, paid_at in enumerate(
        ("2024-03-01T01:00:00Z", "2024-03-01T09:00:00.25+08:00", "2024-02-29t23:59:60z")
    ):
        assert post(server, notification(payment_id="PAY-%d" % i, paid_at=paid_at))[0] == 200
        assert server.store.topup("PAY-%d" % i)["paid_at"] == paid_at


def test_concurrent_first_deliveries_of_one_payment_credit_once(server):
    body = notification(payment_id="PAY-RACE", amount="7.00")
    replies: list = []
    threads = [threading.Thread(target=lambda: replies.append(post(server, body))) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert [r[0] for r in replies] == [200] * 12
    assert [(e["amount"], e["ref"]) for e in server.store.ledger("P1")] == [(7000, "PAY-RACE")]
    assert len(server.store.commands("m1")) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 15000,
        b'{"payment_id": "\\ud800", "account_id": "P1", "amount": "1", "paid_at": "x", "sign": "ab"}',
        b'{"payment_id":"a","account_id":"P1","amount":"1","paid_at":"x","sign":"\\udfff"}',
    ],
)
def test_hostile_bodies_are_400_and_the_server_lives_on(server, body):
    status, reply = post(server, body)
    assert status == 400 and reply["code"] == "FAIL"
    assert post(server, notification())[0] == 200
    assert len(server.store.ledger("P1")) == 1


def test_a_stalled_client_does_not_block_other_callbacks(server, monkeypatch):
    # ordered by events, not timed: the stalled request is being read (its handler entered) when
    # the callback comes, and the callback is answered before the stalled one is dropped (which a
    # server reading one request at a time could only do after the stall timeout)
    entered = threading.Event()
    do_post = payserver._Handler.do_POST

    def entering(handler):
        entered.set()
        do_post(handler)

    monkeypatch.setattr(payserver._Handler, "do_POST", entering)
    monkeypatch.setattr(payserver._Handler, "timeout", 3.0)  # the stall timeout of the connections below
    stalled = socket.create_connection(("127.0.0.1", server.server_port))
    stalled.sendall(b'POST /pay/notify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"pay')
    assert entered.wait(10), "the server took the stalled request"
    assert post(server, notification())[0] == 200
    assert not any("not received" in line for line in server.logs), (
        "the callback waited for the stalled client"
    )
    stalled.settimeout(10)
    assert stalled.recv(100) == b"", "the stalled connection was not dropped"
    stalled.close()
    assert any("not received" in line for line in server.logs)
    assert len(server.store.ledger("P1")) == 1
