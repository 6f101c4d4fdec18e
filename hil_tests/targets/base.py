"""The contract every HIL target implements, and the host-side helpers both targets share.

A target is one meter under test. Times in a scenario ``spec`` are seconds after
its ``start``; the spec has the tools/emulate.py scenario keys (``frontend``,
``start``, ``segments``, ``tariff``, ``prepaid``, ``commands``, ``poll_ms``). On the
emulator the segments are the load; on a board the load is whatever the tester's
bench applies (declared with --ref-*), the segments only give the durations.

Operations (each returns a plain dict; ``Unsupported`` when the target cannot):

    boot(patch=None, text=None, frontend=None)
        boot a fresh meter whose config.json is the target's default config
        deep-merged with ``patch`` (or exactly ``text``) ->
        {ok, field, error, events, metering, boot_count, state_saved}
    calibration(fault=None)          fault: None, "cs1" or "cs2" (the chip holds a corrupted checksum)
        boot with the SPI bus logged -> decode_calibration() keys plus
        {events, event_details, metering, imp_mwh_after, calibration (config dict)}
    measure(point)                   one iec.Point -> {measured_wh, reference_wh, seconds}
    run(spec, flash=None, patch=None)
        run a scenario (tariff, prepaid, scripted commands) with reporting on ->
        {state, messages, flash, start}; messages are the outbox's records decoded,
        [(seq, kind, map)]; ``flash`` can be passed back to continue the same meter
    power_cut(spec, cut_s, patch=None)
        run, cut the power at cut_s, reboot -> {energy_at_cut_mwh, restored_mwh,
        events_after, boot_count, persist_wh, poll_ms, flash}
    backlog(broker, outage_spec, after_spec, patch=None)
        run outage_spec with the broker unreachable, then after_spec against ``broker``
        -> {outage_state, state, frames}; frames = [(topic, payload)] the broker delivered
    load_w(segment)                  active power (W) the meter sees during a spec segment
    energy_tolerance_wh(wh, frontend)
                                     how far a registered energy may be from the reference
    close()

``realtime`` is True when a scenario second takes a real second (boards);
``relay_cuts_load`` when an open relay stops the measured current.
"""

import copy
import json
import os

from hil_tests import iec

# ATM90E26 registers (REFERENCES.md)
SYSSTATUS = 0x01
CALSTART = 0x20
CS1 = 0x2C
ADJSTART = 0x30
CS2 = 0x3B
START_CODE = 0x5678
CHECK_CODE = 0x8765
CALERR = 0xC000
ADJERR = 0x3000


class Unsupported(Exception):
    """The target cannot run this operation; the message names the target and why (the test skips)."""


class Target:
    name = "target"
    realtime = False
    relay_cuts_load = True
    frontends = ()
    meter_id = "emu-0001"

    def close(self):
        return None

    def resolve_point(self, point):
        """The accuracy point as this target measures it (a board fills in its front end, Ib, Imax)."""
        return point

    def load_w(self, segment):
        raise NotImplementedError

    def energy_wh(self, spec, t0, t1):
        """Reference active energy (Wh) of the spec's load between t0 and t1 s after its start."""
        wh = 0.0
        t = 0
        for seg in spec["segments"]:
            a, b = max(t, t0), min(t + seg["seconds"], t1)
            if b > a:
                wh += self.load_w(seg) * (b - a) / 3600.0
            t += seg["seconds"]
        return wh

    def energy_tolerance_wh(self, wh, frontend=None):
        raise NotImplementedError


