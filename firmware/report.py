"""What the meter reports: sealed reading, event, ack and status messages, appended to the outbox.

``Reporter(meter, cfg, outbox, board_name)`` turns the meter's state into
docs/protocol.md messages, seals them (COSE_Mac0 with the meter's key, kid =
meter_id; COSE_Encrypt0 with the key derived from it when config ``privacy`` is
true, IV = direction 0 || seq, protocol/cose_enc.py) and appends each to the
flash outbox (firmware/outbox.py) BEFORE anything is published: the append is what makes a ``seq`` used. So

    seq    = max(seq in the persisted state, highest seq in the outbox)
             at boot (``reconcile``), +1 per message: strictly increasing
             across reboots and power cuts, never reused, no gaps.

Readings: every ``interval`` s (config, or set-config command) at the
multiples of it (``ts`` = the interval's end); ``ms_to_next`` lets the loop
end a step at the boundary and ``due()`` is true once the clock has reached
an interval end not yet reported (on a board the sleep overshoots by a few
ms; a clock set forward skips to the boundary it lands after, one set back
reports nothing until it passes the last reported one). A reading made while the
link is down or a backlog of more than BACKLOG_RECORDS records is waiting
carries flag bit 4 (sent late).
``read_now()`` answers command 5 (key 3 = s since the last interval end).

Events: the meter's EventRing keeps the newest events (persisted with the
state); ``meter.events.unsent`` counts the newest of them not yet in the outbox.
``drain_events()`` appends those, oldest first. Power cut between the
append and the next state save: the state still counts them unsent and its
``seq`` is older than the outbox's; ``reconcile`` finds the k event records
after the state's seq in the outbox and subtracts k, and takes the last
reading's ts from there too, so nothing is reported twice or skipped.
Details: an int is detail key 0; a list [v0, v1, ...] is keys 0, 1, ... (top-up,
clock adjusted, command rejected); NO_DETAIL (-1) is none.

Allocates (CBOR, HMAC, flash writes): called between measurement steps,
never inside ``meter.step``.
"""

from micropython import const

from firmware import meter_events as ev
from protocol import cbor, cose

FW_VERSION = "1.0.0"
KIND_READING = const(1)
KIND_EVENT = const(2)
KIND_ACK = const(3)
KIND_STATUS = const(4)
FLAG_RELAY_OPEN = const(1)
FLAG_CLOCK_UNSYNCED = const(2)
FLAG_TAMPER = const(4)
FLAG_EMERGENCY = const(8)
FLAG_BACKLOG = const(16)
BACKLOG_RECORDS = const(16)  # more records than this waiting (or no link): the reading goes out late


def _inst(out):
    """docs/protocol.md reading key 7 from the meter's ``out`` layout (firmware/meter.py)."""
    return {0: out[4] * 10, 1: out[5], 2: out[6], 3: out[7], 4: out[8], 5: out[9] * 10, 6: out[10]}


