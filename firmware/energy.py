"""Energy registers with exact remainders, and the ADC-path power integrator.

``Registers(n_rates, units_per_wh, units_per_varh=None)`` holds the four-quadrant
energy of docs/protocol.md: import and export active energy per tariff rate T1..Tn,
and reactive energy per quadrant Q1..Q4, each as whole Wh (varh) plus a
carried remainder in the front end's fine unit ("units"):

    ATM90E26 path: units = energy-register count x 100, in 1/MC Wh
                   (units_per_wh = meter constant MC, e.g. 3200; the chip's
                   reactive registers use the same scale, so units_per_varh = MC)
    ADC path:      units = mWs (units_per_wh = 3_600_000) and mvar.s for
                   reactive (units_per_varh = 3_600_000)

Invariant, per register: ``wh * units_per_wh + rem == sum of units added``,
0 <= rem < units_per_wh. Nothing is rounded away and nothing counts twice, over
any duration. The add_* methods allocate nothing and keep every intermediate
below 2**30 as long as one increment stays below ``max_units`` (2**30 - 1 -
units_per_wh, about 1.07e9 units: 335 kWh at MC 3200, 298 Wh of mWs), which
``add_*`` checks. The whole-Wh registers themselves pass 2**30 only after
~1.07 GWh (1.07 TWh in the milli-Wh view is never stored); from then on each
add that changes them allocates a big int on 32-bit ports, a lifetime event
for a single-phase meter.

``Integrator(slots=2)`` turns P[mW] x dt[ms] into mWs with the sub-mWs part
(in uWs, 0..999) carried per slot; by default slot 0 for P >= 0 and slot 1 for
P < 0, so import and export each integrate exactly. Bounds: |P| <= MAX_POWER_MW
(2**24 - 1 mW, 16.7 kW; 60 A x 276 V = 16.6 kW), 0 <= dt <= MAX_DT_MS (60 s).
The product reaches 1e12 uWs, so it is split: P = hi*1000 + lo, and
hi*dt (<= 1.007e9) plus (lo*dt + rem)//1000 (<= 60_000) stays below 2**30.
"""

from micropython import const

HOT_LIMIT = const(0x40000000)  # 2**30: small-int bound on 32-bit ports
MAX_POWER_MW = const(0xFFFFFF)  # |P| accepted by Integrator, mW (var)
MAX_DT_MS = const(60000)  # longest step accepted by Integrator, ms
_MILLI = const(1000)
N_QUADRANTS = const(4)
SNAPSHOT_VERSION = const(1)
_HEAD = const(4)  # snapshot: version, n_rates, units_per_wh, units_per_varh


class EnergyError(ValueError):
    """A rate, quadrant, increment or snapshot outside what the registers accept."""


def accumulate(wh_list, rem_list, idx, units, units_per_wh):
    """Add ``units`` (0 <= units, rem + units < 2**30) to register ``idx``.

    Whole Wh move to ``wh_list[idx]``, the rest stays in ``rem_list[idx]``.
    Pure and allocation-free (while the Wh register is a small int).
    """
    r = rem_list[idx] + units
    if r >= units_per_wh:
        n = r // units_per_wh
        wh_list[idx] += n
        r -= n * units_per_wh
    rem_list[idx] = r


def quadrant(p, q):
    """Quadrant 1..4 of a (P, Q) pair or of their signs: Q1 P>=0 Q>=0,
    Q2 P<0 Q>=0, Q3 P<0 Q<0, Q4 P>=0 Q<0."""
    if p >= 0:
        return 1 if q >= 0 else 4
    return 2 if q >= 0 else 3


def _floor_milli(wh, rem, per):
    return wh * _MILLI + rem * _MILLI // per


