"""The meter's asyncio main: the metering loop and the MQTT link as two tasks.

``await run_meter(app, broker, linger_ms=0)``: ``app`` is a booted
firmware.app.App with comms (reporter + outbox); ``broker`` is config
"broker" ({host, port, user, password}). The metering loop (``app.astep``)
runs while ``board.running()`` (always, on boards); the link
(firmware/comms.py) runs beside it and gets the CPU whenever the loop sleeps.
When the loop ends (the emulator's scenario is over) the link gets up to
``linger_ms`` real ms to empty the outbox and run commands (and, however
slow the host, until the broker has answered its first connection attempt:
Comms.drain, so ``comms.state`` says what the broker said), then stops
without a clean DISCONNECT (the broker publishes the will), and the state is
saved with the clean mark. Returns the Comms object (its counters).
"""

import asyncio

from firmware.comms import Comms


async def run_meter(app, broker, linger_ms=0, reconnect_max_ms=300000):
    comms = Comms(app, broker, reconnect_max_ms)
    task = asyncio.create_task(comms.run())
    board = app.board
    steps = 0
    while board.running():
        await app.astep()
        steps += 1
    if linger_ms:
        await comms.drain(linger_ms)
    comms.stop()
    await asyncio.sleep_ms(0)
    task.cancel()
    app.steps = steps
    return comms
