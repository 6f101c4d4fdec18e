"""The dashboard's Tariffs page: two stored tariffs compared over the fleet's load profiles."""

import re

from headend.billing import parse_tariff
from headend.billing.compare import compare, read_profiles, year_window
from tests.headend import billrun_support as billrun
from tests.headend.web_support import VIEWER, Client, Clock, add_user, new_store, serving


def test_tariffs_page_compares_two_stored_tariffs(tmp_path):
    with new_store(tmp_path / "web.db") as store:
        for k in range(3):
            billrun.add_account(store, "A%d" % k, tariff=billrun.TOU if k else billrun.LADDER)
            billrun.hourly(store, "m-A%d" % k, lambda ts, k=k: billrun.tou_rates(ts, 300 * k, 100 + 50 * k))
        add_user(store, VIEWER, "viewer")
        tou, ladder = billrun.tariff_id(billrun.TOU), billrun.tariff_id(billrun.LADDER)
        with serving(store, Clock()) as (base, _server):
            c = Client(base)
            c.login(VIEWER)
            status, _, body = c.get("/tariffs")
            page = body.decode()
            assert status == 200 and 'id="compare-form"' in page and "<svg" not in page
            assert '<a href="/tariffs" class="on">Tariffs</a>' in page
            status, _, body = c.get("/tariffs?a=%s&b=%s&year=2024" % (ladder, tou))
            page = body.decode()
        tariffs = [parse_tariff(billrun.LADDER), parse_tariff(billrun.TOU)]
        start, end = year_window(tariffs[0], 2024)
        want = compare(tariffs, read_profiles(store, ["A0", "A1", "A2"], start, end), 2024)
    assert status == 200
    vs = want["fleet"]["versus_first"][0]
    counts = re.search(r'<p id="compare-counts">([^<]*)</p>', page).group(1)
    assert counts == "3 accounts: %d pay less, %d more, %d the same (0 skipped)" % (
        vs["less"],
        vs["more"],
        vs["same"],
    )
    svg = re.search(r'<figure class="chart" id="changes-chart">(<svg.*?</svg>)', page).group(1)
    assert svg.count("<rect") == 1 + 24 and "TOU against Ladder, 3 accounts, 2024" in svg
    for revenue in want["fleet"]["revenue"]:
        assert revenue in page