class Registers:
    def __init__(self, n_rates, units_per_wh, units_per_varh=None):
        if units_per_varh is None:
            units_per_varh = units_per_wh
        if not 1 <= n_rates <= 64:
            raise EnergyError("n_rates must be 1..64, got %r" % (n_rates,))
        for name, per in (("units_per_wh", units_per_wh), ("units_per_varh", units_per_varh)):
            if not 1 <= per < HOT_LIMIT // 2:
                raise EnergyError("%s must be 1..2**29-1, got %r" % (name, per))
        self.n_rates = n_rates
        self.units_per_wh = units_per_wh
        self.units_per_varh = units_per_varh
        self.max_units = HOT_LIMIT - 1 - units_per_wh
        self.max_var_units = HOT_LIMIT - 1 - units_per_varh
        self.imp = [0] * n_rates
        self.imp_rem = [0] * n_rates
        self.exp = [0] * n_rates
        self.exp_rem = [0] * n_rates
        self.q = [0] * N_QUADRANTS
        self.q_rem = [0] * N_QUADRANTS

    # -- hot path: no allocation ------------------------------------------------

    def add_active(self, units, rate):
        """Add signed active energy to rate ``rate`` (1-based): > 0 import, < 0 export."""
        if not 0 < rate <= self.n_rates:
            raise EnergyError("rate must be 1..%d, got %r" % (self.n_rates, rate))
        if units > 0:
            if units > self.max_units:
                raise EnergyError("increment %d above %d units" % (units, self.max_units))
            accumulate(self.imp, self.imp_rem, rate - 1, units, self.units_per_wh)
        elif units < 0:
            units = -units
            if units > self.max_units:
                raise EnergyError("increment -%d below -%d units" % (units, self.max_units))
            accumulate(self.exp, self.exp_rem, rate - 1, units, self.units_per_wh)

    def add_reactive(self, units, quad):
        """Add reactive energy (units >= 0, in 1/units_per_varh varh) to quadrant 1..4."""
        if not 0 < quad <= N_QUADRANTS:
            raise EnergyError("quadrant must be 1..4, got %r" % (quad,))
        if not 0 <= units <= self.max_var_units:
            raise EnergyError("reactive increment must be 0..%d, got %r" % (self.max_var_units, units))
        accumulate(self.q, self.q_rem, quad - 1, units, self.units_per_varh)

    # -- readers (may allocate) -------------------------------------------------

    def _rate(self, rate):
        if not 0 < rate <= self.n_rates:
            raise EnergyError("rate must be 1..%d, got %r" % (self.n_rates, rate))
        return rate - 1

    def _quad(self, quad):
        if not 0 < quad <= N_QUADRANTS:
            raise EnergyError("quadrant must be 1..4, got %r" % (quad,))
        return quad - 1

    def imp_wh(self, rate):
        return self.imp[self._rate(rate)]

    def exp_wh(self, rate):
        return self.exp[self._rate(rate)]

    def q_varh(self, quad):
        return self.q[self._quad(quad)]

    def imp_mwh(self, rate):
        i = self._rate(rate)
        return _floor_milli(self.imp[i], self.imp_rem[i], self.units_per_wh)

    def exp_mwh(self, rate):
        i = self._rate(rate)
        return _floor_milli(self.exp[i], self.exp_rem[i], self.units_per_wh)

    def q_mvarh(self, quad):
        i = self._quad(quad)
        return _floor_milli(self.q[i], self.q_rem[i], self.units_per_varh)

    def imp_list(self):
        """Import Wh per rate T1..Tn, a new list (reading key 4)."""
        return list(self.imp)

    def exp_list(self):
        return list(self.exp)

    def q_list(self):
        return list(self.q)

    # -- persistence --------------------------------------------------------------

    def snapshot(self):
        """All state as a list of ints:
        [version, n, units_per_wh, units_per_varh, imp*n, imp_rem*n, exp*n, exp_rem*n, q*4, q_rem*4]."""
        return (
            [SNAPSHOT_VERSION, self.n_rates, self.units_per_wh, self.units_per_varh]
            + self.imp
            + self.imp_rem
            + self.exp
            + self.exp_rem
            + self.q
            + self.q_rem
        )

    @classmethod
    def restore(cls, snap, n_rates=None, units_per_wh=None, units_per_varh=None):
        """Registers from ``snapshot()`` output, checked field by field.

        Passing the configured ``n_rates``/units adapts a snapshot taken under
        another config: more rates are added as zero registers, fewer are
        refused (energy would vanish); a changed unit rescales the remainders
        (floor, losing less than one new unit, i.e. < 1 Wh).
        """
        if not isinstance(snap, list) or len(snap) < _HEAD:
            raise EnergyError("snapshot: expected a list of ints")
        for i in range(len(snap)):
            v = snap[i]
            if not isinstance(v, int) or v is True or v is False or v < 0:
                raise EnergyError("snapshot[%d]: expected int >= 0, got %r" % (i, v))
        version, n, per_wh, per_varh = snap[0], snap[1], snap[2], snap[3]
        if version != SNAPSHOT_VERSION:
            raise EnergyError("snapshot: version %d, expected %d" % (version, SNAPSHOT_VERSION))
        if len(snap) != _HEAD + 4 * n + 2 * N_QUADRANTS:
            raise EnergyError("snapshot: %d values for %d rates" % (len(snap), n))
        cls(n, per_wh, per_varh)  # validates n and the units
        n_new = n if n_rates is None else n_rates
        if n_new < n:
            raise EnergyError("snapshot has %d rates, config %d: refusing to drop registers" % (n, n_new))
        new = cls(
            n_new,
            per_wh if units_per_wh is None else units_per_wh,
            per_varh if units_per_varh is None else units_per_varh,
        )
        # (whole register, remainder register, count, stored unit, new unit), in snapshot order
        layout = (
            (new.imp, new.imp_rem, n, per_wh, new.units_per_wh),
            (new.exp, new.exp_rem, n, per_wh, new.units_per_wh),
            (new.q, new.q_rem, N_QUADRANTS, per_varh, new.units_per_varh),
        )
        pos = _HEAD
        for whole, rem, count, per_old, per_new in layout:
            for i in range(count):
                j = pos + count + i
                r = snap[j]
                if r >= per_old:
                    raise EnergyError("snapshot[%d]: remainder %d not below %d" % (j, r, per_old))
                whole[i] = snap[pos + i]
                rem[i] = r * per_new // per_old  # floor: loses < 1 new unit when the unit changes
            pos += 2 * count
        return new


