"""The run loop shared by every board: boot, then poll -> meter.step -> persist -> watchdog -> sleep.

``App(board)``; ``boot()`` loads config.json from ``board.flash_dir``
(protocol.board_config), restores the meter state from the two-slot store
(firmware.persist + firmware.meter_state), sets the clock
(``board.clock_at_boot``), raises the boot events (1 power down when the
previous run did not end with a clean save, 2 power up, 13 watchdog reset,
20 storage recovery, 18 when the metering IC rejects its calibration: fatal,
metering stops but the loop keeps the clock, relay and persistence going),
and saves once (marked unclean) so a later power cut is recognised.

A calibration it cannot trust is refused the same way, before the front end is touched
(``untrusted_calibration``): config.json without a ``calibration`` section (or an empty one),
an ATM90E26 calibration that leaves every gain, phase and offset at the chip's power-on
default, or an ADC calibration without its measured ``v_scale`` and ``i_scale``. Such a
meter would meter several % off (the sensors' errors uncorrected), so it does not meter at
all: event 18 with detail 0 = 3 (docs/protocol-extensions.md), registers frozen, readings
without ``inst``; ``metering_fault`` says why (the emulator prints it). A chip that rejects
the calibration it was given (CS1/CS2 read back wrong, CalErr/AdjErr) is detail 2.

``step()`` is one pass of the loop; ``run(max_steps=None)`` repeats it while
``board.running()``; ``shutdown()`` saves with the clean mark. A pass sleeps
``wait_ms()`` = the poll period (config poll_ms, or ``poll_ms`` given to App),
shortened so it ends exactly at the next tariff boundary or persist deadline,
then polls the front end into meter.out, steps the meter by the elapsed
time, applies the relay, saves when the persist policy says so, and feeds
the watchdog. Boot-only modules (protocol.board_config, firmware.atm90e26_cal,
the register map) are dropped from memory after boot (``unload``).
``probe`` (optional) is called with a label at the heap's high-water points
(after calibration, inside saves) so the emulator can measure its peak.
"""

import gc

from firmware import hal, meter_state
from firmware import meter_events as ev
from firmware.compat import unload
from firmware.meter import NEVER, Meter

CONFIG_NAME = "config.json"
OUTBOX_DIR = "outbox"
WDT_MS = 8000  # RP2040's maximum is 8388 ms
WHY_REJECTED = "the metering IC rejected its calibration (CS1/CS2 or CalErr/AdjErr): event 18 detail 2"


def untrusted_calibration(cfg):
    """Why config ``cfg``'s calibration cannot be trusted (a str), or None (boot only)."""
    cal = cfg["calibration"]
    if not cal:
        return "config.json has no calibration: the meter refuses to meter uncalibrated (event 18 detail 3)"
    if cfg["frontend"] == "atm90e26":
        from firmware.atm90e26_cal import never_calibrated

        if never_calibrated(cal):
            return (
                "the calibration leaves every ATM90E26 gain, phase and offset at the chip's default"
                " (never calibrated): metering refused (event 18 detail 3)"
            )
    elif "v_scale" not in cal or "i_scale" not in cal:
        return "the ADC calibration lacks its measured v_scale/i_scale: metering refused (event 18 detail 3)"
    return None


