"""The dashboard in a real headless Chromium (Debian's ``chromium`` driven by Playwright through
``executable_path``; nothing downloaded): the login flow, approving a held bill and
acknowledging an alert through the pages, closing a work order, a viewer's read-only view,
a screenshot of the meter page with its load-profile chart; the pages on a 390 px phone
screen, and values as a person reads them (no None, named fields, ISO times, currency)."""

import pathlib
import re
import shutil

import pytest
from playwright import sync_api

from headend.web import charts
from protocol import messages
from tests.headend.alerts_support import NOW, add_event
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


# ------------------------------------------------------------ readable values, phone width

PHONE = {"width": 390, "height": 844}


def rows_after(heading: str) -> str:
    """The body rows of the table that follows an h2 (the table itself or inside a box)."""
    return "xpath=//h2[.='%s']/following-sibling::*[1]/descendant-or-self::table[1]/tbody/tr" % heading


@pytest.fixture
def phone(site, browser):
    store, ids, base, _ = site
    context = browser.new_context(viewport=PHONE, device_scale_factor=1)
    yield store, ids, base, context
    context.close()


def test_every_main_page_fits_a_phone_screen_with_its_header_links_readable(phone):
    store, ids, base, context = phone
    page = context.new_page()
    login(page, base)
    held = store.bill("A1", "2024-02")["id"]
    tou = store.account("A1")["tariff_id"]
    paths = [
        "/",
        "/meters",
        "/meters/m1",
        "/bills",
        "/bills?cycle=2024-02",
        "/bills/%d" % held,
        "/bills/%d" % ids["review"],
        "/prepaid",
        "/prepaid/P1",
        "/alerts",
        "/alerts/%d" % ids["tamper"],
        "/workorders",
        "/workorders/%d" % ids["work_order"],
        "/tariffs",
        "/tariffs?a=%s&b=%s&year=2024" % (tou, tou),
    ]
    out = ROOT / "build" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        page.goto(base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
        controls = page.locator("header a, header button")
        assert controls.count() == 8, path  # seven links and Log out
        for i in range(controls.count()):
            el = controls.nth(i)
            assert el.is_visible(), (path, el.inner_text())
            box = el.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (
                path,
                el.inner_text(),
                box,
            )
            assert box["y"] >= 0 and box["height"] >= 10, (path, el.inner_text(), box)
        # nothing in the header covers a link: the link is what is hit at its centre
        for i in range(controls.count()):
            box = controls.nth(i).bounding_box()
            hit = page.evaluate(
                "([x, y]) => document.elementFromPoint(x, y).closest('a, button')?.textContent",
                [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
            )
            assert hit == controls.nth(i).inner_text(), (path, hit)
    page.goto(base + "/meters/m1")
    (out / "meter-phone.png").write_bytes(page.screenshot(full_page=True))
    page.goto(base + "/bills/%d" % ids["review"])
    (out / "bill-phone.png").write_bytes(page.screenshot(full_page=True))


def test_a_held_bill_without_energy_says_why_instead_of_none(site):
    store, _, base, context = site
    bill = store.bill("A1", "2024-02")
    assert bill["state"] == "held" and bill["energy_kwh"] is None and bill["kwh_by_rate"] is None
    page = context.new_page()
    login(page, base, path="/bills/%d" % bill["id"])
    text = page.inner_text("main")
    assert "None" not in text and "null" not in text
    why = "not measured: the bill is held: no load profile and no boundary reads"
    energy = page.inner_text("table.kv tr:has(th:text-is('energy')) td")
    assert energy.startswith("\u2014") and why in energy
    assert why in page.inner_text("#kwh-by-rate")
    assert page.inner_text("table.kv tr:has(th:text-is('tariff')) td") == "TOU"
    assert "t-" not in page.inner_text("table.kv")


def test_a_bill_shows_kwh_by_rate_as_a_table_with_the_tariffs_period_names(site):
    _, ids, base, context = site
    page = context.new_page()
    login(page, base, path="/bills/%d" % ids["review"])
    rows = page.locator("#kwh-by-rate table tbody tr")
    got = [tuple(c.strip() for c in r.split("\t")) for r in rows.all_inner_texts()]
    assert got == [("T1", "peak", "104.400 kWh"), ("T2", "valley", "69.600 kWh")]
    assert page.locator("#kwh-by-rate pre").count() == 0 and "{" not in page.inner_text("main")
    assert page.inner_text("#bill-total") == "78.08 CNY"
    assert "Energy\t\t73.08 CNY" in page.inner_text("main")


def test_event_details_and_evidence_read_as_named_fields_and_iso_times(site):
    store, ids, base, context = site
    ts = NOW - 3 * 3600
    add_event(store, "m1", 3, ts, messages.EVT_CLOCK_ADJUSTED, {0: ts - 7200, 1: ts})
    add_event(store, "m1", 4, ts + 10, messages.EVT_TOPUP_APPLIED, {0: 2, 1: 120000})
    add_event(store, "m1", 5, ts + 20, messages.EVT_CMD_REJECTED, {0: 0, 1: 7, 2: 3})
    add_event(store, "m1", 6, ts + 30, messages.EVT_TARIFF_ACTIVATED, {0: 1290689797})
    page = context.new_page()
    login(page, base, path="/meters/m1")
    rows = {r.split("\t")[0].strip(): r for r in page.locator(rows_after("Events")).all_inner_texts()}
    assert "old: 2024-03-17T01:00:00Z, new: 2024-03-17T03:00:00Z" in rows["3"]
    assert "topup id: 2, amount: 120.000 CNY" in rows["4"]
    assert "cmd seq: 0, reason: authentication failed, count: 3" in rows["5"]
    assert "tariff: 1290689797" in rows["6"]
    assert "in_ma: 5000" in rows["2"] and "open: 1" in rows["1"]
    for r in rows.values():
        assert not re.search(r"\b\d+=", r) and "2024-03-17T" in r, r
    page.goto(base + "/alerts/%d" % ids["tamper"])
    evidence = page.inner_text("#evidence")
    assert "first event\t2024-03-17T04:00:00Z" in evidence and "tamper cover (3)" in evidence
    assert "1710648000" not in evidence and '"' not in evidence and "{" not in evidence
    comm = next(a for a in store.alerts(meter_id="m2") if a["rule"] == "comm_loss")
    page.goto(base + "/alerts/%d" % comm["id"])
    evidence = page.inner_text("#evidence")
    assert "silent\t16 d 6 h" in evidence and "interval\t15 min" in evidence
    assert "last seen\t2024-03-01T00:00:00Z" in evidence and "1382400" not in evidence


def test_balances_read_as_currency_amounts(site):
    _, _, base, context = site
    page = context.new_page()
    login(page, base, path="/prepaid")
    row = page.locator(rows_after("Accounts")).first.inner_text()
    assert "30.000 CNY" in row
    topup = page.locator(rows_after("Latest top-ups")).first.inner_text()
    assert "30.000 CNY" in topup
    page.goto(base + "/prepaid/P1")
    assert page.inner_text("#ledger-balance") == "30.000 CNY"


def test_the_meter_page_opens_on_the_last_seven_whole_days(site):
    _, _, base, context = site
    page = context.new_page()
    login(page, base, path="/meters/m1")
    assert page.input_value("#day-picker input[name=day]") == "2024-03-16"  # the last whole day
    assert page.input_value("#day-picker select[name=days]") == "7"
    assert "2024-03-10 to 2024-03-16" in page.inner_text("#profile-note")
    starts = page.locator("svg#load-profile rect.bar title").evaluate_all(
        "els => els.map(e => e.textContent)"
    )
    days = {t[:10] for t in starts}
    assert days == {"2024-03-%02d" % d for d in range(10, 17)}, sorted(days)
    legend = page.locator("svg#load-profile text").evaluate_all("els => els.map(e => e.textContent)")
    assert "peak" in legend and "valley" in legend  # the tariff's periods name rates 1 and 2
    page.click("text=Show 2024-03-17")  # the day in progress is one click away
    page.wait_for_load_state()
    assert page.input_value("#day-picker input[name=day]") == "2024-03-17"
