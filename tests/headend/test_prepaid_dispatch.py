"""The command dispatcher against a real Mosquitto: delivery, back-off, acks, expiry."""

import json

import pytest

from headend.cli import main as headend_main
from headend.commands.dispatch import Dispatcher, backoff_delay
from headend.db.storage import Storage
from headend.ingest.store import IngestBatch
from headend.prepaid.service import credit
from protocol import commands, messages, topics
from tests.headend.broker_support import MeterClient, cli_json, start_broker, wait_for
from tests.headend.prepaid_support import add_prepaid

T0 = 1709280000.0


@pytest.fixture
def setup(db_target, broker_tmp, capsys):  # both engines (tests/conftest.py)
    db = db_target
    meter = cli_json(capsys, "--db", db, "meter", "add", "m1")
    store = Storage(db)
    add_prepaid(store, "m1", "P1", key=bytes.fromhex(meter["key"]))
    broker, url = start_broker(capsys, db, str(broker_tmp / "broker"))
    sub = MeterClient("m1", meter["mqtt_password"], broker.port)
    sub.client.subscribe(topics.meter_down_filter("m1"), qos=1)
    wait_for(lambda: sub.subacks, 10, "the meter's SUBACK")
    d = Dispatcher(
        store, url, client_id="headend.dispatch-test", backoff=30, backoff_max=100, log=lambda text: None
    )
    d.connect()
    yield store, d, sub, bytes.fromhex(meter["key"]), db, url
    d.close()
    sub.close()
    store.close()
    broker.stop()


def ack(store, seq, cmd_seq, result, ts):
    batch = IngestBatch()
    batch.acks = [("m1", seq, cmd_seq, result, None, ts, ts)]
    store.commit_batch(batch)


def test_backoff_doubles_up_to_its_maximum():
    assert [backoff_delay(n, 30, 100) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_a_topup_reaches_the_meter_is_resent_with_backoff_and_stops_once_acked(setup):
    store, d, sub, key, _, _ = setup
    got = credit(store, "C-1", 12345, now=T0, meter_id="m1")
    assert d.round(T0) == {"sent": 1, "acked": 0, "failed": 0, "expired": 0}
    wait_for(lambda: sub.received, 10, "the command on the meter's down topic")
    topic, frame = sub.received[0]
    assert topic == "ami/v1/m1/down/cmd"
    msg = messages.open_frame(key, "m1", frame)
    assert (msg["type"], msg["seq"], msg["cmd"]) == (10, got["seq"], messages.CMD_TOPUP)
    assert commands.command_args(msg["cmd"], msg["args"]) == {"topup_id": 1, "amount": 12345}
    [c] = store.commands("m1")
    assert (c["state"], c["attempts"], c["next_attempt_at"]) == ("sent", 1, T0 + 30)
    assert d.round(T0 + 29)["sent"] == 0  # backing off
    assert d.round(T0 + 30)["sent"] == 1  # no ack yet: the same frame again
    wait_for(lambda: len(sub.received) == 2, 10, "the resend")
    assert sub.received[1][1] == frame and store.commands("m1")[0]["next_attempt_at"] == T0 + 30 + 60
    ack(store, 1, got["seq"], messages.ACK_DONE, int(T0) + 40)
    ack(store, 2, got["seq"], messages.ACK_DUPLICATE, int(T0) + 41)  # the resend, a duplicate
    assert d.round(T0 + 100) == {"sent": 0, "acked": 1, "failed": 0, "expired": 0}
    [c] = store.commands("m1")
    assert (c["state"], c["result"], c["ack_ts"]) == ("acked", 0, int(T0) + 40)
    assert d.round(T0 + 10**6)["sent"] == 0 and store.topups()[0]["state"] == "acked"


def test_a_failed_ack_keeps_its_reason(setup):
    store, d, _, _, _, _ = setup
    got = credit(store, "C-1", 1000, now=T0, meter_id="m1")
    d.round(T0)
    ack(store, 1, got["seq"], messages.ACK_STALE, int(T0) + 5)
    assert d.round(T0 + 1)["failed"] == 1
    [c] = store.commands("m1")
    assert (c["state"], c["result"], c["reason"]) == ("failed", 2, "stale")
    assert d.round(T0 + 10**6)["sent"] == 0


def test_an_expired_command_is_marked_and_never_sent_again(setup):
    store, d, sub, key, _, _ = setup
    credit(store, "C-1", 1000, now=T0, meter_id="m1", ttl=60)
    assert d.round(T0)["sent"] == 1
    assert d.round(T0 + 60) == {"sent": 0, "acked": 0, "failed": 0, "expired": 1}
    [c] = store.commands("m1")
    assert (c["state"], c["attempts"]) == ("expired", 1)
    credit(store, "C-2", 2000, now=T0 + 61, meter_id="m1")
    assert d.round(T0 + 10**4)["sent"] == 1  # only the new one
    # one publisher, one topic, QoS 1: in order, so once C-2 is there C-1 was not resent
    wait_for(lambda: len(sub.received) == 2, 10, "the second command")
    seqs = [messages.open_frame(key, "m1", f)["seq"] for _, f in sub.received]
    assert seqs == [1, 2] and [c["state"] for c in store.commands("m1")] == ["expired", "sent"]


def test_dispatch_once_from_the_cli(setup, capsys):
    store, _, sub, _, db, url = setup
    credit(store, "C-1", 1000, now=T0, meter_id="m1")
    capsys.readouterr()
    assert headend_main(["--db", db, "dispatch", "--broker", url, "--once", "--now", str(T0)]) == 0
    assert json.loads(capsys.readouterr().out) == {"sent": 1, "acked": 0, "failed": 0, "expired": 0}
    wait_for(lambda: sub.received, 10, "the command")
    assert store.commands("m1")[0]["state"] == "sent"


def test_a_later_command_never_overtakes_an_earlier_one_in_flight(setup):
    # the meter refuses a seq below one it has taken ("stale"): a second top-up queued while the
    # first is still unacked must reach the meter after the first, so the first goes out again with it
    store, d, sub, key, _, _ = setup
    first = credit(store, "C-1", 1000, now=T0, meter_id="m1")
    assert d.round(T0)["sent"] == 1  # the meter is away, say: no ack
    second = credit(store, "C-2", 2000, now=T0 + 5, meter_id="m1")
    assert d.round(T0 + 5)["sent"] == 2, "the earlier command is resent before the new one"
    wait_for(lambda: len(sub.received) >= 3, 10, "three frames on the meter's down topic")
    seqs = [messages.open_frame(key, "m1", f)["seq"] for _t, f in sub.received]
    assert seqs == [first["seq"], first["seq"], second["seq"]]
    ack(store, 1, first["seq"], messages.ACK_DONE, T0 + 6)
    ack(store, 2, second["seq"], messages.ACK_DONE, T0 + 6)
    assert d.round(T0 + 7)["acked"] == 2 and d.round(T0 + 100)["sent"] == 0
