"""Prepaid balance: exact debit, idempotent top-ups, credit events and relay decision.

Pure: no clock, no hardware; the meter loop passes energy, price and local time.

``Prepaid(balance=0, low_balance=5000, emergency_credit=0, friendly_hours=())``
  balance           milli-units of currency, |balance| <= BALANCE_MAX (2**30 - 1),
                    negative while on emergency credit (reading key 8)
  low_balance       EV_LOW_BALANCE threshold, milli-units, 0..MAX_SETTING (10**9)
  emergency_credit  the balance may fall to -emergency_credit before the supply is
                    disconnected, milli-units, 0..MAX_SETTING
  friendly_hours    [[weekday 0..6 (Monday 0), start_minute, end_minute], ...], at most
                    MAX_FRIENDLY entries, 0 <= start < end <= 1440 (no wrap over
                    midnight: an overnight window is two entries); credit never
                    disconnects inside them

``charge(wh, price)`` (hot path: no allocation, every int below 2**30) debits
wh (0..MAX_WH) Wh at price (0..MAX_PRICE milli-units per kWh). wh*price goes
into ``frac`` (0..999, milli-milli-units) and frac // 1000 is debited, so over
any sequence of calls, across price changes, total debit == floor(sum(wh*price)
/ 1000) exactly. Pieces of CHUNK_WH keep frac + piece*price <= 10**9 + 999.
If the balance would go below -BALANCE_MAX (only after ~73k units of debt past
the largest emergency credit, with the relay supposed to be open) it stops
there and the excess is counted in ``clipped`` (saturating).

``topup(topup_id, amount) -> bool`` credits once per id (0..UINT_MAX); False =
no effect. The ids live in a fixed ring of TOPUP_RING slots. While it is not
full, any new id is taken. Once full, a new id replaces the LOWEST remembered
id, and an id lower than every remembered one (``lowest``) is refused as too
old, like an STS decoder refusing a TID older than the oldest it stores. So
the head-end must allocate ids increasing; a top-up delayed behind 32 later
ones is refused (``topup_status`` tells TOO_OLD from DUPLICATE). Evicting the
lowest rather than the oldest applied keeps exactly-once even when ids arrive
out of order: every id ever evicted is below every id still remembered.

``update(weekday, minute) -> int`` (no allocation) returns the EV_* bits that
are new since the last call, from latches kept in ``state``:
  EV_LOW_BALANCE       balance <= low_balance; once per crossing
  EV_CREDIT_EXHAUSTED  balance <= 0; once per crossing
  EV_EMERGENCY         balance < 0 with emergency_credit > 0; once per entry
  EV_DISCONNECT        balance <= -emergency_credit outside friendly hours; inside
                       them it is deferred (``deferred``) and fires at the first
                       update after they end if still exhausted
  EV_RECONNECT         credit-disconnected and balance > 0 again (a top-up)
The LOW / EXHAUSTED / EMERGENCY latches re-arm when a top-up or set_config
puts the balance above the threshold again (> low_balance, > 0, >= 0).
Protocol events: EV_LOW_BALANCE -> 8, EV_CREDIT_EXHAUSTED -> 9, EV_DISCONNECT ->
open relay + 6 (reason 1 credit), EV_RECONNECT -> close relay + 7; EV_EMERGENCY
has no event code (flag bit 3, ``on_emergency``).

``snapshot()`` is a list of ints (layout in its docstring); ``Prepaid.restore``
checks it field by field. Errors raise ``PrepaidError`` (field named, ``.field``).
"""

from micropython import const

BALANCE_MAX = const(0x3FFFFFFF)  # 2**30 - 1 milli-units: small int on 32-bit ports
MAX_SETTING = const(1000000000)  # low_balance, emergency_credit (as config.py)
MAX_WH = const(100000)  # Wh per charge() call (100 kWh)
MAX_PRICE = const(1000000)  # milli-units per kWh (1000 units/kWh)
CHUNK_WH = const(1000)  # CHUNK_WH * MAX_PRICE + 999 < 2**30
UINT_MAX = 0xFFFFFFFFFFFFFFFF  # topup_id (CBOR uint)
TOPUP_RING = const(32)
MAX_FRIENDLY = const(32)
MINUTES_PER_DAY = const(1440)
_MILLI = const(1000)
SNAPSHOT_VERSION = const(1)
_HEAD = const(8)  # version, balance, frac, low, emergency, clipped, state, lowest

