"""Reading what an emulated meter reported: its flash outbox, verified with the independent `cwt`."""

import cbor2
from cwt import COSE, COSEKey

from firmware.outbox import Outbox
from tests.firmware.emulate_support import emulate

KEY = bytes.fromhex(emulate.emulate_bench.KEY_HEX)
METER_ID = "emu-0001"


def verify(frame, key=KEY, meter_id=METER_ID):
    """The message map of a COSE_Mac0 frame, verified by cwt (an independent COSE implementation)."""
    cose_key = COSEKey.from_symmetric_key(key, alg="HS256", kid=meter_id.encode())
    return cbor2.loads(COSE.new().decode(frame, cose_key))


def outbox_messages(flash):
    """Every record still in the meter's outbox as (seq, kind, message map), oldest first."""
    ob = Outbox(str(flash) + "/outbox").open()
    out = []
    for seq, kind, payload in ob.peek(0, 1 << 30):
        msg = verify(payload)
        assert msg[1] == seq and msg[0] == kind, (seq, kind, msg)
        out.append((seq, kind, msg))
    return out


def of_type(messages, t):
    return [m for _s, k, m in messages if k == t]