class App:
    def __init__(self, board, poll_ms=None, probe=None, comms=False):
        self.board = board
        self.comms = comms  # report through the flash outbox (firmware/report.py)
        self.reporter = None
        self.outbox = None
        self.cmdx = None
        self.poll_ms = poll_ms or 0  # 0 until boot: config poll_ms
        self.probe = probe
        self.meter = None
        self.fe = None
        self.store = None
        self.policy = None
        self.restored = False
        self.state_error = None
        self.boot_ts = None
        self.prepaid_cfg = None
        self.metering_fault = None  # why metering was refused at boot (untrusted_calibration)
        self.steps = 0  # passes of the loop (firmware/runner.py)

    def boot(self):
        from firmware import persist
        from protocol import board_config as config

        b = self.board
        cfg = config.load(b.flash_dir + "/" + CONFIG_NAME)
        del config
        unload("protocol.board_config")
        m = Meter(cfg)
        self.meter = m
        if not self.poll_ms:
            self.poll_ms = cfg["poll_ms"]
        store = persist.SlotStore(b.flash_dir, meter_state.STATE_NAME)
        self.store = store
        state, self.state_error = meter_state.read(store)
        ts, ms = b.clock_at_boot(*meter_state.clock_of(state))
        m.set_clock(ts, ms)
        self.boot_ts = ts
        if state is not None:
            meter_state.apply_state(m, state)
            self.restored = True
        elif cfg["prepaid"]["enabled"]:
            from firmware.prepaid import Prepaid

            p = cfg["prepaid"]
            m.enable_prepaid(Prepaid(0, p["low_balance"], p["emergency_credit"], p["friendly_hours"]))
        m.boot_count += 1
        if state is not None and not state.get("clean"):
            m.raise_event(ev.EV_POWER_DOWN)
        m.raise_event(ev.EV_POWER_UP)
        if b.reset_cause() == hal.RESET_WATCHDOG:
            m.raise_event(ev.EV_WATCHDOG)
        if store.recovered or self.state_error is not None:
            m.storage_recoveries += 1
            m.raise_event(ev.EV_STORAGE)
        self.fe = b.frontend(cfg)
        why = untrusted_calibration(cfg)
        if why is not None:
            m.fault(ev.FAULT_UNCALIBRATED)
        elif not self.fe.calibrate(cfg["calibration"]):
            m.fault(ev.FAULT_CALIBRATION)
            why = WHY_REJECTED
        self.metering_fault = why  # None while metering
        if self.probe is not None:
            self.probe("calibrated")
        unload("firmware.atm90e26_cal", "firmware.atm90e26_reg")
        self.policy = meter_state.PersistPolicy(cfg["persist_wh"], cfg["persist_interval"], m.sec, self.probe)
        self.prepaid_cfg = cfg["prepaid"]
        self.broker_cfg = cfg["broker"]
        self.wifi_cfg = cfg["wifi"]
        if self.comms:
            self._boot_comms(cfg, state)
        b.set_relay(m.relay_closed)
        self._relay = m.relay_closed
        self.has_inputs = hasattr(b, "inputs")
        self.has_commands = hasattr(b, "commands")  # the emulator's scripted commands
        if self.reporter is not None and m.events.unsent:
            self.reporter.drain_events()  # the boot events
        self.save()
        b.wdt_start(WDT_MS)
        b.elapsed_ms()  # the first step counts from here
        del persist, cfg
        gc.collect()
        return m

    def _boot_comms(self, cfg, state):
        from firmware.commands_exec import CommandExec
        from firmware.outbox import Outbox
        from firmware.report import Reporter

        ob = Outbox(self.board.flash_dir + "/" + OUTBOX_DIR, cfg["outbox_kb"] * 1024).open()
        m = self.meter
        if ob.recovered:
            m.raise_event(ev.EV_STORAGE)
        self.outbox = ob
        rep = Reporter(m, cfg, ob, self.board.name)
        rep.clock_synced = getattr(self.board, "clock_synced", True)
        rep.restore(state)
        rep.reconcile(m.seq)
        self.reporter = rep
        self.cmdx = CommandExec(self)

    def _tamper(self, new):
        """Latch newly tripped tamper switches (bit 0 cover, bit 1 magnet): events 3 / 4, flag bit 2."""
        m = self.meter
        m.tamper |= new
        if new & 1:
            m.raise_event(ev.EV_COVER)
        if new & 2:
            m.raise_event(ev.EV_MAGNET)

    def save(self, clean=False):
        """Persist the meter's state now (with the reporter's progress)."""
        rep = self.reporter
        self.policy.save(self.meter, self.store, clean, rep.extra() if rep is not None else None)

    def set_clock(self, ts):
        """Time sync: move the meter's clock to ``ts`` (event 11 with the old and new time)."""
        m = self.meter
        old = m.now()
        old_sec = m.sec
        m.set_clock(ts, 0)
        self.policy.last_sec -= old_sec
        # detail [v0, v1] (meter_events): pyright types the parameter int from its default
        m.raise_event(ev.EV_CLOCK_ADJUSTED, [old, ts])  # pyright: ignore[reportArgumentType]
        if self.reporter is not None:
            self.reporter.clock_synced = True

    def wait_ms(self):
        """The next sleep: the poll period, cut to end at a tariff boundary or the persist deadline."""
        m = self.meter
        w = self.poll_ms
        d = m.next_change_sec - m.sec
        if m.next_change_sec != NEVER and d <= w // 1000 + 1:
            d = d * 1000 - m.ms
            if d < w:
                w = d
        d = self.policy.ms_to_deadline(m)
        if d < w:
            w = d
        if self.reporter is not None:
            d = self.reporter.ms_to_next()
            if d < w:
                w = d
        return w if w > 0 else 1

    def step(self):
        self.board.sleep_ms(self.wait_ms())
        self.tick()

    async def astep(self):
        """``step`` for the asyncio loop (firmware/comms.py): the board's sleep lets other tasks run."""
        await self.board.asleep_ms(self.wait_ms())
        self.tick()

    def tick(self):
        """Everything after the sleep: poll, meter step, tamper, relay, reports, persistence, watchdog."""
        b = self.board
        m = self.meter
        dt = b.elapsed_ms()
        # with the relay open the load is disconnected: one window (dt 0) still shows a current that
        # flows anyway (a bypass), without the low-current averaging of the ADC front end
        ok = self.fe.poll(m.out, dt if m.relay_closed else 0) if m.metering else True
        rep = self.reporter
        if rep is not None:
            rep.tariff_before = m.tariff_id()
        m.step(dt, ok)
        if self.has_inputs:
            t = b.inputs() & ~m.tamper & 3
            if t:
                self._tamper(t)
        if rep is not None:
            if self.has_commands:
                for frame in b.commands():
                    self.cmdx.handle(frame)
            if rep.due():
                rep.reading()
            if m.events.unsent:
                rep.drain_events()
        if m.relay_closed != self._relay:
            self._relay = m.relay_closed
            b.set_relay(self._relay)
        if self.policy.due(m):
            self.save()
        b.wdt_feed()

    def run(self, max_steps=None):
        n = 0
        while self.board.running() and (max_steps is None or n < max_steps):
            self.step()
            n += 1
        return n

    def shutdown(self):
        """Save with the clean mark (no power-down event at the next boot)."""
        if self.outbox is not None:
            self.outbox.sync()
        self.save(True)
