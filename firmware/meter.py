"""The pure meter core: energy registers per tariff rate, clock, tariff, prepaid, relay, events.

``Meter(cfg)`` takes a validated config (protocol.board_config) and never reads a
clock or hardware: the board's loop (firmware.app) polls the front end into
``meter.out`` and calls ``meter.step(dt_ms, ok)``.

Time. ``set_clock(ts, ms=0)`` sets ``epoch`` (unix s, a big int on 32-bit
ports) and restarts the small relative clock ``sec`` (s since epoch, < 2**30
for 34 years) + ``ms`` (0..999) that ``step`` advances. Rate boundaries are
precomputed as ``next_change_sec`` (relative; protocol.tariff_calendar's
next_change, or a pending tariff's activate_at; the calendar module is
imported only once a tariff is set) so the hot path only
compares small ints; calendar work (allocating) happens only at boundaries,
and the minute tick for prepaid at most once a simulated minute.

Energy. Layout of ``out`` (both front ends): out[0..3] ATM90E26 counts
(fwd/rev active, fwd/rev reactive; 0.1 pulse; Wh = count*100/MC), out[4]
Urms 0.01 V, out[5] Irms mA, out[6] P W, out[7] Q var, out[8] PF x1000,
out[9] 0.01 Hz, out[10] neutral Irms mA, out[11] status, out[12] P mW and
out[13] Q mvar (ADC only).
  ATM90E26: Registers(rates, MC): units = count*100 (1/MC Wh). Reactive
    counts go to quadrants by the sign of P: fwd Q -> Q1 (P >= 0) or Q2,
    rev Q -> Q4 (P >= 0) or Q3. The chip applies its own no-load threshold.
  ADC: Registers(rates, 3_600_000): units = mWs from energy.Integrator
    (exact, remainder per direction; reactive one slot per quadrant). Steps
    longer than energy.MAX_DT_MS are integrated in 60 s pieces. |P| or |Q|
    below ``noload_mw`` = 0.0025 Ib Un counts as 0 (no creep; the class 1
    starting current 0.004 Ib at PF 1 is 1.6x above it).
Energy of a step goes to the rate in force at the step's START (the
emulator never lets a step cross a boundary; a board's error is at most one
poll period of energy at each switch).

Persist policy inputs: ``pend_wh`` (+ ``pend_units``) counts active energy
(import + export) since the last persist; ``persist_request`` is set by
events, rate switches and tariff activation (firmware.meter_state decides).

``step`` allocates nothing in steady state (proved under heap_lock in
tests/dual/test_meter.py) while the Wh registers stay below 2**30.
"""

from micropython import const

from firmware import energy
from firmware import meter_events as ev

# set-tariff args keys (protocol.tariff_calendar, imported only once a tariff is set)
_ID = const(0)
_ACTIVATE_AT = const(1)
_PRICES = const(2)
_UTC_OFFSET = const(7)

NEVER = const(0x3FFFFFFF)  # next_change_sec with nothing scheduled
OUT_LEN = const(14)
FAULT_GAP_S = const(3600)  # at most one IC-fault event (bad reads) per hour
MWS_PER_WH = 3600000
RELAY_OPERATOR = const(0)
RELAY_CREDIT = const(1)
_SECONDS_PER_DAY = 86400


class MeterError(ValueError):
    """A tariff, clock or setting the meter cannot take."""


