"""Authenticated command execution on the meter (docs/protocol.md, command type 10).

``CommandExec(app)``; ``handle(frame) -> result or None``. Checks, in the
order docs/protocol.md gives: the COSE_Mac0 structure, alg, kid (= this meter),
the tag (constant time), then the message (type 10); a COSE_Encrypt0 frame
(tag 16) is opened instead (structure, alg, kid, IV direction 1, AES-CCM tag,
then the message, whose seq must be the IV's). A meter with config ``privacy``
takes only COSE_Encrypt0 commands: a COSE_Mac0 one is dropped (reason 9). A frame
that fails any check is dropped and counted (``forged`` / ``malformed``), never acked
(the sender cannot be trusted), and reported by event 19 at most once per
REJECT_EVENT_GAP_S of meter time, detail ``{0: 0, 1: reason, 2: n}``
(reason 7 bad MAC/kid/alg/IV, 8 malformed, 9 COSE_Mac0 to a privacy meter; n = frames
dropped since the last such event). Then, for an authentic command with seq s:

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
once; set config changes the reading interval and the prepaid settings, and
with key 4 (only inside COSE_Encrypt0, else ack 4) rotates the meter's key:
config.json is rewritten with it (new file, then rename) before the state is
saved, the ack still goes out under the old key, and every frame after it is
sealed and verified with the new one (docs/security.md "Key lifecycle").
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
REASON_PLAIN = const(9)  # a COSE_Mac0 command to a meter configured for privacy
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
        self.plain = 0  # COSE_Mac0 commands dropped by a privacy meter
        self._sealed = False  # the command being run came inside COSE_Encrypt0
        self._new_key = None  # set config key 4: in force after the command's ack

    def _drop(self, reason):
        if reason == REASON_FORGED:
            self.forged += 1
        elif reason == REASON_PLAIN:
            self.plain += 1
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
        iv_seq = None
        sealed = len(frame) > 0 and frame[0] == 0xD0  # tag 16: COSE_Encrypt0
        if not sealed and rep.privacy:
            return self._drop(REASON_PLAIN)
        try:
            if sealed:
                payload, iv_seq = rep.encrypt0().open(1, frame)  # direction 1: head-end -> meter
            else:
                payload = cose.mac0_decode(rep.key, rep.kid, frame)
        except ProtocolError as e:  # COSEError: structure, alg, kid, iv or tag
            return self._drop(REASON_MALFORMED if e.field == "structure" else REASON_FORGED)
        try:
            msg = cbor.loads(payload)
            from protocol import messages

            c = messages.parse(msg)
            if c["type"] != messages.TYPE_COMMAND:
                raise ProtocolError("type: not a command", "type")
            if iv_seq is not None and c["seq"] != iv_seq:
                raise ProtocolError("seq: not the IV's", "seq")
        except (CBORError, ProtocolError):
            return self._drop(REASON_MALFORMED)
        self._sealed = sealed
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
        if self._new_key is not None:  # the ack went out under the old key; from now on the new one
            rep.set_key(self._new_key)
            self._new_key = None
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
        key = a.get("key")
        if key is not None:
            if not self._sealed:
                return BAD_ARGS, {0: "a key only inside COSE_Encrypt0"}
            self._store_key(key)  # durable before the state saves the command as taken
            self._new_key = key
        if has_pp:
            m.prepaid.set_config(a.get("low_balance"), a.get("emergency_limit"), a.get("friendly_hours"))
            m._minute()  # credit decisions now: reconnect, re-arm
        if iv is not None:
            self.app.reporter.interval = iv
        m.persist_request = True
        return DONE, None

    def _store_key(self, key):
        """Rewrite config.json with the new key: a new file, then a rename (a power cut leaves the old
        file or the new one, never half of one)."""
        import json
        import os

        from firmware.app import CONFIG_NAME

        path = self.app.board.flash_dir + "/" + CONFIG_NAME
        with open(path) as f:
            cfg = json.load(f)
        cfg["key"] = "".join("%02x" % b for b in key)
        with open(path + ".new", "w") as f:
            json.dump(cfg, f)
        os.rename(path + ".new", path)
