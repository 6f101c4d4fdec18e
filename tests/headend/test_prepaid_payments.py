"""Payments: the signed HTTP callback and counter top-ups, each queueing one signed command."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from headend.cli import main as headend_main
from headend.db.storage import Storage
from headend.prepaid.payserver import PayServer
from protocol import commands, messages
from tests.headend.prepaid_support import KEY, SECRET, add_prepaid, notification, prepaid_store

NOW = 1709280000.0


@pytest.fixture
def server(db_target):  # both engines (tests/conftest.py)
    store = prepaid_store(db_target)
    add_prepaid(store, "m2", "POST1", billing="postpaid")
    srv = PayServer(("127.0.0.1", 0), store, SECRET, clock=lambda: NOW, log=lambda text: None)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)
    store.close()


def post(srv, body: bytes, path="/pay/notify"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (srv.server_port, path), data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def recorded(store):
    return (store.topups(), store.ledger("P1"), store.commands("m1"))


def test_a_signed_notification_credits_once_and_queues_one_topup(server):
    store = server.store
    assert post(server, notification()) == (200, {"code": "SUCCESS", "message": "OK"})
    [t] = store.topups()
    assert (t["payment_id"], t["account_id"], t["meter_id"], t["amount"], t["source"], t["state"]) == (
        "PAY-1", "P1", "m1", 30000, "online", "queued"
    )  # fmt: skip
    assert [(e["kind"], e["amount"], e["ref"]) for e in store.ledger("P1")] == [("topup", 30000, "PAY-1")]
    [c] = store.commands("m1")
    msg = messages.open_frame(KEY, "m1", c["frame"])
    assert (msg["type"], msg["seq"], msg["cmd"], msg["expires"]) == (10, 1, 1, int(NOW) + 7 * 86400)
    assert commands.command_args(msg["cmd"], msg["args"]) == {"topup_id": 1, "amount": 30000}
    before = recorded(store)
    assert post(server, notification()) == (200, {"code": "SUCCESS", "message": "OK"})  # the platform retries
    assert recorded(store) == before and store.ledger_balance("P1") == 30000


def test_a_second_payment_gets_the_next_seq_and_topup_id(server):
    post(server, notification())
    assert post(server, notification(payment_id="PAY-2", amount="5.5"))[0] == 200
    c = server.store.commands("m1")[-1]
    msg = messages.open_frame(KEY, "m1", c["frame"])
    assert msg["seq"] == 2 and commands.command_args(1, msg["args"]) == {"topup_id": 2, "amount": 5500}


# refused before anything is stored: SQLite only (payments are stored on both engines)
@pytest.mark.parametrize("engine", ["sqlite"])
@pytest.mark.parametrize(
    "body",
    [
        notification(secret=b"another-secret-0123456789"),
        notification()[:-3] + b'0"}',  # the sign altered
        json.dumps({**json.loads(notification()), "amount": "300.00"}).encode(),  # the amount altered
    ],
)
def test_a_bad_signature_is_401_and_records_nothing(server, body):
    status, reply = post(server, body)
    assert status == 401 and reply["code"] == "FAIL" and "signature" in reply["message"]
    assert recorded(server.store) == ([], [], [])


# refused before anything is stored: SQLite only (payments are stored on both engines)
@pytest.mark.parametrize("engine", ["sqlite"])
@pytest.mark.parametrize(
    "body, words",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "object"),
        (json.dumps({"payment_id": "X", "account_id": "P1", "amount": "1"}).encode(), "paid_at"),
        (notification(amount="-5"), "amount"),
        (notification(amount="1.2345"), "amount"),
        (notification(account_id="NOPE"), "unknown account"),
        (notification(account_id="POST1"), "not prepaid"),
    ],
)
def test_malformed_or_unusable_notifications_are_400_and_record_nothing(server, body, words):
    status, reply = post(server, body)
    assert status == 400 and reply["code"] == "FAIL" and words in reply["message"]
    assert recorded(server.store) == ([], [], []) and server.store.commands("m2") == []


def test_a_payment_id_reused_for_another_amount_is_refused(server):
    post(server, notification())
    status, reply = post(server, notification(amount="99"))
    assert status == 400 and "already used" in reply["message"]
    assert server.store.ledger_balance("P1") == 30000


def test_other_paths_and_methods(server):
    assert post(server, notification(), path="/other")[0] == 404


def run(capsys, *argv):
    capsys.readouterr()
    code = headend_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_counter_topup_from_the_cli(db_target, capsys):  # both engines (tests/conftest.py)
    db = db_target
    prepaid_store(db).close()
    code, out, _ = run(
        capsys, "--db", db, "topup", "m1", "25.50", "--payment-id", "C-1", "--json", "--now", "1e9"
    )
    got = json.loads(out)
    assert code == 0 and (got["amount"], got["seq"], got["state"], got["duplicate"]) == (
        25500,
        1,
        "queued",
        False,
    )
    code, out, _ = run(capsys, "--db", db, "topup", "m1", "25.50", "--payment-id", "C-1", "--json")
    assert code == 0 and json.loads(out)["duplicate"] is True
    code, out, _ = run(capsys, "--db", db, "topup", "list", "--json")
    assert [(t["payment_id"], t["source"], t["state"]) for t in json.loads(out)] == [
        ("C-1", "counter", "queued")
    ]
    code, out, _ = run(capsys, "--db", db, "commands", "list", "m1", "--json")
    [c] = json.loads(out)
    assert (c["seq"], c["cmd"], c["args"], c["state"], c["expires"]) == (
        1,
        1,
        {"0": 1, "1": 25500},
        "queued",
        10**9 + 7 * 86400,
    )
    code, out, _ = run(capsys, "--db", db, "prepaid", "ledger", "P1")
    assert code == 0 and "topup" in out and "balance 25.500" in out
    code, _, err = run(capsys, "--db", db, "topup", "m1", "0", "--payment-id", "C-2")
    assert code == 1 and "amount" in err
    code, _, err = run(capsys, "--db", db, "topup", "nope", "1", "--payment-id", "C-3")
    assert code == 1 and "not linked" in err
    code, _, err = run(capsys, "--db", db, "topup", "m1", "1")
    assert code == 1 and "--payment-id" in err
    with Storage(db) as s:
        assert [t["payment_id"] for t in s.topups()] == ["C-1"]