class Meter:
    def __init__(self, cfg):
        self.atm = cfg["frontend"] == "atm90e26"
        self.n_rates = cfg["rates"]
        self.units_per_wh = cfg["meter_constant"] if self.atm else MWS_PER_WH
        self.regs = energy.Registers(self.n_rates, self.units_per_wh)
        self.aint = energy.Integrator(2)  # ADC active: slot 0 import, 1 export
        self.qint = energy.Integrator(4)  # ADC reactive: one slot per quadrant
        noload_mw = int(0.0025 * cfg["ib"] * cfg["un"] * 1000)
        self.noload_mw = noload_mw
        self.out = [0] * OUT_LEN
        self.events = ev.EventRing(32)
        self.detector = ev.Detector(cfg, self.atm, max(1, (noload_mw + 999) // 1000))
        self.epoch = 0
        self.sec = 0
        self.ms = 0
        self.tariff = None
        self.pending = None
        self.rate = 1
        self.price = 0
        self.next_change_sec = NEVER
        self._day0 = 0  # local day number at epoch (tariff utc_offset)
        self._sod0 = 0  # local second of day at epoch
        self.next_minute_sec = NEVER
        self.prepaid = None
        self._pp = None  # the firmware.prepaid module, imported only for a prepaid meter
        self.relay_closed = True
        self.relay_reason = RELAY_OPERATOR
        self.boot_count = 0
        self.seq = 0  # message counter: highest seq used (firmware/report.py)
        self.tamper = 0  # latched tamper inputs: bit 0 cover opened, bit 1 magnet (flag bit 2)
        self.bad_reads = 0
        self._fault_sec = -FAULT_GAP_S
        self.metering = True  # False after a fatal calibration error
        self.pend_units = 0
        self.pend_wh = 0
        self.persist_request = False
        self.steps = 0
        self.storage_recoveries = 0

    # -- clock ------------------------------------------------------------------------

    def now(self):
        """Unix time in s (may allocate a big int)."""
        return self.epoch + self.sec

    def set_clock(self, ts, ms=0):
        """Rebase the clock on unix time ``ts`` (+ ``ms``); recompute the rate in force."""
        if not isinstance(ts, int) or ts < 0 or not 0 <= ms < 1000:
            raise MeterError("clock: ts must be an int >= 0 and ms 0..999, got %r, %r" % (ts, ms))
        self.events.shift(self.epoch - ts)
        f = self._fault_sec + self.epoch - ts
        self._fault_sec = f if f > -FAULT_GAP_S else -FAULT_GAP_S
        self.epoch = ts
        self.sec = 0
        self.ms = ms
        self.refresh()

    def _local_origin(self):
        t = self.tariff
        off = t[_UTC_OFFSET] * 60 if t is not None else 0
        local = self.epoch + off
        self._day0 = local // _SECONDS_PER_DAY
        self._sod0 = local - self._day0 * _SECONDS_PER_DAY

    # -- tariff -------------------------------------------------------------------------

    def set_tariff(self, args):
        """Install a set-tariff args map (int keys): in force now, or pending until activate_at."""
        from protocol import tariff_calendar as cal

        t = cal.validate_tariff(args)
        prices = t[_PRICES]
        if len(prices) > self.n_rates:
            raise MeterError("tariff has %d rates, the meter %d" % (len(prices), self.n_rates))
        if self.prepaid is not None:
            top = self._pp.MAX_PRICE
            for p in prices:
                if p > top:
                    raise MeterError("tariff price %d above %d milli-units/kWh" % (p, top))
        at = t[_ACTIVATE_AT]
        if at == 0 or at <= self.now():
            self.pending = None
            self.tariff = t
            self.raise_event(ev.EV_TARIFF_ACTIVATED, t[_ID])
        else:
            self.pending = t
        self.refresh()

    def tariff_id(self):
        return self.tariff[_ID] if self.tariff is not None else 0

    def refresh(self):
        """Activate a due pending tariff; recompute rate, price and the next boundary.

        Allocates: called at boundaries, clock and tariff changes, never per step.
        """
        ts = self.now()
        p = self.pending
        if p is not None and ts >= p[_ACTIVATE_AT]:
            self.tariff = p
            self.pending = None
            p = None
            self.raise_event(ev.EV_TARIFF_ACTIVATED, self.tariff[_ID])
        t = self.tariff
        old = self.rate
        if t is None:
            self.rate = 1
            self.price = 0
            nc = None
        else:
            from protocol import tariff_calendar as cal

            self.rate = cal.rate_at(t, ts)
            self.price = t[_PRICES][self.rate - 1]
            nc = cal.next_change(t, ts)
        if p is not None and (nc is None or p[_ACTIVATE_AT] < nc):
            nc = p[_ACTIVATE_AT]
        rel = NEVER if nc is None else nc - self.epoch
        self.next_change_sec = rel if rel < NEVER else NEVER
        if self.rate != old:
            self.persist_request = True
        self._local_origin()
        if self.prepaid is not None:
            self._minute()

    # -- prepaid and relay ------------------------------------------------------------------

    def enable_prepaid(self, pp_obj):
        """Attach a firmware.prepaid.Prepaid; the meter charges import energy and runs its events."""
        from firmware import prepaid

        self._pp = prepaid
        self.prepaid = pp_obj
        self._minute()

    def _minute(self):
        s = self._sod0 + self.sec
        d = s // _SECONDS_PER_DAY
        s -= d * _SECONDS_PER_DAY
        self.next_minute_sec = self.sec + 60 - s % 60
        bits = self.prepaid.update((self._day0 + d + 3) % 7, s // 60)  # 1970-01-01 was a Thursday (3)
        pp = self._pp
        if bits & pp.EV_LOW_BALANCE:
            self.raise_event(ev.EV_LOW_BALANCE)
        if bits & pp.EV_CREDIT_EXHAUSTED:
            self.raise_event(ev.EV_CREDIT_EXHAUSTED)
        if bits & pp.EV_DISCONNECT:
            self.set_relay(False, RELAY_CREDIT)
        if bits & pp.EV_RECONNECT and self.relay_reason == RELAY_CREDIT:
            self.set_relay(True, RELAY_CREDIT)

    def set_relay(self, closed, reason=RELAY_OPERATOR):
        """Open or close the relay (the board applies ``relay_closed``); events 6 / 7 on a change."""
        if closed == self.relay_closed:
            return False
        self.relay_closed = closed
        self.relay_reason = reason
        if closed:
            self.raise_event(ev.EV_RELAY_CLOSED)
        else:
            self.raise_event(ev.EV_RELAY_OPENED, reason)
        return True

    # -- events -----------------------------------------------------------------------------

    def raise_event(self, code, detail=ev.NO_DETAIL):
        """Record an event: ``detail`` is an int (detail key 0), [v0, v1] (keys 0, 1) or NO_DETAIL."""
        self.events.push(code, self.sec, detail)
        self.persist_request = True

    def fault(self, detail):
        """The metering IC failed for good (calibration rejected): event 18, metering stops."""
        self.metering = False
        self.raise_event(ev.EV_IC_FAULT, detail)

    # -- hot path ---------------------------------------------------------------------------

    def step(self, dt_ms, ok):
        """Account ``dt_ms`` ms ending now, with the front end's sample in ``out`` (ok = valid)."""
        if self.metering:
            if ok:
                if self.atm:
                    self._atm_energy()
                else:
                    self._adc_energy(dt_ms)
                if self.detector.check(self.out, self.sec, self.events):
                    self.persist_request = True
            else:
                self.bad_reads += 1
                if self.sec - self._fault_sec >= FAULT_GAP_S:
                    self._fault_sec = self.sec
                    self.raise_event(ev.EV_IC_FAULT, ev.FAULT_BAD_READ)
        ms = self.ms + dt_ms
        if ms >= 1000:
            s = ms // 1000
            self.sec += s
            ms -= s * 1000
        self.ms = ms
        self.steps += 1
        if self.sec >= self.next_change_sec:
            self.refresh()
        if self.sec >= self.next_minute_sec and self.prepaid is not None:
            self._minute()

    def _pending(self, units):
        u = self.pend_units + units
        per = self.units_per_wh
        if u >= per:
            n = u // per
            self.pend_wh += n
            u -= n * per
        self.pend_units = u

    def _charge(self, before):
        d = self.regs.imp[self.rate - 1] - before
        if d > 0:
            self.prepaid.charge(d, self.price)

    def _atm_energy(self):
        out = self.out
        regs = self.regs
        r = self.rate
        before = regs.imp[r - 1]
        fwd = out[0]
        rev = out[1]
        if fwd:
            regs.add_active(fwd * 100, r)
        if rev:
            regs.add_active(-rev * 100, r)
        p = out[6]
        if p == 0:
            p = fwd - rev
        if out[2]:
            regs.add_reactive(out[2] * 100, 1 if p >= 0 else 2)
        if out[3]:
            regs.add_reactive(out[3] * 100, 4 if p >= 0 else 3)
        if fwd or rev:
            self._pending((fwd + rev) * 100)
            if self.prepaid is not None:
                self._charge(before)

    def _adc_energy(self, dt_ms):
        out = self.out
        regs = self.regs
        r = self.rate
        th = self.noload_mw
        p = out[12]
        q = out[13]
        if -th < p < th:
            p = 0
        elif p > energy.MAX_POWER_MW:
            p = energy.MAX_POWER_MW
        elif p < -energy.MAX_POWER_MW:
            p = -energy.MAX_POWER_MW
        if -th < q < th:
            q = 0
        if q < 0:
            qa = -q
            quad = 4 if p >= 0 else 3
        else:
            qa = q
            quad = 1 if p >= 0 else 2
        if qa > energy.MAX_POWER_MW:
            qa = energy.MAX_POWER_MW
        before = regs.imp[r - 1]
        while dt_ms > 0:
            d = dt_ms if dt_ms <= energy.MAX_DT_MS else energy.MAX_DT_MS
            dt_ms -= d
            if p:
                u = self.aint.energy_units(p, d)
                regs.add_active(u, r)
                self._pending(u if u >= 0 else -u)
            if qa:
                regs.add_reactive(self.qint.energy_units(qa, d, quad - 1), quad)
        if p > 0 and self.prepaid is not None:
            self._charge(before)

    # -- readers (allocate) -------------------------------------------------------------------

    def imp_mwh(self):
        return [self.regs.imp_mwh(r) for r in range(1, self.n_rates + 1)]

    def exp_mwh(self):
        return [self.regs.exp_mwh(r) for r in range(1, self.n_rates + 1)]