EV_LOW_BALANCE = const(1)
EV_CREDIT_EXHAUSTED = const(2)
EV_EMERGENCY = const(4)
EV_DISCONNECT = const(8)  # as a state bit: disconnected for credit
EV_RECONNECT = const(16)
_DEFERRED = const(32)  # state bit only: disconnect due but inside friendly hours
_LATCHES = const(7)  # LOW | EXHAUSTED | EMERGENCY
_STATE_MASK = const(47)  # every state bit: LOW | EXHAUSTED | EMERGENCY | DISCONNECT | DEFERRED

TOPUP_NEW = const(0)
TOPUP_DUPLICATE = const(1)
TOPUP_TOO_OLD = const(2)


class PrepaidError(ValueError):
    """A bad argument, setting or snapshot; ``field`` names it."""

    def __init__(self, field, msg):
        super().__init__("prepaid.%s: %s" % (field, msg))
        self.field = field


def _int(field, v, lo, hi):
    if not isinstance(v, int) or v is True or v is False or not lo <= v <= hi:
        raise PrepaidError(field, "expected int %d..%d, got %r" % (lo, hi, v))
    return v


def _friendly(v):
    """Check friendly hours ``v``; return them flattened: [weekday, start, end, ...]."""
    if not isinstance(v, (list, tuple)) or len(v) > MAX_FRIENDLY:
        raise PrepaidError("friendly_hours", "expected at most %d [weekday, start, end]" % MAX_FRIENDLY)
    flat = []
    for i in range(len(v)):
        e = v[i]
        f = "friendly_hours[%d]" % i
        if not isinstance(e, (list, tuple)) or len(e) != 3:
            raise PrepaidError(f, "expected [weekday, start_minute, end_minute], got %r" % (e,))
        flat.append(_int(f + "[0]", e[0], 0, 6))
        start = _int(f + "[1]", e[1], 0, MINUTES_PER_DAY - 1)
        flat.append(start)
        flat.append(_int(f + "[2]", e[2], start + 1, MINUTES_PER_DAY))
    return flat