def deep_merge(base, patch):
    """A copy of ``base`` with ``patch`` merged in (dicts recursively; other values replace)."""
    out = copy.deepcopy(base)
    for k, v in (patch or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def config_error_field(message):
    """``config.broker.port: expected ...`` -> "broker.port" ("" for the whole file)."""
    head = message.split(": ", 1)[0].strip()
    if head.startswith("config."):
        return head[len("config.") :]
    return ""


def ref_checksum(words):
    """CS1/CS2 as REFERENCES.md defines it: low byte = sum of all bytes mod 256, high byte = XOR of them."""
    s = x = 0
    for w in words:
        for b in (w >> 8 & 0xFF, w & 0xFF):
            s += b
            x ^= b
    return (x << 8) | (s & 0xFF)


def decode_calibration(frames):
    """What an ATM90E26 calibration put on the SPI bus.

    ``frames``: [(first byte, word sent, word received)] in bus order. Returns
    {cal_words {addr: word} (0x21..0x2B written after CalStart 0x5678), adj_words
    (0x31..0x3A after AdjStart 0x5678), cs1_written, cs2_written, cs1_chip, cs2_chip
    (what reading CS1/CS2 returned: the chip's own sums), sys_status (the SysStatus
    read after 0x8765 was written to CalStart), frames (count)}.
    """
    out = {
        "cal_words": {},
        "adj_words": {},
        "cs1_written": None,
        "cs2_written": None,
        "cs1_chip": None,
        "cs2_chip": None,
        "sys_status": None,
        "frames": len(frames),
    }
    block = None
    checked = False
    for first, sent, got in frames:
        addr = first & 0x7F
        if not first & 0x80:  # a write
            if addr in (CALSTART, ADJSTART):
                if sent == START_CODE:
                    block = "cal_words" if addr == CALSTART else "adj_words"
                    out[block] = {}
                elif sent == CHECK_CODE and addr == CALSTART:
                    checked = True
                    block = None
            elif addr == CS1:
                out["cs1_written"] = sent
            elif addr == CS2:
                out["cs2_written"] = sent
            elif block == "cal_words" and CALSTART < addr < CS1:
                out["cal_words"][addr] = sent
            elif block == "adj_words" and ADJSTART < addr < CS2:
                out["adj_words"][addr] = sent
        elif addr == CS1:
            out["cs1_chip"] = got
        elif addr == CS2:
            out["cs2_chip"] = got
        elif addr == SYSSTATUS and checked and out["sys_status"] is None:
            out["sys_status"] = got
    return out


def seal_command(key, meter_id, start, c):
    """A scripted command (the tools/emulate_bench.py "commands" entry) sealed as the bench seals it."""
    if "frame_hex" in c:
        return bytes.fromhex(c["frame_hex"])
    from protocol import cbor, cose

    args = _int_keys(c.get("args", {}))
    msg = {0: 10, 1: c["seq"], 2: c.get("ts", start + c["at"]), 20: c["cmd"], 21: args}
    if "expires" in c:
        msg[22] = c["expires"]
    k = bytes.fromhex(c["key_hex"]) if "key_hex" in c else key
    return cose.mac0_encode(k, c.get("kid", meter_id).encode(), cbor.dumps(msg))


def _int_keys(v):
    if isinstance(v, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: _int_keys(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_int_keys(x) for x in v]
    return v


def verify_frame(frame, key, meter_id):
    """The message map of a meter's COSE_Mac0 frame, verified with ``cwt`` (an independent COSE library)."""
    import cbor2
    from cwt import COSE, COSEKey

    cose_key = COSEKey.from_symmetric_key(key, alg="HS256", kid=meter_id.encode())
    return cbor2.loads(COSE.new().decode(frame, cose_key))


def outbox_messages(outbox_dir, key, meter_id):
    """Every record in a meter's outbox directory as (seq, kind, message map), oldest first, verified."""
    from firmware.outbox import Outbox

    if not os.path.isdir(outbox_dir):
        return []
    ob = Outbox(outbox_dir).open()
    out = []
    for seq, kind, payload in ob.peek(0, 1 << 30):
        msg = verify_frame(payload, key, meter_id)
        if msg[1] != seq or msg[0] != kind:
            raise AssertionError("outbox record %d/%d holds message %r" % (seq, kind, msg))
        out.append((seq, kind, msg))
    return out


def of_type(messages, t):
    return [m for _s, k, m in messages if k == t]


def load_json(path):
    with open(path) as f:
        return json.load(f)


def declared_point(opts, frontend, ib=None, imax=None):
    """The board tester's declared reference as an iec.Point (None without --ref-watts)."""
    if opts.ref_watts is None:
        return None
    pf, kind = iec.parse_pf(opts.ref_pf)
    amps = opts.ref_amps if opts.ref_amps is not None else opts.ref_watts / (opts.ref_volts * pf)
    ib = ib or opts.ib or iec.IB
    imax = imax or opts.imax or iec.IMAX
    p = iec.Point(frontend, amps / ib, kind, ib, imax, opts.ref_volts, declared={"watts": opts.ref_watts})
    p.label = "declared %.3g A %s" % (amps, iec.PF_LABEL.get(kind, "PF " + kind))
    return p
