"""Flash outbox (firmware.outbox): order, acks, capacity drops, torn and corrupt records, meta fallback.

Plain functions that run on CPython (pytest) and on MicroPython at a 64 KiB heap.
"""

import binascii
import os
import struct

try:
    from tests.dual.fs_support import rmtree, tmpdir
    from tests.dual.support import raises
except ImportError:
    from fs_support import rmtree, tmpdir
    from support import raises

from firmware.outbox import HEADER, MAGIC, Outbox, OutboxError, encode_record


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _segments(ob):
    names = [n for n in os.listdir(ob.directory) if n.startswith("s")]
    names.sort()
    return names


def _payload(seq, n):
    return bytes([(seq * 7 + i) & 0xFF for i in range(n)])


def _seqs(items):
    return [it[0] for it in items]


def test_record_layout_is_the_documented_one():
    rec = encode_record(0x01020304, 2, 0x0A0B0C0D, b"xyz")
    assert len(rec) == HEADER + 3 and rec[0] == MAGIC == 0xA7
    assert bytes(rec[:12]) == b"\xa7\x02\x03\x00\x04\x03\x02\x01\x0d\x0c\x0b\x0a"
    crc = binascii.crc32(b"xyz", binascii.crc32(bytes(rec[:12]))) & 0xFFFFFFFF
    assert struct.unpack("<I", rec[12:16])[0] == crc
    assert bytes(rec[16:]) == b"xyz"


def test_append_peek_ack_in_seq_order():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob", seg_bytes=100).open()  # 46-byte records: 2 per segment
        assert not ob.recovered and ob.last_seq == 0 and ob.pending() == 0 and ob.peek(0, 5) == []
        for seq in range(1, 8):
            ob.append(seq, 1 + seq % 4, 1000 + seq, _payload(seq, 30))
        assert ob.pending() == 7 and ob.last_seq == 7
        got = ob.peek(0, 3)
        assert got == [(1, 2, _payload(1, 30)), (2, 3, _payload(2, 30)), (3, 4, _payload(3, 30))]
        assert _seqs(ob.peek(3, 100)) == [4, 5, 6, 7]
        assert _seqs(ob.peek(6, 1)) == [7] and ob.peek(7, 1) == []
        ob.ack(2)
        assert ob.acked == 2 and ob.pending() == 5
        assert _seqs(ob.peek(0, 2)) == [3, 4]  # after_seq below acked: acked wins
        ob.ack(1)  # never decreases
        assert ob.acked == 2 and ob.pending() == 5
        assert ob.tail(5) == [(6, 3, 1006), (7, 4, 1007)]
        e = raises(OutboxError, ob.ack, 8)
        assert "8" in str(e)
        st = ob.stats()
        assert st["pending"] == 5 and st["acked"] == 2 and st["last_seq"] == 7 and st["dropped"] == 0
        assert st["segments"] == 3 and st["bytes"] == 5 * 46
    finally:
        rmtree(d)


def test_ack_deletes_whole_segments_and_counts_gaps_in_seq():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob", seg_bytes=100).open()
        for seq in (1, 2, 5, 9, 10, 20):  # seqs may skip: segments [1,2] [5,9] [10,20]
            ob.append(seq, 1, seq, _payload(seq, 30))
        assert _segments(ob) == ["s00000001", "s00000005", "s0000000a"]
        ob.ack(1)
        assert ob.pending() == 5 and len(_segments(ob)) == 3
        ob.ack(2)
        assert _segments(ob) == ["s00000005", "s0000000a"] and ob.pending() == 4
        assert "meta.a" in os.listdir(ob.directory)  # meta saved before the deletion
        ob.ack(7)
        assert ob.pending() == 3 and _seqs(ob.peek(0, 9)) == [9, 10, 20]
        ob.ack(15)
        assert _segments(ob) == ["s0000000a"] and ob.pending() == 1
        ob.ack(20)
        assert _segments(ob) == [] and ob.pending() == 0 and ob.stats()["bytes"] == 0
        ob.append(21, 1, 21, b"z")  # a fresh segment after everything was delivered
        assert _segments(ob) == ["s00000015"] and _seqs(ob.peek(0, 9)) == [21]
    finally:
        rmtree(d)


