"""Meter event codes, a bounded event ring, and measurement-event detection with hysteresis.

Pure: takes the front end's ``out`` list (layout in firmware/atm90e26.py
``poll()``: out[4] Urms 0.01 V, out[5] Irms mA, out[6] P W, out[10] neutral
Irms mA) and the meter's relative clock; never reads hardware or time.

``EventRing(size=32)`` keeps the newest ``size`` events as (code, sec, detail)
in three preallocated lists, so ``push`` allocates nothing (while detail is a
small int); when full it drops the OLDEST and counts it in ``dropped``. ``sec``
is the meter's seconds since its epoch; ``detail`` is one int (the value of
detail key 0 of docs/protocol.md, e.g. the relay reason or the tariff id) or
NO_DETAIL (-1).

``Detector(cfg, has_neutral)`` raises, once per crossing, with hysteresis:

    event             enters when                          leaves when            detail
    14 voltage sag    Urms < sag_pct % Un                  Urms >= (sag_pct+2) % Un   Urms 0.01 V
    15 voltage swell  Urms > swell_pct % Un                Urms <= (swell_pct-2) % Un Urms 0.01 V
    16 overload       Irms > overload_pct % Imax           Irms <= 95 % of that       Irms mA
    17 L/N mismatch   |IL - IN| > max(mismatch_pct % IL,   |IL - IN| <= half that     IN mA
                      mismatch_min_ma)  (ATM90E26 only)
    5 reverse flow    P < -noload W                        P > +noload W              P W

``noload`` is the meter's creep threshold, 0.0025 Ib Un (rounded up to 1 W).
The latch bits persist with the meter state, so a condition that lasts over a
restart is not raised twice. ``check`` allocates nothing and uses only ints
below 2**30.
"""

from micropython import const

# docs/protocol.md event codes
EV_POWER_DOWN = const(1)
EV_POWER_UP = const(2)
EV_COVER = const(3)
EV_MAGNET = const(4)
EV_REVERSE = const(5)
EV_RELAY_OPENED = const(6)
EV_RELAY_CLOSED = const(7)
EV_LOW_BALANCE = const(8)
EV_CREDIT_EXHAUSTED = const(9)
EV_TOPUP = const(10)
EV_CLOCK_ADJUSTED = const(11)
EV_TARIFF_ACTIVATED = const(12)
EV_WATCHDOG = const(13)
EV_SAG = const(14)
EV_SWELL = const(15)
EV_OVERLOAD = const(16)
EV_MISMATCH = const(17)
EV_IC_FAULT = const(18)
EV_CMD_REJECTED = const(19)
EV_STORAGE = const(20)

NO_DETAIL = const(-1)
# detail of EV_IC_FAULT
FAULT_BAD_READ = const(1)
FAULT_CALIBRATION = const(2)  # the chip rejected its calibration (CS1/CS2 read back wrong, CalErr/AdjErr)
FAULT_UNCALIBRATED = const(3)  # config.json has no calibration it can trust: metering refused (app.py)

# latch bits (persisted)
L_SAG = const(1)
L_SWELL = const(2)
L_OVERLOAD = const(4)
L_MISMATCH = const(8)
L_REVERSE = const(16)
LATCH_MASK = const(31)

_SAG_HYST_PCT = const(2)
_OVERLOAD_EXIT_PCT = const(95)

_U, _I, _P, _IN = 4, 5, 6, 10  # slots of the front end's out list


