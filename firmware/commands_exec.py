"""Authenticated command execution on the meter (docs/protocol.md, command type 10).

``CommandExec(app)``; ``handle(frame) -> result or None``. Checks, in the
order docs/protocol.md gives: the COSE_Mac0 structure, alg, kid (= this meter),
the tag (constant time), then the message (type 10). A frame that fails any
of them is dropped and counted (``forged`` / ``malformed``), never acked
(the sender cannot be trusted), and reported by event 19 at most once per
REJECT_EVENT_GAP_S of meter time, detail ``{0: 0, 1: reason, 2: n}``
(reason 7 bad MAC/kid/alg, 8 malformed; n = frames dropped since the last
such event). Then, for an authentic command with seq s:

    s == highest taken   ack 1 duplicate (that very command again: no effect)
    s <  highest taken   ack 2 stale
    expired (key 22 < meter clock)            ack 3, s taken
    bad args (protocol.commands.command_args) ack 4, s taken
    unknown cmd, or prepaid cmd on postpaid   ack 5, s taken
    executes, fails                           ack 6, s taken
    executes                                  ack 0 (top-up already applied: 1)

"s taken" means ``reporter.cmd_hi = s`` and the state is saved at once, with
the command's effect, before the ack is appended to the outbox; only then
may the transport PUBACK the frame. A power cut before the save loses the
command (the broker delivers it again: not PUBACKed); after it, the repeat
is answered "duplicate". A top-up is also applied at most once per topup_id
(firmware.prepaid keeps the ids across reboots), so a top-up re-sent under
a new seq credits nothing (ack 1).

Effects: top-up credits the balance and raises event 10 (detail topup_id,
amount; the relay closes when it was open for credit and the balance is
positive); relay opens/closes with the operator's reason (kept across
reboots: meter_state); set tariff installs it now or pending until its
activate_at (event 12 when it activates); time sync sets the clock (event
11 with old and new ts; flag bit 1 clears); read now appends a reading at
once; set config changes the reading interval and the prepaid settings.
"""

from micropython import const

from firmware import meter_events as ev
from protocol import cbor, cose
from protocol.errors import CBORError, ProtocolError

DONE = const(0)
DUPLICATE = const(1)
STALE = const(2)
EXPIRED = const(3)
BAD_ARGS = const(4)
UNSUPPORTED = const(5)
FAILED = const(6)
REASON_FORGED = const(7)
REASON_MALFORMED = const(8)
REJECT_EVENT_GAP_S = const(3600)


class CommandExec:
    def __init__(self, app):
        self.app = app
        self.forged = 0
        self.malformed = 0
        self._unreported = 0
        self._reason = 0
        self._event_sec = -REJECT_EVENT_GAP_S
        self.results = [0] * 7  # acks sent per result code

    def _drop(self, reason):
        if reason == REASON_FORGED:
            self.forged += 1
        else:
            self.malformed += 1
        self._unreported += 1
        self._reason = reason
        m = self.app.meter
        if m.sec - self._event_sec >= REJECT_EVENT_GAP_S:
            self._event_sec = m.sec
            m.raise_event(ev.EV_CMD_REJECTED, [0, reason, self._unreported])
            self._unreported = 0
        return None

    def handle(self, frame):
        """Verify and run one command frame; the ack's result, or None when the frame was dropped."""
        app = self.app
        m = app.meter
        rep = app.reporter
        try:
            payload = cose.mac0_decode(rep.key, rep.kid, frame)
        except ProtocolError as e:  # COSEError: structure, alg, kid or tag
            return self._drop(REASON_MALFORMED if e.field == "structure" else REASON_FORGED)
        try:
            msg = cbor.loads(payload)
            from protocol import messages

            c = messages.parse(msg)
            if c["type"] != messages.TYPE_COMMAND:
                raise ProtocolError("type: not a command", "type")
        except (CBORError, ProtocolError):
            return self._drop(REASON_MALFORMED)
        seq = c["seq"]
        if seq <= rep.cmd_hi:
            r = DUPLICATE if seq == rep.cmd_hi else STALE
            self._ack(seq, r)
            return r
        rep.cmd_hi = seq
        detail = None
        exp = c.get("expires")
        if exp is not None and exp < m.now():
            r = EXPIRED
        else:
            r, detail = self._run(c["cmd"], msg.get(21, {}))
        app.save()
        self._ack(seq, r, detail)
        return r

    def _ack(self, seq, r, detail=None):
        self.results[r] += 1
        self.app.reporter.ack(seq, r, detail)
        if self.app.meter.persist_request:
            self.app.save()

    def _run(self, cmd, raw):
        from protocol import commands

        m = self.app.meter
        try:
            a = commands.command_args(cmd, raw)
        except commands.UnsupportedCommand:
            return UNSUPPORTED, None
        except ProtocolError as e:
            return BAD_ARGS, {0: str(e)[:60]}
        try:
            if cmd == commands.CMD_TOPUP:
                return self._topup(a["topup_id"], a["amount"])
            if cmd == commands.CMD_RELAY:
                m.set_relay(a["state"] == commands.RELAY_CLOSE, a.get("reason", commands.REASON_OPERATOR))
            elif cmd == commands.CMD_SET_TARIFF:
                m.set_tariff(raw)
            elif cmd == commands.CMD_TIME_SYNC:
                self.app.set_clock(a["ts"])
            elif cmd == commands.CMD_READ_NOW:
                self.app.reporter.read_now()
            elif cmd == commands.CMD_SET_CONFIG:
                return self._config(a)
        except ValueError as e:  # MeterError, PrepaidError: the meter cannot take it
            return BAD_ARGS, {0: str(e)[:60]}
        return DONE, None

    def _topup(self, topup_id, amount):
        m = self.app.meter
        pp = m.prepaid
        if pp is None:
            return UNSUPPORTED, None
        from firmware.prepaid import TOPUP_DUPLICATE

        st = pp.topup_status(topup_id)
        if st == TOPUP_DUPLICATE:
            return DUPLICATE, None
        if not pp.topup(topup_id, amount):
            return BAD_ARGS, {0: "topup_id too old"}
        m.raise_event(ev.EV_TOPUP, [topup_id, amount])
        m._minute()  # credit decisions now: reconnect, re-arm
        return DONE, None

    def _config(self, a):
        m = self.app.meter
        has_pp = "low_balance" in a or "emergency_limit" in a or "friendly_hours" in a
        if has_pp and m.prepaid is None:
            return UNSUPPORTED, None
        iv = a.get("interval")
        if iv is not None and (iv < 60 or 86400 % iv):
            return BAD_ARGS, {0: "interval must be >= 60 s and divide 86400"}
        if has_pp:
            m.prepaid.set_config(a.get("low_balance"), a.get("emergency_limit"), a.get("friendly_hours"))
            m._minute()  # credit decisions now: reconnect, re-arm
        if iv is not None:
            self.app.reporter.interval = iv
        m.persist_request = True
        return DONE, None