def test_reopen_restores_last_seq_acked_dropped():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob", seg_bytes=1000).open()
        for seq in range(1, 41):
            ob.append(seq, 1, seq, _payload(seq, 20))
        for seq in range(1, 6):
            ob.ack(seq)
        ob.sync()
        ob.ack(6)  # not persisted yet: sent again after a reboot
        r = Outbox(d + "/ob", seg_bytes=1000).open()
        assert not r.recovered and r.last_seq == 40 and r.acked == 5 and r.dropped == 0
        assert r.pending() == 35 and _seqs(r.peek(0, 1)) == [6]
        for seq in range(6, 22):  # the 16th advancing ack persists by itself
            r.ack(seq)
        r2 = Outbox(d + "/ob", seg_bytes=1000).open()
        assert r2.acked == 21 and r2.pending() == 19
        r2.ack(40)  # every record delivered: segments gone, last_seq kept from acked
        r3 = Outbox(d + "/ob", seg_bytes=1000).open()
        assert r3.last_seq == 40 and r3.acked == 40 and r3.pending() == 0 and _segments(r3) == []
        raises(OutboxError, r3.append, 40, 1, 0, b"x")
        r3.append(41, 1, 0, b"x")
    finally:
        rmtree(d)


def test_capacity_drops_oldest_segments_and_counts_exactly():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob", max_bytes=300, seg_bytes=100).open()  # 2 records of 46 B per segment
        for seq in range(1, 7):
            ob.append(seq, 1, seq, _payload(seq, 30))
        ob.ack(1)
        assert ob.stats()["bytes"] == 276 and ob.dropped == 0
        ob.append(7, 1, 7, _payload(7, 30))  # 322 B > 300: segment [1,2] goes, 1 was delivered
        assert ob.dropped == 1 and ob.pending() == 5 and _segments(ob)[0] == "s00000003"
        assert _seqs(ob.peek(0, 9)) == [3, 4, 5, 6, 7]
        ob.append(8, 1, 8, _payload(8, 30))
        ob.append(9, 1, 9, _payload(9, 30))  # segment [3,4] goes
        assert ob.dropped == 3 and ob.pending() == 5 and ob.stats()["bytes"] <= 300
        r = Outbox(d + "/ob", max_bytes=300, seg_bytes=100).open()
        assert r.dropped == 3 and r.acked == 1 and r.last_seq == 9 and not r.recovered
        assert _seqs(r.peek(0, 9)) == [5, 6, 7, 8, 9] and r.pending() == 5
    finally:
        rmtree(d)


def _three_records(d):
    """A segment with records 1, 2 and the bytes of a third (seq 3) to tear or damage."""
    ob = Outbox(d + "/ob").open()
    ob.append(1, 1, 11, _payload(1, 20))
    ob.append(2, 2, 12, _payload(2, 20))
    seg = ob.directory + "/s00000001"
    return seg, _read(seg), encode_record(3, 1, 13, _payload(3, 20))