class Prepaid:
    def __init__(self, balance=0, low_balance=5000, emergency_credit=0, friendly_hours=()):
        self.balance = _int("balance", balance, -BALANCE_MAX, BALANCE_MAX)
        self.frac = 0  # milli-milli-units not yet debited, 0..999
        self.clipped = 0  # milli-units not debited at -BALANCE_MAX
        self.state = 0  # latches: EV_LOW_BALANCE, EV_CREDIT_EXHAUSTED, EV_EMERGENCY, EV_DISCONNECT, _DEFERRED
        self.ids = [0] * TOPUP_RING
        self.n_ids = 0
        self.lowest = 0  # lowest remembered id (0 while none)
        self.low_balance = 0
        self.emergency_credit = 0
        self.fh = [0] * (3 * MAX_FRIENDLY)  # flattened [weekday, start, end] entries
        self.n_fh = 0
        self.set_config(low_balance, emergency_credit, friendly_hours)

    # -- hot path: no allocation ----------------------------------------------------

    def charge(self, wh, price):
        """Debit wh Wh at price milli-units/kWh, carrying the remainder; returns milli-units debited."""
        if not isinstance(wh, int) or not 0 <= wh <= MAX_WH:
            raise PrepaidError("wh", "expected int 0..%d, got %r" % (MAX_WH, wh))
        if not isinstance(price, int) or not 0 <= price <= MAX_PRICE:
            raise PrepaidError("price", "expected int 0..%d, got %r" % (MAX_PRICE, price))
        total = 0
        while wh > 0:
            n = CHUNK_WH if wh > CHUNK_WH else wh
            wh -= n
            f = self.frac + n * price  # <= 10**9 + 999
            d = f // _MILLI
            self.frac = f - d * _MILLI
            total += d  # <= MAX_WH * MAX_PRICE / 1000 = 10**8
            b = self.balance
            if b < d - BALANCE_MAX:  # b - d would pass -BALANCE_MAX: stop there, count the rest
                c = d - (b + BALANCE_MAX)
                self.balance = -BALANCE_MAX
                self.clipped = BALANCE_MAX if c > BALANCE_MAX - self.clipped else self.clipped + c
            else:
                self.balance = b - d
        return total

    def in_friendly_hours(self, weekday, minute):
        """True when (weekday 0..6, minute 0..1439) lies in a friendly-hours entry."""
        if not 0 <= weekday <= 6 or not 0 <= minute < MINUTES_PER_DAY:
            raise PrepaidError("time", "weekday 0..6 and minute 0..1439, got %r, %r" % (weekday, minute))
        fh = self.fh
        i = 0
        end = 3 * self.n_fh
        while i < end:
            if fh[i] == weekday and fh[i + 1] <= minute < fh[i + 2]:
                return True
            i += 3
        return False

    def update(self, weekday, minute):
        """EV_* bits new since the last call, for this local time."""
        friendly = self.in_friendly_hours(weekday, minute)
        b = self.balance
        st = self.state
        ev = 0
        if b <= self.low_balance and not st & EV_LOW_BALANCE:
            ev |= EV_LOW_BALANCE
        if b <= 0 and not st & EV_CREDIT_EXHAUSTED:
            ev |= EV_CREDIT_EXHAUSTED
        if b < 0 and self.emergency_credit > 0 and not st & EV_EMERGENCY:
            ev |= EV_EMERGENCY
        st |= ev
        if st & EV_DISCONNECT:
            if b > 0:
                ev |= EV_RECONNECT
                st &= ~EV_DISCONNECT
        elif b <= -self.emergency_credit:
            if friendly:
                st |= _DEFERRED
            else:
                ev |= EV_DISCONNECT
                st = (st | EV_DISCONNECT) & ~_DEFERRED
        else:
            st &= ~_DEFERRED
        self.state = st
        return ev

    @property
    def disconnect_for_credit(self):
        """The relay should be open for credit (as of the last update)."""
        return bool(self.state & EV_DISCONNECT)

    @property
    def deferred(self):
        """A credit disconnect is due but held back by friendly hours (last update)."""
        return bool(self.state & _DEFERRED)

    @property
    def on_emergency(self):
        """Reading flag bit 3: balance below zero on emergency credit."""
        return self.balance < 0 and self.emergency_credit > 0

    # -- top-ups and settings (may allocate) -------------------------------------------

    def topup_status(self, topup_id):
        """TOPUP_NEW, TOPUP_DUPLICATE (remembered) or TOPUP_TOO_OLD (below ``lowest``, ring full)."""
        _int("topup_id", topup_id, 0, UINT_MAX)
        for i in range(self.n_ids):
            if self.ids[i] == topup_id:
                return TOPUP_DUPLICATE
        if self.n_ids == TOPUP_RING and topup_id < self.lowest:
            return TOPUP_TOO_OLD
        return TOPUP_NEW

    def topup(self, topup_id, amount):
        """Credit ``amount`` milli-units once per ``topup_id``; False (no effect) if applied or too old."""
        _int("amount", amount, 1, UINT_MAX)
        if self.topup_status(topup_id) != TOPUP_NEW:
            return False
        if amount > BALANCE_MAX - self.balance:
            msg = "%d would lift the balance %d above %d" % (amount, self.balance, BALANCE_MAX)
            raise PrepaidError("amount", msg)
        ids = self.ids
        if self.n_ids < TOPUP_RING:
            ids[self.n_ids] = topup_id
            self.n_ids += 1
        else:
            ids[ids.index(self.lowest)] = topup_id  # evict the lowest: it becomes the floor
        self.lowest = min(ids[: self.n_ids])
        self.balance += amount
        self._rearm()
        return True

    def _rearm(self):
        b = self.balance
        st = self.state
        if b > self.low_balance:
            st &= ~EV_LOW_BALANCE
        if b > 0:
            st &= ~EV_CREDIT_EXHAUSTED
        if b >= 0 or self.emergency_credit == 0:
            st &= ~EV_EMERGENCY
        self.state = st

    def set_config(self, low_balance=None, emergency_credit=None, friendly_hours=None):
        """Change any of the settings (set config command 6); all are checked before any applies."""
        if low_balance is not None:
            _int("low_balance", low_balance, 0, MAX_SETTING)
        if emergency_credit is not None:
            _int("emergency_credit", emergency_credit, 0, MAX_SETTING)
        if friendly_hours is not None:
            flat = _friendly(friendly_hours)
            for i in range(len(flat)):
                self.fh[i] = flat[i]
            self.n_fh = len(flat) // 3
        if low_balance is not None:
            self.low_balance = low_balance
        if emergency_credit is not None:
            self.emergency_credit = emergency_credit
        self._rearm()

    def friendly_hours(self):
        """The friendly hours as a new list of [weekday, start, end]."""
        return [self.fh[i : i + 3] for i in range(0, 3 * self.n_fh, 3)]

    # -- persistence -----------------------------------------------------------------

    def snapshot(self):
        """[version, balance, frac, low_balance, emergency_credit, clipped, state, lowest,
        n_ids, ids*n_ids, n_fh, (weekday, start, end)*n_fh]: all ints."""
        return (
            [
                SNAPSHOT_VERSION,
                self.balance,
                self.frac,
                self.low_balance,
                self.emergency_credit,
                self.clipped,
                self.state,
                self.lowest,
                self.n_ids,
            ]
            + self.ids[: self.n_ids]
            + [self.n_fh]
            + self.fh[: 3 * self.n_fh]
        )

    @classmethod
    def restore(cls, snap):
        """A Prepaid from ``snapshot()`` output; PrepaidError names the first bad field."""
        if not isinstance(snap, list) or len(snap) < _HEAD + 2:
            raise PrepaidError("snapshot", "expected a list of at least %d ints" % (_HEAD + 2))
        if snap[0] != SNAPSHOT_VERSION:
            raise PrepaidError("snapshot", "version %r, expected %d" % (snap[0], SNAPSHOT_VERSION))
        n = _int("snapshot.n_ids", snap[_HEAD], 0, TOPUP_RING)
        if len(snap) < _HEAD + 2 + n:
            raise PrepaidError("snapshot", "%d values, too short for %d ids" % (len(snap), n))
        n_fh = _int("snapshot.n_fh", snap[_HEAD + 1 + n], 0, MAX_FRIENDLY)
        if len(snap) != _HEAD + 2 + n + 3 * n_fh:
            raise PrepaidError("snapshot", "%d values for %d ids, %d friendly hours" % (len(snap), n, n_fh))
        fh = snap[_HEAD + 2 + n :]
        p = cls(
            _int("snapshot.balance", snap[1], -BALANCE_MAX, BALANCE_MAX),
            _int("snapshot.low_balance", snap[3], 0, MAX_SETTING),
            _int("snapshot.emergency_credit", snap[4], 0, MAX_SETTING),
            [fh[i : i + 3] for i in range(0, 3 * n_fh, 3)],
        )
        p.frac = _int("snapshot.frac", snap[2], 0, _MILLI - 1)
        p.clipped = _int("snapshot.clipped", snap[5], 0, BALANCE_MAX)
        p.state = _int("snapshot.state", snap[6], 0, _STATE_MASK)
        if p.state & ~_STATE_MASK:
            raise PrepaidError("snapshot.state", "unknown bits in %d" % p.state)
        ids = snap[_HEAD + 1 : _HEAD + 1 + n]
        for i in range(n):
            _int("snapshot.ids[%d]" % i, ids[i], 0, UINT_MAX)
            if ids[i] in ids[:i]:
                raise PrepaidError("snapshot.ids[%d]" % i, "id %d repeated" % ids[i])
        if snap[7] != (min(ids) if n else 0):
            raise PrepaidError("snapshot.lowest", "%r is not the lowest remembered id" % (snap[7],))
        for i in range(n):
            p.ids[i] = ids[i]
        p.n_ids = n
        p.lowest = snap[7]
        return p
