"""The JSON API under /api/ (read-only) and the pages' content, as a signed-in operator."""

import json
import secrets

import pytest

from tests.conftest import ENGINES
from tests.headend.alerts_support import NOW
from tests.headend.web_support import TODAY, VIEWER, Client, build_fleet, new_store, serving


@pytest.fixture(scope="module", params=ENGINES)
def site(request, tmp_path_factory):
    """The dashboard over one fleet, on each engine (a SQLite file, a PostgreSQL schema)."""
    tmp = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "sqlite":
            target = str(tmp / "web.db")
        else:
            pg = request.getfixturevalue("pg_session")
            if pg.url is None:
                pytest.skip(pg.why_not)
            mp.setenv("HEADEND_MASTER_KEY_FILE", str(tmp / "pg.master-key"))
            target = pg.schema_url("web_" + secrets.token_hex(6))
        with new_store(target) as store:
            ids = build_fleet(store)
            with serving(store) as (base, _):
                c = Client(base)
                assert c.login()[0] == 303
                yield store, ids, c


def get_json(c, path, status=200):
    got, headers, body = c.get(path)
    assert got == status, (path, body)
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


def test_fleet_and_meters(site):
    _, _, c = site
    fleet = get_json(c, "/api/fleet")
    assert (fleet["meters"], fleet["online"], fleet["offline"], fleet["alerts"]["open"]) == (5, 2, 3, 3)
    assert fleet["today"] == "2024-03-17" and fleet["energy_today_wh"] > 0 and fleet["now"] == NOW
    meters = {m["meter_id"]: m for m in get_json(c, "/api/meters")}
    assert meters["m1"]["account_id"] == "A1" and meters["m1"]["alerts"] == 2 and meters["m2"]["online"] == 0
    assert [m["meter_id"] for m in get_json(c, "/api/meters?state=offline")] == ["m-b-held", "m-b-key", "m2"]
    assert [m["meter_id"] for m in get_json(c, "/api/meters?limit=2&after=m-b-key")] == ["m1", "m2"]


def test_one_meter_its_profile_and_events(site):
    _, _, c = site
    m = get_json(c, "/api/meters/m1")
    assert m["fw"] == "1.2.3" and m["bills"][0]["account_id"] == "A1" and "key" not in m
    p = get_json(c, "/api/meters/m1/profile?day=2024-03-16")
    assert (p["from"], p["step"], p["rates"], len(p["buckets"])) == (TODAY - 86400, 900, 4, 96)
    week = get_json(c, "/api/meters/m1/profile?day=2024-03-16&days=7")
    assert week["step"] == 3600 and len(week["buckets"]) == 168
    assert sum(week["totals_wh"]) > sum(p["totals_wh"]) > 0
    events = get_json(c, "/api/meters/m1/events")
    assert [e["code"] for e in events] == [17, 3]
    assert get_json(c, "/api/meters/m1/events?limit=1")[0]["code"] == 17
    assert "day must be YYYY-MM-DD" in get_json(c, "/api/meters/m1/profile?day=16.3.2024", 400)["error"]
    assert get_json(c, "/api/meters/m1/events?limit=0", 400)["error"].startswith("limit must be")
    assert get_json(c, "/api/meters/nope/profile", 404) == {"error": "unknown meter 'nope'"}


def test_bills_review_queue_and_one_bill(site):
    _, ids, c = site
    got = get_json(c, "/api/bills")
    queue = {b["account_id"]: b for b in got["review_queue"]}
    assert queue["b-held"]["state"] == "held" and queue["b-key"]["state"] == "review"
    assert got["cycles"][0]["cycle"] == "2024-02"
    cycle = get_json(c, "/api/bills?cycle=2024-02&state=review")
    assert [b["account_id"] for b in cycle["bills"]] == ["b-key"]
    bill = get_json(c, "/api/bills/%d" % ids["held"])
    assert (
        bill["reasons"][0].startswith("estimated data")
        and bill["audit"] == []
        and "rendered_html" not in bill
    )
    assert get_json(c, "/api/bills?cycle=2024-02&state=lost", 400)["error"].startswith("state must be")
    assert get_json(c, "/api/bills/999", 404) == {"error": "unknown bill 999"}