def test_torn_last_record_at_every_byte_offset_is_absent_rest_intact():
    d = tmpdir("fw_outbox_")
    try:
        seg, prefix, rec = _three_records(d)
        for cut in range(len(rec)):
            _write(seg, prefix + rec[:cut])
            r = Outbox(d + "/ob").open()
            assert r.recovered == (cut > 0), cut
            assert r.last_seq == 2 and r.pending() == 2, cut
            assert r.peek(0, 9) == [(1, 1, _payload(1, 20)), (2, 2, _payload(2, 20))], cut
            assert _read(seg) == prefix, cut  # torn tail cut off
        r.append(3, 1, 13, _payload(3, 20))  # the seq of the lost record is free again
        assert _read(seg) == prefix + rec
        # a torn record that starts a new segment: the file is removed
        r = Outbox(d + "/ob", seg_bytes=3 * 36).open()
        rec4 = encode_record(4, 1, 14, _payload(4, 20))
        for cut in range(len(rec4)):
            _write(r.directory + "/s00000004", rec4[:cut])
            r = Outbox(d + "/ob", seg_bytes=3 * 36).open()
            assert r.recovered and r.last_seq == 3 and _segments(r) == ["s00000001"], cut
        r.append(4, 1, 14, _payload(4, 20))
        assert _segments(r) == ["s00000001", "s00000004"] and _seqs(r.peek(0, 9)) == [1, 2, 3, 4]
    finally:
        rmtree(d)


def test_corrupted_byte_anywhere_in_last_record_is_detected():
    d = tmpdir("fw_outbox_")
    try:
        seg, prefix, rec = _three_records(d)
        for i in range(len(rec)):
            bad = bytearray(rec)
            bad[i] ^= 0x21
            _write(seg, prefix + bad)
            r = Outbox(d + "/ob").open()
            assert r.recovered and r.last_seq == 2 and _seqs(r.peek(0, 9)) == [1, 2], i
            assert _read(seg) == prefix, i
        # damage after open(): peek checks the CRC and skips the record
        bad = bytearray(prefix)
        bad[-1] ^= 0x21
        _write(seg, bad)
        assert _seqs(r.peek(0, 9)) == [1] and r.bad_reads == 1
    finally:
        rmtree(d)


def test_corrupt_middle_record_ends_its_segment_only():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob", seg_bytes=3 * 36).open()
        for seq in range(1, 7):
            ob.append(seq, 1, seq, _payload(seq, 20))  # segments [1,2,3] [4,5,6]
        seg = ob.directory + "/s00000001"
        data = bytearray(_read(seg))
        data[36 + 20] ^= 1  # payload of record 2
        _write(seg, data)
        r = Outbox(d + "/ob", seg_bytes=3 * 36).open()
        assert r.recovered and _seqs(r.peek(0, 9)) == [1, 4, 5, 6] and r.pending() == 4
        assert len(_read(seg)) == 36
        # a later segment whose seqs do not rise above the earlier one's is corrupt
        _write(r.directory + "/s00000005", encode_record(5, 1, 5, b"stale"))
        _write(r.directory + "/s00000002", encode_record(2, 1, 2, b"fine"))
        r = Outbox(d + "/ob", seg_bytes=3 * 36).open()
        assert r.recovered and _seqs(r.peek(0, 9)) == [1, 2, 4, 5, 6]
    finally:
        rmtree(d)


def test_corrupted_meta_slot_falls_back_to_other_slot():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob", seg_bytes=1000).open()
        for seq in range(1, 6):
            ob.append(seq, 1, seq, ("m%d" % seq).encode())
        ob.ack(2)
        ob.sync()  # slot a: acked 2
        ob.ack(4)
        ob.sync()  # slot b: acked 4
        assert Outbox(d + "/ob", seg_bytes=1000).open().acked == 4
        path = ob.directory + "/meta.b"
        data = bytearray(_read(path))
        data[-3] ^= 0xFF
        _write(path, data)
        r = Outbox(d + "/ob", seg_bytes=1000).open()
        assert r.recovered and r.acked == 2 and _seqs(r.peek(0, 9)) == [3, 4, 5]
        _write(ob.directory + "/meta.a", b"")
        r = Outbox(d + "/ob", seg_bytes=1000).open()  # no usable meta: everything is pending again
        assert r.recovered and r.acked == 0 and r.pending() == 5 and r.last_seq == 5
    finally:
        rmtree(d)