class Integrator:
    """P[mW] x dt[ms] -> mWs, carrying the sub-mWs remainder (uWs) per slot."""

    def __init__(self, slots=2):
        if slots < 1:
            raise EnergyError("slots must be >= 1")
        self.rem = [0] * slots  # uWs, 0..999, per slot

    def energy_units(self, power_mw, dt_ms, slot=None):
        """Signed mWs for this step (sign of ``power_mw``); no allocation.

        ``slot`` picks the remainder; None = 0 for P >= 0, 1 for P < 0.
        """
        if power_mw < 0:
            a = -power_mw
            neg = True
        else:
            a = power_mw
            neg = False
        if slot is None:
            slot = 1 if neg else 0
        if a > MAX_POWER_MW:
            raise EnergyError("power %r mW beyond +-%d" % (power_mw, MAX_POWER_MW))
        if not 0 <= dt_ms <= MAX_DT_MS:
            raise EnergyError("dt %r ms outside 0..%d" % (dt_ms, MAX_DT_MS))
        hi = a // _MILLI
        low = (a - hi * _MILLI) * dt_ms + self.rem[slot]  # < 1000 * 60000 + 1000
        carry = low // _MILLI
        self.rem[slot] = low - carry * _MILLI
        mws = hi * dt_ms + carry
        return -mws if neg else mws