def test_prepaid_and_topups(site):
    _, ids, c = site
    accounts = get_json(c, "/api/prepaid")
    assert accounts == [
        {
            "account_id": "P1",
            "name": None,
            "meter_id": "m3",
            "ledger_balance": 30000,
            "meter_balance": None,
            "in_flight": 1,
        }
    ]
    acc = get_json(c, "/api/prepaid/P1")
    assert acc["balance"] == 30000 and acc["ledger"][0]["delivery"] == "queued"
    [t] = get_json(c, "/api/topups")
    assert (t["payment_id"], t["command_id"], t["state"], t["seq"]) == (
        "PAY-1",
        ids["topup_command"],
        "queued",
        1,
    )
    assert get_json(c, "/api/prepaid/A1", 404)["error"] == "unknown prepaid account 'A1'"


def test_alerts_and_work_orders(site):
    _, ids, c = site
    active = get_json(c, "/api/alerts")
    assert {a["rule"] for a in active} == {"tamper", "line_neutral_mismatch", "comm_loss"}
    assert get_json(c, "/api/alerts?state=resolved") == []
    assert [a["meter_id"] for a in get_json(c, "/api/alerts?state=all&meter=m2")] == ["m2"]
    alert = get_json(c, "/api/alerts/%d" % ids["tamper"])
    assert alert["evidence"]["count"] == 1 and alert["audit"][0]["action"] == "open"
    [wo] = get_json(c, "/api/workorders")
    assert wo["id"] == ids["work_order"] and wo["location"] == "1 Main St (zone Z1)"
    assert get_json(c, "/api/workorders/%d" % ids["work_order"])["state"] == "open"
    assert get_json(c, "/api/workorders?state=closed") == []
    assert get_json(c, "/api/alerts?state=bogus", 400)["error"].startswith("state must be")


def test_the_api_is_read_only(site):
    store, ids, c = site
    status, _, body = c.post("/api/alerts/%d" % ids["tamper"], {"csrf": c.csrf()})
    assert status == 405 and json.loads(body) == {"error": "method not allowed"}
    assert store.alert(ids["tamper"])["state"] == "open"


def test_pages_show_the_data(site):
    _, ids, c = site
    for path, texts in (
        ("/", [b"Fleet overview", b"m2", b"b-held"]),
        ("/meters", [b"m1", b"A1", b"offline"]),
        (
            "/meters/m1?day=2024-03-16&days=7",
            [
                b'id="load-profile"',
                b"tamper cover",
                b"current mismatch",
                b"A1 (postpaid, 1 Main St, zone Z1)",
            ],
        ),
        ("/bills", [b"Review queue", b"b-held", b"b-key", b"2024-02"]),
        ("/bills?cycle=2024-02", [b"Cycle 2024-02", b"b-key"]),
        ("/prepaid", [b"P1", b"30.000", b"PAY-1", b"queued"]),
        ("/prepaid/P1", [b"Ledger balance", b"30.000", b"PAY-1"]),
        ("/alerts", [b"tamper", b"comm_loss"]),
        ("/alerts/%d" % ids["tamper"], [b"Suggested action", b"Acknowledge", b"Resolve"]),
        ("/workorders", [b"1 Main St"]),
        ("/workorders/%d" % ids["work_order"], [b"Close with findings"]),
    ):
        status, _, body = c.get(path)
        assert status == 200, path
        for text in texts:
            assert text in body, (path, text)
    assert c.get("/meters/m1?days=99")[0] == 400
    assert c.get("/meters/nope")[0] == 404


def test_a_viewer_reads_the_same_api(site):
    store, _, c = site
    v = Client("http://%s:%s" % (c.host, c.port))
    v.login(VIEWER)
    assert get_json(v, "/api/me")["role"] == "viewer"
    assert get_json(v, "/api/fleet")["meters"] == 5