class Reporter:
    def __init__(self, meter, cfg, outbox, board_name):
        self.m = meter
        self.key = cfg["key"]
        self.meter_id = cfg["meter_id"]
        self.kid = cfg["meter_id"].encode()
        self.privacy = cfg.get("privacy", False)  # seal up messages with COSE_Encrypt0
        self._enc = None  # protocol.cose_enc.Encrypt0 under self.key, made on first use
        self.metering = cfg["frontend"]
        self.outbox = outbox
        self.board = board_name
        self.interval = cfg["interval"]  # reading interval s (set-config command changes it)
        self.cmd_hi = 0  # highest command seq taken (firmware/commands_exec.py)
        self.last_reading_ts = 0  # ts of the last reading made (interval end)
        self.tariff_before = 0  # tariff id in force before the last meter step (set by the app)
        self.online = False  # set by the link (firmware/comms.py)
        self.clock_synced = True  # boards without a trusted RTC clear it until a time sync
        self.on_append = None  # called after each append (firmware/comms.py wakes its sender)

    # -- seq and the outbox ----------------------------------------------------------

    def restore(self, state):
        """Take the reporter's progress from a persisted state dict (keys of ``extra``)."""
        if state is not None:
            self.cmd_hi = state.get("cmd", 0)
            self.interval = state.get("ivl", self.interval)
            self.last_reading_ts = state.get("lr", 0)
        if not self.last_reading_ts:  # a new meter: its first reading is at the first interval end ahead
            self.last_reading_ts = self.boundary()
        self.tariff_before = self.m.tariff_id()

    def extra(self):
        """The reporter's part of the persisted state (firmware/meter_state.py ``extra``)."""
        return {"cmd": self.cmd_hi, "ivl": self.interval, "lr": self.last_reading_ts}

    def reconcile(self, state_seq):
        """At boot, after the state is restored (meter.seq = state_seq): take seq, event and
        reading progress from the outbox records written after the last state save."""
        m = self.m
        ob = self.outbox
        events = 0
        for _seq, kind, ts in ob.tail(state_seq):
            if kind == KIND_EVENT:
                events += 1
            elif kind == KIND_READING and ts > self.last_reading_ts:
                self.last_reading_ts = ts
        if events:
            m.events.unsent = m.events.unsent - events if m.events.unsent > events else 0
        if ob.last_seq > m.seq:
            m.seq = ob.last_seq

    def encrypt0(self):
        """The meter's COSE_Encrypt0 sealer/opener (derived key and AES state made once)."""
        if self._enc is None:
            from protocol.cose_enc import Encrypt0

            self._enc = Encrypt0(self.key, self.kid)
        return self._enc

    def set_key(self, key):
        """Seal and verify with a new 32-byte key from now on (key rotation, set config key 4)."""
        self.key = key
        self._enc = None

    def _append(self, kind, ts, msg):
        m = self.m
        seq = m.seq + 1
        msg[1] = seq
        msg[2] = ts
        if self.privacy:
            frame = self.encrypt0().seal(0, seq, cbor.dumps(msg))  # direction 0: meter -> head-end
        else:
            frame = cose.mac0_encode(self.key, self.kid, cbor.dumps(msg))
        self.outbox.append(seq, kind, ts, frame)
        m.seq = seq
        m.persist_request = True
        if self.on_append is not None:
            self.on_append()
        return seq

    # -- readings ---------------------------------------------------------------------

    def next_boundary(self):
        """Unix ts of the next interval end after the meter's clock."""
        now = self.m.now()
        return (now // self.interval + 1) * self.interval

    def ms_to_next(self):
        m = self.m
        d = self.next_boundary() - m.now()
        return d * 1000 - m.ms

    def boundary(self):
        """The latest interval end at or before the meter's clock."""
        now = self.m.now()
        return now - now % self.interval

    def due(self):
        """True when the clock has reached an interval end not yet reported. A board's sleep ends a
        few ms past the boundary the loop aimed at; the reading is still that boundary's."""
        return self.boundary() > self.last_reading_ts

    def flags(self):
        m = self.m
        f = 0
        if not m.relay_closed:
            f |= FLAG_RELAY_OPEN
        if not self.clock_synced:
            f |= FLAG_CLOCK_UNSYNCED
        if m.tamper:
            f |= FLAG_TAMPER
        if m.prepaid is not None and m.prepaid.on_emergency:
            f |= FLAG_EMERGENCY
        if not self.online or self.outbox.pending() > BACKLOG_RECORDS:
            f |= FLAG_BACKLOG
        return f

    def _reading(self, interval):
        m = self.m
        regs = m.regs
        msg = {0: 1, 1: 0, 2: 0, 3: interval, 4: regs.imp_list(), 5: regs.exp_list(), 6: regs.q_list()}
        if m.metering:
            msg[7] = _inst(m.out)
        if m.prepaid is not None:
            msg[8] = m.prepaid.balance
        msg[9] = self.flags()
        msg[11] = self.tariff_before  # the tariff the registers were accumulated under
        return msg

    def reading(self):
        """The reading of the interval that ended at ``boundary()`` (registers as of now: the loop
        cuts its sleep at the boundary, so at most one poll's overshoot of energy is in it)."""
        ts = self.boundary()
        seq = self._append(KIND_READING, ts, self._reading(self.interval))
        self.last_reading_ts = ts
        return seq

    def read_now(self):
        """Command 5: a reading for this moment; key 3 = s since the last interval end."""
        now = self.m.now()
        self.tariff_before = self.m.tariff_id()
        return self._append(KIND_READING, now, self._reading(now % self.interval))

    # -- events, acks, status ---------------------------------------------------------------

    def drain_events(self):
        """Append the events not yet reported, oldest first; returns how many."""
        m = self.m
        ring = m.events
        n = m.events.unsent
        if n > len(ring):
            n = len(ring)  # the ring dropped some before they were reported (counted in ring.dropped)
        first = len(ring) - n
        for k in range(first, len(ring)):
            code, sec, detail = ring.get(k)
            msg = {0: 2, 1: 0, 2: 0, 10: code}
            if isinstance(detail, list):
                msg[11] = {}
                for i in range(len(detail)):
                    msg[11][i] = detail[i]
            elif detail != ev.NO_DETAIL:
                msg[11] = {0: detail}
            ts = m.epoch + sec
            self._append(KIND_EVENT, ts if ts > 0 else 0, msg)
            m.events.unsent -= 1
        m.events.unsent = 0
        return n

    def ack(self, cmd_seq, result, detail=None):
        msg = {0: 3, 1: 0, 2: 0, 30: cmd_seq, 31: result}
        if detail:
            msg[32] = detail
        return self._append(KIND_ACK, self.m.now(), msg)

    def status(self):
        m = self.m
        ob = self.outbox
        msg = {
            0: 4,
            1: 0,
            2: 0,
            40: 1,
            41: FW_VERSION,
            42: self.board,
            43: self.metering,
            44: m.n_rates,
            45: m.tariff_id(),
            46: m.boot_count,
            47: ob.dropped,  # extension: outbox records dropped when full (docs/protocol-extensions.md)
            48: ob.pending(),  # extension: records waiting in the outbox
        }
        return self._append(KIND_STATUS, m.now(), msg)
