"""ATM90E26 driver against the register-level model: runs under pytest and micropython."""

try:
    from tests.dual.support import raises
except ImportError:
    from support import raises

from emulator.atm90e26_model import ATM90E26Model
from firmware import atm90e26_reg as reg
from firmware import compat
from firmware.atm90e26 import (
    ATM90E26,
    MAX_RETRIES,
    OUT_AN,
    OUT_AP,
    OUT_FREQ,
    OUT_IRMS,
    OUT_IRMS_N,
    OUT_PF,
    OUT_PMEAN,
    OUT_QMEAN,
    OUT_RN,
    OUT_RP,
    OUT_SYSSTATUS,
    OUT_URMS,
    POLL_SIZE,
    CalibrationError,
    adjust_gain,
    calibration_words,
    checksum,
    energy_gain,
    phase_comp,
    pl_constant,
)

UN = 220.0
IB = 5.0
LSB_PER_HOUR_AT_UN_IB = 35200  # 1100 W x 1 h = 1.1 kWh = 3520 pulses at MC 3200 = 35200 LSB


def _meter(**kw):
    m = ATM90E26Model(**kw)
    d = ATM90E26(m, m.cs)
    return m, d


def _run(m, hours, u, i, phase, step=60):
    for _ in range(int(hours * 3600 // step)):
        m.advance(step, u, i, phase)


def _counts(m, d, hours, u, i, phase, step=60):
    """Energy counts polled over ``hours`` of a constant load (registers cleared first)."""
    out = [0] * POLL_SIZE
    assert d.poll(out)
    _run(m, hours, u, i, phase, step)
    assert d.poll(out)
    return out


def calibrate_meter(m, d, mc=3200):
    """The factory procedure: gains at Un/Ib PF 1, Lgain from 1 h of energy, Lphi at PF 0.5."""
    d.calibrate({"meter_constant": mc})
    out = [0] * POLL_SIZE
    m.advance(1, UN, IB, 0.0)
    assert d.poll(out)
    cal = {"meter_constant": mc}
    cal["ugain"] = adjust_gain(out[OUT_URMS], round(UN * 100), reg.DEF_UGAIN)
    cal["igainl"] = adjust_gain(out[OUT_IRMS], round(IB * 1000), reg.DEF_IGAINL)
    ref = round(UN * IB * mc / 100)  # LSB in 1 h: Wh * MC / 100
    cal["lgain"] = energy_gain(_counts(m, d, 1, UN, IB, 0.0)[OUT_AP], ref)
    d.calibrate(cal)
    cal["lphi"] = phase_comp(_counts(m, d, 1, UN, IB, 60.0)[OUT_AP], ref / 2, 60.0)
    d.calibrate(cal)
    return cal


def test_checksum_by_hand():
    # words 0x1234, 0xABCD -> bytes 12 34 AB CD
    # low  = (0x12 + 0x34 + 0xAB + 0xCD) mod 256 = 446 mod 256 = 190 = 0xBE
    # high = 0x12 ^ 0x34 ^ 0xAB ^ 0xCD = 0x26 ^ 0xAB ^ 0xCD = 0x8D ^ 0xCD = 0x40
    assert checksum([0x1234, 0xABCD]) == 0x40BE
    assert checksum([]) == 0
    # power-on block 0x21..0x2B: 0015 D174 0 0 0 0 08BD 0 0AEC 0 9422 -> sum 971 (0xCB), xor 0x55
    words = calibration_words()[0]
    assert words == [0x0015, 0xD174, 0, 0, 0, 0, 0x08BD, 0, 0x0AEC, 0, 0x9422]
    assert checksum(words) == 0x55CB


def test_pl_constant():
    pl = pl_constant(3200, 220, 5)
    assert pl == 0x15D174
    assert (pl >> 16, pl & 0xFFFF) == (reg.DEF_PLCONSTH, reg.DEF_PLCONSTL)
    assert pl_constant(1000, 230, 10) == 838860800 * 24 * 250 // (1000 * 230 * 10)
    assert pl_constant(3200, 220, 2.5) == 2859752  # float Ib: int(5033164800000 / 1760000)
    raises(CalibrationError, pl_constant, 0, 220, 5)


def test_frames_and_lastspidata_echo():
    m = ATM90E26Model()

    class Spy:
        def __init__(self):
            self.log = []

        def write_readinto(self, out, inb):
            m.write_readinto(out, inb)
            self.log.append((bytes(out), bytes(inb)))

    spy = Spy()
    d = ATM90E26(spy, m.cs)
    assert d.write(reg.SAGTH, 0x1234)
    assert spy.log == [(b"\x03\x12\x34", b"\x00\x00\x00"), (b"\x86\x00\x00", b"\x00\x12\x34")]
    spy.log = []
    assert d.read(reg.SAGTH) == 0x1234
    assert spy.log == [(b"\x83\x00\x00", b"\x00\x12\x34"), (b"\x86\x00\x00", b"\x00\x12\x34")]
    assert d.read(reg.UGAIN) == reg.DEF_UGAIN and d.read(reg.LASTSPIDATA) == reg.DEF_UGAIN
    assert d.read(0x7F) == 0 and d.read(0x05) == 0  # invalid addresses read 0
    # a 32-clock write is discarded; bytes with CS high reach nothing (MISO idles high)
    buf = bytearray(4)
    m.cs.value(0)
    m.write_readinto(bytearray(b"\x03\x11\x22\x33"), buf)
    m.cs.value(1)
    buf3 = bytearray(3)
    m.write_readinto(bytearray(b"\x03\x44\x55"), buf3)
    assert bytes(buf3) == b"\xff\xff\xff"
    assert d.read(reg.SAGTH) == 0x1234


def test_calibration_passes_and_checksums_match():
    m = ATM90E26Model()
    slept = []
    d = ATM90E26(m, m.cs, slept.append)
    cal = {"lgain": -300, "lphi": 0x8010, "pstartth": 0x0400, "ugain": 0x6800, "poffsetl": -5}
    st = d.calibrate(cal)
    assert st & (reg.SYS_CALERR | reg.SYS_ADJERR) == 0
    assert slept == [reg.RESET_WAIT_MS]  # waited once, after the soft reset
    cal_words, adj_words, _f, _s = calibration_words(cal)
    assert d.cs1 == checksum(cal_words) == d.read(reg.CS1)
    assert d.cs2 == checksum(adj_words) == d.read(reg.CS2)
    assert d.read(reg.LGAIN) == 0x10000 - 300 and d.read(reg.LPHI) == 0x8010
    assert d.read(reg.POFFSETL) == 0xFFFB and d.read(reg.UGAIN) == 0x6800
    assert d.read(reg.CALSTART) == reg.CHECK_CODE
    assert m.cs.value() == 1  # chip deselected between frames


def test_calibration_block_closed_without_start_code():
    m, d = _meter()
    d.calibrate({"lgain": 100})
    assert d.write(reg.LGAIN, 0x0777)  # echoed, but the closed block discards it
    assert d.read(reg.LGAIN) == 100
    assert d.write(reg.UGAIN, 0x1111) and d.read(reg.UGAIN) == reg.DEF_UGAIN


def test_wrong_checksum_gives_calerr_and_stops_metering():
    m, d = _meter()
    d.calibrate()
    assert d.write(reg.CALSTART, reg.START_CODE)
    assert d.write(reg.LGAIN, 0x0100)  # CS1 still holds the old value
    e = raises(CalibrationError, d.check_calibration)
    assert "CalErr" in str(e)
    out = _counts(m, d, 1, UN, IB, 0.0)
    assert out[OUT_AP] == 0 and out[OUT_SYSSTATUS] & reg.SYS_CALERR == reg.SYS_CALERR
    d.calibrate()  # a full calibration recovers
    assert _counts(m, d, 1, UN, IB, 0.0)[OUT_AP] == LSB_PER_HOUR_AT_UN_IB


def test_adjerr_freezes_measurements():
    m, d = _meter()
    d.calibrate()
    out = [0] * POLL_SIZE
    m.advance(1, UN, IB, 0.0)
    assert d.write(reg.ADJSTART, reg.START_CODE) and d.write(reg.UGAIN, 0x6000)
    raises(CalibrationError, d.check_calibration)
    m.advance(1, 230.0, 1.0, 0.0)
    assert d.poll(out) and out[OUT_URMS] == 22000 and out[OUT_IRMS] == 5000
    assert out[OUT_SYSSTATUS] & reg.SYS_ADJERR == reg.SYS_ADJERR


def test_dropped_write_caught_by_checksum_readback():
    m, d = _meter()
    orig = m._write_reg

    def drop_lgain(addr, v):
        orig(addr, 0 if addr == reg.LGAIN else v)
        m._last = v  # the bus echo looks right: only the checksum can tell

    m._write_reg = drop_lgain
    e = raises(CalibrationError, d.calibrate, {"lgain": 0x0123})
    assert "checksum" in str(e)


def test_bad_calibration_values_named():
    m, d = _meter()
    assert "lgian" in str(raises(CalibrationError, d.calibrate, {"lgian": 1}))
    assert "ugain" in str(raises(CalibrationError, d.calibrate, {"ugain": 0x10000}))
    assert "lphi" in str(raises(CalibrationError, d.calibrate, {"lphi": -1}))
    assert "ib" in str(raises(CalibrationError, calibration_words, {"ib": 0}))


def test_write_corruption_retried():
    m, d = _meter()
    m.fail_next_writes = 2
    assert d.write(reg.SAGTH, 0x1000) and d.retries == 2 and d.read(reg.SAGTH) == 0x1000
    m.fail_next_writes = 3  # the soft reset (not verifiable) takes one: CalStart resets the blocks anyway
    d.calibrate({"lgain": 7})
    assert d.retries == 4 and d.read(reg.LGAIN) == 7
    m.fail_next_writes = 10**6
    assert not d.write(reg.SAGTH, 0x2000) and d.retries == 4 + 1 + MAX_RETRIES
    assert "not confirmed" in str(raises(CalibrationError, d.calibrate))


def test_bad_reads_counted_and_skipped_without_losing_energy():
    m, d = _meter()
    d.calibrate()
    out = [0] * POLL_SIZE
    d.poll(out)
    _run(m, 1, UN, IB, 30.0)
    m.fail_next_reads = 1  # corrupts the first energy read: LastSPIData still holds the value
    assert d.poll(out) and d.retries == 1 and d.bad_reads == 0
    got_ap = out[OUT_AP]
    got_rp = out[OUT_RP]
    assert got_ap == m.total_counts[reg.APENERGY] and got_rp == m.total_counts[reg.RPENERGY] > 0
    saved = list(out)
    _run(m, 1, UN, IB, 30.0)
    m.fail_skip = 4  # AP and AN read fine, then RP (already cleared in the chip) fails
    m.fail_next_reads = 5
    assert not d.poll(out) and d.bad_reads == 1
    assert out == saved  # a failed poll leaves out untouched: the sample is skipped
    _run(m, 1, UN, IB, 30.0)
    m.fail_next_reads = 10**6  # the bus stays bad: every poll fails, nothing crashes
    assert not d.poll(out) and not d.poll(out) and d.bad_reads == 3
    m.fail_next_reads = 0
    assert d.poll(out)  # RP recovered from LastSPIData, AP carried over: no count lost
    assert got_ap + out[OUT_AP] == m.total_counts[reg.APENERGY]
    assert got_rp + out[OUT_RP] == m.total_counts[reg.RPENERGY]
    assert out[OUT_AP] > 1.9 * got_ap


def test_one_hour_counts_exact_and_measurements():
    m, d = _meter()
    d.calibrate()
    out = _counts(m, d, 1, UN, IB, 0.0)
    # 220 V x 5 A x 1 h = 1100 Wh; x MC 3200 / 100 = 35200 counts (3520 pulses)
    assert out[OUT_AP] == LSB_PER_HOUR_AT_UN_IB == m.total_counts[reg.APENERGY]
    assert out[OUT_AN] == out[OUT_RP] == out[OUT_RN] == 0
    assert out[OUT_AP] * 100 // 3200 == 1100  # Wh = count * 100 / MC
    assert (out[OUT_URMS], out[OUT_IRMS], out[OUT_PMEAN], out[OUT_QMEAN]) == (22000, 5000, 1100, 0)
    assert (out[OUT_PF], out[OUT_FREQ], out[OUT_IRMS_N]) == (1000, 5000, 5000)
    assert m.total_counts[reg.ATENERGY] == LSB_PER_HOUR_AT_UN_IB
    m.freq_hz = 49.5
    m.advance(1, UN, IB, 60.0, irms_n_a=2.0)
    assert d.poll(out) and out[OUT_PF] == 500 and out[OUT_FREQ] == 4950 and out[OUT_IRMS_N] == 2000
    assert out[OUT_QMEAN] == 953  # 1100 x sin 60
    assert d.read(reg.PANGLE) == 600 and d.read(reg.SMEAN) == 1100


def test_harmonics_add_to_power_and_rms():
    m, d = _meter()
    d.calibrate()
    out = [0] * POLL_SIZE
    d.poll(out)
    h = ((3, 0.1, 0.3, 20.0),)  # 3rd: 10 % of Un, 30 % of Ib, 20 deg apart
    for _ in range(60):
        m.advance(60, UN, IB, 0.0, h)
    assert d.poll(out)
    # P = 1100 + 0.1 x 0.3 x 1100 x cos 20 = 1131.0099 W -> x 32 counts/Wh = 36192.3
    assert out[OUT_AP] == 36192 and out[OUT_PMEAN] == 1131
    assert out[OUT_URMS] == 22110 and out[OUT_IRMS] == 5220  # 220 x sqrt(1.01), 5 x sqrt(1.09)


def test_reverse_and_reactive_directions():
    m, d = _meter()
    d.calibrate()
    out = _counts(m, d, 1, UN, IB, 180.0)
    assert out[OUT_AP] == 0 and out[OUT_AN] == LSB_PER_HOUR_AT_UN_IB
    assert out[OUT_PMEAN] == -1100 and out[OUT_PF] == -1000
    assert d.en_status & reg.EN_REVP and out[OUT_SYSSTATUS] & reg.SYS_REVPCHG
    out = _counts(m, d, 1, UN, IB, 90.0)  # pure inductive: forward reactive
    assert out[OUT_RP] == LSB_PER_HOUR_AT_UN_IB and out[OUT_RN] == 0 and out[OUT_AP] + out[OUT_AN] <= 1
    out = _counts(m, d, 1, UN, IB, -90.0)
    assert out[OUT_RN] == LSB_PER_HOUR_AT_UN_IB and out[OUT_RP] == 0
    assert d.en_status & reg.EN_REVQ and out[OUT_SYSSTATUS] & reg.SYS_REVQCHG
    assert m.total_counts[reg.RTENERGY] == 2 * LSB_PER_HOUR_AT_UN_IB


def test_forward_and_reverse_cancel_inside_the_chip():
    m, d = _meter()
    d.calibrate()
    out = [0] * POLL_SIZE
    d.poll(out)
    for _ in range(100):  # 0.6 LSB forward, 0.6 LSB back: never a whole count
        m.advance(0.06136, UN, IB, 0.0)  # 1100 W x 0.06136 s = 67.5 Ws = 0.6 LSB (112.5 Ws each)
        m.advance(0.06136, UN, IB, 180.0)
    assert d.poll(out) and out[OUT_AP] == 0 and out[OUT_AN] == 0


def test_16_bit_wrap():
    m, d = _meter()
    d.calibrate()
    out = [0] * POLL_SIZE
    d.poll(out)
    _run(m, 2, 230.0, 43.478, 0.0)  # ~10 kW for 2 h = 20 kWh = 640000 counts > 0xFFFF
    total = m.total_counts[reg.APENERGY]
    assert total > 0xFFFF
    assert d.poll(out) and out[OUT_AP] == total % 0x10000  # the chip register wrapped
    # below 2048 Wh (0xFFFF counts at MC 3200) between polls nothing is lost
    _run(m, 0.2, 230.0, 43.478, 0.0)
    assert d.poll(out) and out[OUT_AP] == m.total_counts[reg.APENERGY] - total


def test_no_creep_at_no_load():
    m, d = _meter(power_offset_w=1.5)  # 1.5 W offset with the current circuit open
    d.calibrate()
    out = _counts(m, d, 24, UN * 1.15, 0.0, 0.0, step=600)
    assert out[OUT_AP] == out[OUT_AN] == 0 and d.en_status & reg.EN_PNOLOAD
    d.calibrate({"pstartth": 0, "pnolth": 0})  # without thresholds the offset creeps
    assert _counts(m, d, 24, UN * 1.15, 0.0, 0.0, step=600)[OUT_AP] > 0


def test_starting_current():
    m, d = _meter()
    d.calibrate()
    # class 1 starting current 0.004 Ib = 20 mA: 4.4 W > PStartTh 0x08BD (2.237 W): registers
    out = _counts(m, d, 1, UN, 0.004 * IB, 0.0)
    assert out[OUT_AP] == 140  # 4.4 Wh x 32 = 140.8 counts
    assert not d.en_status & reg.EN_PNOLOAD
    out = _counts(m, d, 1, UN, 0.0015 * IB, 0.0)  # 1.65 W: below the threshold
    assert out[OUT_AP] == 0 and d.en_status & reg.EN_PNOLOAD
    d.calibrate({"pstartth": 1000})  # 1 W threshold (class 0.5S starts at 0.001 In)
    assert _counts(m, d, 1, UN, 0.0015 * IB, 0.0)[OUT_AP] == 52  # 1.65 Wh x 32 = 52.8


def test_calibration_corrects_sensor_errors():
    m, d = _meter(gain_error_u=0.03, gain_error_i=-0.02, phase_error_deg=0.2)
    d.calibrate()
    raw = _counts(m, d, 1, UN, IB, 0.0)
    assert abs(raw[OUT_AP] / LSB_PER_HOUR_AT_UN_IB - 1) > 0.009  # uncalibrated: 1.03 x 0.98
    calibrate_meter(m, d)
    for phase, ref in ((0.0, LSB_PER_HOUR_AT_UN_IB), (60.0, LSB_PER_HOUR_AT_UN_IB / 2)):
        out = _counts(m, d, 1, UN, IB, phase)
        assert abs(out[OUT_AP] / ref - 1) < 0.001, (phase, out[OUT_AP])
    assert abs(out[OUT_URMS] - 22000) <= 22 and abs(out[OUT_IRMS] - 5000) <= 5


def test_soft_reset_restores_defaults():
    m, d = _meter()
    d.calibrate({"lgain": 5, "ugain": 0x7000})
    d._xfer(reg.SOFTRESET, reg.SOFTRESET_CODE)
    assert d.read(reg.LGAIN) == 0 and d.read(reg.UGAIN) == reg.DEF_UGAIN
    assert d.read(reg.CALSTART) == reg.POWERON_START and d.read(reg.ENSTATUS) == reg.DEF_ENSTATUS


def test_poll_allocates_nothing():
    m, d = _meter()
    d.calibrate()
    out = [0] * POLL_SIZE
    m.advance(60, UN, IB, 30.0)
    d.poll(out)  # warm-up: lazy state allocated
    m.advance(60, UN, IB, 30.0)
    m.fail_next_reads = 1
    compat.heap_lock()
    try:
        ok = d.poll(out)
        ok2 = d.poll(out)
    finally:
        compat.heap_unlock()
    assert ok and ok2 and d.retries == 1
    for v in out:
        assert -compat.HOT_INT_LIMIT < v < compat.HOT_INT_LIMIT
