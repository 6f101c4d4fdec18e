"""The dashboard in a real headless Chromium (Debian's ``chromium`` driven by Playwright through
``executable_path``; nothing downloaded): the login flow, approving a held bill and
acknowledging an alert through the pages, closing a work order, a viewer's read-only view,
and a screenshot of the meter page with its load-profile chart."""

import pathlib
import shutil

import pytest
from playwright import sync_api

from headend.web import charts
from tests.headend.web_support import (
    OPERATOR,
    PASSWORD,
    VIEWER,
    build_fleet,
    colours,
    decode_png,
    new_store,
    serving,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make chromium` (tools/ensure_chromium.sh)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def site(tmp_path, browser):
    with new_store(tmp_path / "web.db") as store:
        ids = build_fleet(store)
        with serving(store) as (base, _):
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            yield store, ids, base, context
            context.close()


def login(page, base, user=OPERATOR, password=PASSWORD, path="/"):
    page.goto(base + path)
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("#login button[type=submit]")
    page.wait_for_load_state()


def test_login_flow(site):
    _, _, base, context = site
    page = context.new_page()
    page.goto(base + "/alerts")
    assert page.url == base + "/login?next=%2Falerts"
    login(page, base, OPERATOR, "not the password", "/login?next=%2Falerts")
    assert "Wrong user name or password." in page.inner_text(".error")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_load_state()
    assert page.url == base + "/alerts" and page.inner_text("h1") == "Alerts"
    cookie = next(c for c in context.cookies() if c["name"] == "headend_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.goto(base + "/")
    cards = page.inner_text("#fleet-cards")
    assert "online" in cards and "open alerts" in cards and "kWh" in cards
    page.click("header button[type=submit]")  # log out
    page.wait_for_load_state()
    assert page.url == base + "/login"
    page.goto(base + "/")
    assert page.url.startswith(base + "/login")


def test_approve_a_held_bill_through_the_page(site):
    store, ids, base, context = site
    page = context.new_page()
    login(page, base, path="/bills")
    page.click("text=b-held")
    page.wait_for_load_state()
    assert page.url == base + "/bills/%d" % ids["held"]
    assert "estimated data 4.00 days" in page.inner_text("main")
    page.fill("form[data-form=approve] input[name=reason]", "estimates checked with the field crew")
    page.click("form[data-form=approve] button")
    page.wait_for_load_state()
    assert page.inner_text("#done") == "The bill was approved and released."
    bill = store.bill_by_id(ids["held"])
    assert bill["state"] == "approved"
    audit = store.bill_audit(ids["held"])[-1]
    assert (audit["action"], audit["user"], audit["reason"]) == (
        "approve",
        OPERATOR,
        "estimates checked with the field crew",
    )
    assert page.locator("form[data-form=approve]").count() == 0  # nothing left to approve


def test_correct_a_bill_through_the_page(site):
    store, ids, base, context = site
    page = context.new_page()
    login(page, base, path="/bills/%d" % ids["review"])
    before = store.bill_by_id(ids["review"])["total"]
    page.fill("form[data-form=correct] input[name=amount]", "-2.50")
    page.fill("form[data-form=correct] input[name=reason]", "goodwill")
    page.click("form[data-form=correct] button")
    page.wait_for_load_state()
    after = store.bill_by_id(ids["review"])
    assert float(after["total"]) == pytest.approx(float(before) - 2.5)
    assert page.inner_text("#bill-total").startswith(after["total"])
    page.fill("form[data-form=correct] input[name=amount]", "1.005")  # finer than the minor unit
    page.fill("form[data-form=correct] input[name=reason]", "x")
    page.click("form[data-form=correct] button")
    page.wait_for_load_state()
    assert "more decimals than the bill's minor unit" in page.inner_text("#error")
    assert store.bill_by_id(ids["review"])["total"] == after["total"]


def test_acknowledge_an_alert_through_the_page(site):
    store, ids, base, context = site
    page = context.new_page()
    login(page, base, path="/alerts")
    page.click("a[href='/alerts/%d']" % ids["tamper"])
    page.wait_for_load_state()
    page.fill("form[data-form=ack] input[name=note]", "crew sent")
    page.click("form[data-form=ack] button")
    page.wait_for_load_state()
    assert page.inner_text("#done") == "The alert was acknowledged."
    assert store.alert(ids["tamper"])["state"] == "acknowledged"
    audit = store.alert_audit(ids["tamper"])[-1]
    assert (audit["action"], audit["user"], audit["note"]) == ("acknowledge", OPERATOR, "crew sent")
    assert (
        page.locator("form[data-form=ack]").count() == 0
        and page.locator("form[data-form=resolve]").count() == 1
    )


def test_close_a_work_order_with_findings(site):
    store, ids, base, context = site
    page = context.new_page()
    login(page, base, path="/workorders/%d" % ids["work_order"])
    page.fill("form[data-form=close] textarea[name=findings]", "bypass cable removed, meter sealed")
    page.click("form[data-form=close] button")
    page.wait_for_load_state()
    wo = store.work_order(ids["work_order"])
    assert (wo["state"], wo["closed_by"], wo["findings"]) == (
        "closed",
        OPERATOR,
        "bypass cable removed, meter sealed",
    )
    assert store.alert(wo["alert_id"])["state"] == "resolved"
    assert "bypass cable removed" in page.inner_text("main")


def test_a_viewer_sees_no_forms_and_a_forged_post_is_refused(site):
    store, ids, base, context = site
    page = context.new_page()
    login(page, base, VIEWER, PASSWORD, "/bills/%d" % ids["held"])
    assert page.inner_text("h1").startswith("Bill b-held")
    assert page.locator("form.act").count() == 0
    csrf = page.get_attribute("header input[name=csrf]", "value")
    resp = context.request.post(
        base + "/bills/%d/approve" % ids["held"], form={"csrf": csrf, "reason": "x"}, max_redirects=0
    )
    assert resp.status == 403
    assert store.bill_by_id(ids["held"])["state"] == "held"


def test_meter_page_screenshot_with_its_chart(site, tmp_path):
    _, _, base, context = site
    page = context.new_page()
    login(page, base, path="/meters/m1?day=2024-03-16")
    chart = page.locator("svg#load-profile")
    assert chart.count() == 1
    bars = page.locator("svg#load-profile rect.bar")
    assert bars.count() >= 90  # one segment per 15-minute interval of the day
    heights = {round(float(h), 1) for h in bars.evaluate_all("els => els.map(e => e.getAttribute('height'))")}
    assert len(heights) > 10
    rates = set(bars.evaluate_all("els => els.map(e => e.dataset.rate)"))
    assert rates == {"1", "2", "3", "4"}
    shot = page.screenshot(full_page=True)
    (tmp_path / "meter.png").write_bytes(shot)
    out = ROOT / "build" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    (out / "meter.png").write_bytes(shot)
    width, height, _ = decode_png(shot)
    assert width == 1200 and height > 900
    _, _, rows = decode_png(chart.screenshot())
    seen = colours(rows)
    assert len(seen) > 8
    for hex_colour in charts.COLOURS[:4]:  # every rate's colour is on screen
        assert bytes.fromhex(hex_colour[1:]) in seen, hex_colour
