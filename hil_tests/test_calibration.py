"""ATM90E26 calibration as it crosses the SPI bus: both register blocks written, CS1/CS2 equal to
REFERENCES.md's checksum of what was written and to the chip's own sums, CalErr/AdjErr clear; a chip
holding a corrupted checksum sets CalErr (or AdjErr), the meter reports event 18 (detail 2:
calibration) and stops metering."""

import pytest

from hil_tests.support import call
from hil_tests.targets.base import ADJERR, CALERR, ref_checksum

FAULT_CALIBRATION = 2
_KEYS = {0x23: "lgain", 0x24: "lphi", 0x31: "ugain", 0x32: "igainl"}


def test_calibration_checksums_match_chip_and_calerr_adjerr_clear(target):
    r = call(target.calibration)
    assert sorted(r["cal_words"]) == list(range(0x21, 0x2C)), "PLconstH..MMode written after CalStart 0x5678"
    assert sorted(r["adj_words"]) == list(range(0x31, 0x3B)), "Ugain..QoffsetN written after AdjStart 0x5678"
    cal = [r["cal_words"][a] for a in range(0x21, 0x2C)]
    adj = [r["adj_words"][a] for a in range(0x31, 0x3B)]
    assert r["cs1_written"] == ref_checksum(cal), "CS1 = byte sum | byte XOR of 0x21..0x2B"
    assert r["cs2_written"] == ref_checksum(adj), "CS2 = byte sum | byte XOR of 0x31..0x3A"
    assert r["cs1_chip"] == r["cs1_written"] and r["cs2_chip"] == r["cs2_written"], "the chip agrees"
    assert r["sys_status"] is not None, "SysStatus read after the 0x8765 check"
    assert r["sys_status"] & (CALERR | ADJERR) == 0, "SysStatus 0x%04X" % r["sys_status"]
    words = {**r["cal_words"], **r["adj_words"]}
    for addr, key in _KEYS.items():
        if key in r["calibration"]:
            assert words[addr] == r["calibration"][key] & 0xFFFF, "%s from config.json written" % key
    assert r["metering"] is True and 18 not in r["events"]


@pytest.mark.parametrize("fault,bits", [("cs1", CALERR), ("cs2", ADJERR)])
def test_corrupted_checksum_sets_error_bits_reports_event_18_and_stops_metering(target, fault, bits):
    r = call(target.calibration, fault=fault)
    assert r["sys_status"] is not None and r["sys_status"] & bits == bits, r["sys_status"]
    assert (18, {0: FAULT_CALIBRATION}) in r["event_details"], r["event_details"]
    assert r["metering"] is False
    assert r["imp_mwh_after"] == 0, "no energy is registered by a meter whose IC rejected its calibration"
