"""``install(app, setup)``: what a test bench gives a booted meter before it runs a scenario.

Used by the emulator's firmware process (emulator/main.py) and the HIL agent on
a board (hil_tests/targets/board_agent.py). ``setup`` may hold ``tariff`` (set-tariff
args, docs/protocol.md command 3, keys as JSON strings), installed unless the meter already
has that tariff id in force or pending, and ``prepaid`` ({"balance": milli-units}), the
opening balance of a meter that is not prepaid yet (its settings from config "prepaid").
"""


def install(app, setup):
    m = app.meter
    tariff = setup.get("tariff")
    if tariff is not None:
        from protocol.tariff_calendar import tariff_from_json

        t = tariff_from_json(tariff)
        have = [x[0] for x in (m.tariff, m.pending) if x is not None]
        if t[0] not in have:
            m.set_tariff(t)
    prepaid = setup.get("prepaid")
    if prepaid is not None and m.prepaid is None:
        from firmware.prepaid import Prepaid

        p = app.prepaid_cfg
        m.enable_prepaid(
            Prepaid(prepaid.get("balance", 0), p["low_balance"], p["emergency_credit"], p["friendly_hours"])
        )
