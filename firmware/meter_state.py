"""The meter's persisted state (a dict for firmware.persist) and the persist policy.

``to_state(meter, clean=False) -> dict`` / ``apply_state(meter, state)``: the
map stored with persist.encode_state in a persist.SlotStore. Keys:

    t, ms    clock: unix s and ms at the save (the emulator resumes from it)
    regs     energy.Registers snapshot (whole Wh + remainders, all rates)
    ai, qi   ADC integrator remainders (uWs): active [import, export], reactive Q1..Q4
    cur, pend  tariff in force and pending tariff (set-tariff args, int keys) or None
    rate     rate in force at the save
    pp       prepaid snapshot (firmware.prepaid) or None
    relay    [closed 0/1, reason]
    latch    measurement-event latch bits (firmware.meter_events.L_*)
    ev, evd  event ring as flat [code, unix ts, detail, ...] and its drop count
    boot     boot_count; clean: saved by a clean shutdown
    seq      highest message seq used; evu: events in the ring not yet in the outbox;
    tamp     latched tamper bits
    cmd, ivl, lr  with reporting (``extra``, firmware/report.py): highest command seq
             taken, reading interval s, ts of the last interval reading made
    bad      bad front-end reads; rec: storage recoveries seen

``apply_state`` checks what it restores (wrong types or shapes raise
StateError naming the key) and leaves the clock alone: the caller sets it
first (``meter.set_clock``) so ring timestamps become relative to it.

``PersistPolicy(persist_wh, interval_s)``: a save is due when
``meter.persist_request`` is set (events, rate switches, tariff activation),
when ``meter.pend_wh >= persist_wh`` (active energy since the last save), or
when ``interval_s`` s have passed. Checked after every step, so the energy
lost by a power cut is below persist_wh + one step's energy (and at most
interval_s of it). ``ms_to_deadline(meter)`` lets the loop end a step exactly
at the interval deadline.
"""

from firmware import energy
from firmware import meter_events as ev

STATE_NAME = "state"  # SlotStore name: <flash>/state.a, state.b


class StateError(ValueError):
    """A persisted state that does not fit this meter."""


def to_state(meter, clean=False, extra=None):
    m = meter
    st = {
        "t": m.now(),
        "ms": m.ms,
        "regs": m.regs.snapshot(),
        "ai": list(m.aint.rem),
        "qi": list(m.qint.rem),
        "cur": m.tariff,
        "pend": m.pending,
        "rate": m.rate,
        "pp": m.prepaid.snapshot() if m.prepaid is not None else None,
        "relay": [1 if m.relay_closed else 0, m.relay_reason],
        "latch": m.detector.latch,
        "ev": m.events.to_list(m.epoch),
        "evd": m.events.dropped,
        "boot": m.boot_count,
        "seq": m.seq,
        "evu": m.events.unsent,
        "tamp": m.tamper,
        "clean": clean,
        "bad": m.bad_reads,
        "rec": m.storage_recoveries,
    }
    if extra is not None:
        st.update(extra)  # the reporter's progress (firmware/report.py: cmd, ivl, lr)
    return st


def _ints(state, key, n):
    v = state.get(key)
    if not isinstance(v, list) or len(v) != n:
        raise StateError("state.%s: expected a list of %d ints, got %r" % (key, n, v))
    for x in v:
        if not isinstance(x, int) or x < 0 or x >= 1000:
            raise StateError("state.%s: integrator remainder %r outside 0..999" % (key, x))
    return v


def _int(state, key, lo=0):
    v = state.get(key)
    if not isinstance(v, int) or v is True or v is False or v < lo:
        raise StateError("state.%s: expected an int >= %d, got %r" % (key, lo, v))
    return v


def apply_state(meter, state):
    """Restore ``state`` (from to_state) into ``meter``, whose clock is already set."""
    m = meter
    try:
        m.regs = energy.Registers.restore(state.get("regs"), m.n_rates, m.units_per_wh, m.units_per_wh)
    except energy.EnergyError as e:
        raise StateError("state.regs: %s" % e)
    ai = _ints(state, "ai", 2)
    qi = _ints(state, "qi", 4)
    for i in range(2):
        m.aint.rem[i] = ai[i]
    for i in range(4):
        m.qint.rem[i] = qi[i]
    cur = state.get("cur")
    pend = state.get("pend")
    m.tariff = m.pending = None
    if cur is not None or pend is not None:
        from protocol import tariff_calendar as cal

        try:
            m.tariff = cal.validate_tariff(cur) if cur is not None else None
            m.pending = cal.validate_tariff(pend) if pend is not None else None
        except ValueError as e:
            raise StateError("state tariff: %s" % e)
    if state.get("pp") is not None:
        from firmware.prepaid import Prepaid

        try:
            m.enable_prepaid(Prepaid.restore(state["pp"]))
        except ValueError as e:
            raise StateError("state.pp: %s" % e)
    relay = state.get("relay")
    if not isinstance(relay, list) or len(relay) != 2:
        raise StateError("state.relay: expected [closed, reason], got %r" % (relay,))
    m.relay_closed = bool(relay[0])
    m.relay_reason = relay[1]
    m.detector.latch = _int(state, "latch") & ev.LATCH_MASK
    try:
        m.events.load_list(state.get("ev"), m.epoch, _int(state, "evd"))
    except ValueError as e:
        raise StateError("state.ev: %s" % e)
    m.boot_count = _int(state, "boot")
    m.seq = _int(state, "seq")
    # keys added with reporting (issue 4): absent in states saved before it
    m.events.unsent = _int(state, "evu") if "evu" in state else 0
    m.tamper = (_int(state, "tamp") if "tamp" in state else 0) & 3
    m.bad_reads = _int(state, "bad")
    m.storage_recoveries = _int(state, "rec")
    m.refresh()


def read(store):
    """The state dict held by ``store`` (a persist.SlotStore), or None; (state, error text or None).

    A slot that decodes but does not parse counts as no state, with the reason.
    """
    from firmware import persist  # imported where used: a 64 KiB test heap holds the rest without it

    seq, payload = store.load()
    if payload is None:
        return None, None
    try:
        return persist.decode_state(payload), None
    except persist.PersistError as e:
        return None, str(e)


def clock_of(state):
    """(unix s, ms) saved in ``state``, or (None, 0)."""
    if state is None:
        return None, 0
    return _int(state, "t"), _int(state, "ms")


class PersistPolicy:
    def __init__(self, persist_wh, interval_s, now_sec=0, probe=None):
        self.probe = probe  # called inside save, with the state encoded (heap high-water)
        self.persist_wh = persist_wh
        self.interval_s = interval_s
        self.last_sec = now_sec
        self.saves = 0

    def due(self, meter):
        return (
            meter.persist_request
            or meter.pend_wh >= self.persist_wh
            or meter.sec - self.last_sec >= self.interval_s
        )

    def ms_to_deadline(self, meter):
        """ms until the interval deadline (>= 0)."""
        d = (self.last_sec + self.interval_s - meter.sec) * 1000 - meter.ms
        return d if d > 0 else 0

    def save(self, meter, store, clean=False, extra=None):
        """Write the meter's state to ``store`` and restart the policy's counters; returns the slot seq."""
        from firmware import persist

        st = to_state(meter, clean, extra)
        data = persist.encode_state(st)
        if self.probe is not None:
            self.probe("save")
        st = None
        seq = store.save(data)
        self.saved(meter)
        return seq

    def saved(self, meter):
        self.last_sec = meter.sec
        meter.pend_wh = 0
        meter.pend_units = 0
        meter.persist_request = False
        self.saves += 1