def test_bad_arguments_refused_with_the_field_named():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob").open()
        ob.append(5, 1, 0, b"a")
        assert "seq" in str(raises(OutboxError, ob.append, 5, 1, 0, b"b"))
        assert "seq" in str(raises(OutboxError, ob.append, 4, 1, 0, b"b"))
        assert "seq" in str(raises(OutboxError, ob.append, 2**32, 1, 0, b"b"))
        assert "kind" in str(raises(OutboxError, ob.append, 6, 256, 0, b"b"))
        assert "ts" in str(raises(OutboxError, ob.append, 6, 1, -1, b"b"))
        assert "payload" in str(raises(OutboxError, ob.append, 6, 1, 0, "text"))
        assert "payload" in str(raises(OutboxError, ob.append, 6, 1, 0, b""))
        assert "payload" in str(raises(OutboxError, ob.append, 6, 1, 0, bytes(2049)))
        assert ob.last_seq == 5 and ob.pending() == 1  # nothing refused was stored
        ob.append(6, 255, 2**32 - 1, bytes(2048))
        assert ob.peek(5, 1) == [(6, 255, bytes(2048))]
        _write(d + "/file", b"x")
        assert "directory" in str(raises(OutboxError, Outbox, d + "/file"))
        assert "directory" in str(raises(OutboxError, Outbox, d + "/no/such"))
        assert "seg_bytes" in str(raises(OutboxError, Outbox, d + "/ob", 4096, 10))
        assert "max_bytes" in str(raises(OutboxError, Outbox, d + "/ob", 100, 4096))
        assert isinstance(OutboxError("x"), OSError)
    finally:
        rmtree(d)


def test_interrupted_repair_and_deletion_are_finished_at_open():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob", seg_bytes=100).open()
        for seq in range(1, 5):
            ob.append(seq, 1, seq, _payload(seq, 30))  # segments [1,2] [3,4]
        first = _read(ob.directory + "/s00000001")
        ob.ack(2)  # meta saved, then s00000001 deleted
        _write(ob.directory + "/s00000001", first)  # power cut before the deletion
        _write(ob.directory + "/s00000003.tmp", first[:10])  # repair cut before its rename
        r = Outbox(d + "/ob", seg_bytes=100).open()
        assert r.recovered and _segments(r) == ["s00000003"] and r.pending() == 2
        # a complete .tmp whose segment was already removed (rename cannot replace) is put in place
        os.rename(r.directory + "/s00000003", r.directory + "/s00000003.tmp")
        r = Outbox(d + "/ob", seg_bytes=100).open()
        assert r.recovered and _segments(r) == ["s00000003"] and _seqs(r.peek(0, 9)) == [3, 4]
        assert not Outbox(d + "/ob", seg_bytes=100).open().recovered
    finally:
        rmtree(d)


def test_seven_days_of_readings_and_events_fit_default_capacity():
    d = tmpdir("fw_outbox_")
    try:
        ob = Outbox(d + "/ob").open()
        reading = bytes(170)
        event = bytes(60)
        seq = 0
        for i in range(672):
            seq += 1
            ob.append(seq, 1, 900 * i, reading)
            if i % 4 == 0 and i < 800:  # 168 events interleaved, 32 more at the end
                seq += 1
                ob.append(seq, 2, 900 * i, event)
        while seq < 872:
            seq += 1
            ob.append(seq, 2, 604800, event)
        st = ob.stats()
        assert st["dropped"] == 0 and st["pending"] == 872 and st["last_seq"] == 872
        assert st["bytes"] == 672 * 186 + 200 * 76 and st["bytes"] <= 262144
        r = Outbox(d + "/ob").open()
        assert r.pending() == 872 and r.dropped == 0 and r.stats()["segments"] == st["segments"]
        assert r.peek(0, 1) == [(1, 1, reading)] and r.peek(871, 5) == [(872, 2, event)]
    finally:
        rmtree(d)