class EventRing:
    def __init__(self, size=32):
        if size < 1:
            raise ValueError("event ring size must be >= 1, got %r" % (size,))
        self.size = size
        self.codes = [0] * size
        self.secs = [0] * size
        self.details = [0] * size
        self.head = 0  # index of the oldest entry
        self.count = 0
        self.dropped = 0
        self.unsent = 0  # newest entries not yet reported (firmware/report.py drains them)

    def push(self, code, sec, detail=NO_DETAIL):
        size = self.size
        if self.count == size:  # full: the oldest goes
            self.head += 1
            if self.head == size:
                self.head = 0
            self.count -= 1
            self.dropped += 1
        i = self.head + self.count
        if i >= size:
            i -= size
        self.codes[i] = code
        self.secs[i] = sec
        self.details[i] = detail
        self.count += 1
        self.unsent += 1

    def __len__(self):
        return self.count

    def get(self, k):
        """The k-th oldest event as (code, sec, detail)."""
        if not 0 <= k < self.count:
            raise IndexError("event %r of %d" % (k, self.count))
        i = (self.head + k) % self.size
        return self.codes[i], self.secs[i], self.details[i]

    def pop(self):
        """Remove and return the oldest event (code, sec, detail), or None when empty."""
        if not self.count:
            return None
        e = self.get(0)
        self.head = (self.head + 1) % self.size
        self.count -= 1
        return e

    def code_list(self):
        return [self.get(k)[0] for k in range(self.count)]

    def shift(self, delta):
        """Add ``delta`` to every stored sec (the meter's epoch moved by -delta)."""
        for k in range(self.count):
            i = (self.head + k) % self.size
            self.secs[i] += delta

    def to_list(self, epoch):
        """Flat [code, unix ts, detail, ...] oldest first, for persistence."""
        flat = []
        for k in range(self.count):
            c, s, d = self.get(k)
            flat.append(c)
            flat.append(epoch + s)
            flat.append(d)
        return flat

    def load_list(self, flat, epoch, dropped=0):
        """Replace the contents with a ``to_list`` result (ts made relative to ``epoch``)."""
        if not isinstance(flat, list) or len(flat) % 3:
            raise ValueError("event list must be a flat list of (code, ts, detail) triples")
        self.head = 0
        self.count = 0
        self.dropped = dropped
        for j in range(0, len(flat), 3):
            self.push(flat[j], flat[j + 1] - epoch, flat[j + 2])
        self.unsent = 0  # the caller restores it (firmware/meter_state.py "evu")


class Detector:
    def __init__(self, cfg, has_neutral, noload_w):
        th = cfg["thresholds"]
        un = cfg["un"]
        imax = cfg["imax"]
        # Urms in 0.01 V: un V * pct % = un * pct (0.01 V)
        self.sag_in = int(un * th["sag_pct"])
        self.sag_out = int(un * (th["sag_pct"] + _SAG_HYST_PCT))
        self.swell_in = int(un * th["swell_pct"])
        self.swell_out = int(un * (th["swell_pct"] - _SAG_HYST_PCT))
        # Irms in mA: imax A * pct % = imax * 10 * pct mA
        self.over_in = int(imax * 10 * th["overload_pct"])
        self.over_out = self.over_in * _OVERLOAD_EXIT_PCT // 100
        self.mis_pct = th["mismatch_pct"]
        self.mis_min = th["mismatch_min_ma"]
        self.has_neutral = has_neutral
        self.rev_w = noload_w
        self.latch = 0

    def check(self, out, sec, ring):
        """Raise events for the measurements in ``out``; return the number raised."""
        latch = self.latch
        n = 0
        u = out[_U]
        i = out[_I]
        p = out[_P]
        if latch & L_SAG:
            if u >= self.sag_out:
                latch &= ~L_SAG
        elif u < self.sag_in:
            latch |= L_SAG
            ring.push(EV_SAG, sec, u)
            n += 1
        if latch & L_SWELL:
            if u <= self.swell_out:
                latch &= ~L_SWELL
        elif u > self.swell_in:
            latch |= L_SWELL
            ring.push(EV_SWELL, sec, u)
            n += 1
        if latch & L_OVERLOAD:
            if i <= self.over_out:
                latch &= ~L_OVERLOAD
        elif i > self.over_in:
            latch |= L_OVERLOAD
            ring.push(EV_OVERLOAD, sec, i)
            n += 1
        if self.has_neutral:
            i_n = out[_IN]
            d = i - i_n if i >= i_n else i_n - i
            lim = i * self.mis_pct // 100
            if lim < self.mis_min:
                lim = self.mis_min
            if latch & L_MISMATCH:
                if 2 * d <= lim:
                    latch &= ~L_MISMATCH
            elif d > lim:
                latch |= L_MISMATCH
                ring.push(EV_MISMATCH, sec, i_n)
                n += 1
        if latch & L_REVERSE:
            if p > self.rev_w:
                latch &= ~L_REVERSE
        elif p < -self.rev_w:
            latch |= L_REVERSE
            ring.push(EV_REVERSE, sec, p)
            n += 1
        self.latch = latch
        return n
