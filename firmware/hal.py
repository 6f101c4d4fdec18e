"""The hardware abstraction a board supplies to firmware.app, and the two front-end adapters.

A board (firmware/boards/<name>.py) is an object with:

    name                 "unix", "esp32", "rp2040" (status key 42)
    flash_dir            directory on the board's (littlefs) filesystem holding
                         config.json and the state slots
    reset_cause()        RESET_POWER_ON, RESET_WATCHDOG or RESET_SOFT
    clock_at_boot(ts, ms)  unix time (s, ms) to start from; ts/ms = the clock in
                         the persisted state or None. Boards read their RTC and
                         never go below the persisted clock (an RTC that lost
                         power); the emulator resumes at the persisted clock.
    frontend(cfg)        a front end (below) for cfg["frontend"], pins from cfg["pins"]
    set_relay(closed)    drive the load relay (True = supply connected)
    wdt_start(ms), wdt_feed()  the hardware watchdog (cannot be stopped once started)
    elapsed_ms()         ms since the previous call (first call: since boot)
    sleep_ms(ms)         wait; the emulator advances its clock and hardware instead
    running()            False once the emulator's scenario ends; True on boards

A front end has ``calibrate(cal) -> bool`` (False when the chip rejects its
calibration, atm90e26.CalibrationError: fatal for metering), ``poll(out, dt_ms=0) -> bool`` (fill the
shared ``out`` layout of firmware/meter.py for the dt_ms ms since the previous poll; False = invalid
sample, skipped) and ``bad_reads``. poll() allocates nothing.

Only board files import ``machine``; this module does not.
"""

from micropython import const

RESET_POWER_ON = const(0)
RESET_WATCHDOG = const(1)
RESET_SOFT = const(2)


class AtmSource:
    """The ATM90E26 driver as a front end: poll() reads energy counts and measurements."""

    def __init__(self, driver):
        self.driver = driver

    def calibrate(self, cal):
        from firmware.atm90e26 import CalibrationError

        try:
            self.driver.calibrate(cal)
        except CalibrationError:
            return False
        return True

    def poll(self, out, dt_ms=0):
        return self.driver.poll(out)  # the chip integrates on its own: dt_ms is not needed

    @property
    def bad_reads(self):
        return self.driver.bad_reads


class AdcSource:
    """Direct ADC sampling as a front end: ``sample(vbuf, ibuf, n)`` fills two array('H') buffers
    (the board's sampler, one window of consecutive samples per call); firmware.adc_frontend
    measures each window and poll() gives the mean over ``fe.windows(dt_ms)`` windows taken back
    to back: one at high current, more at low current (up to the calibration's ``duty`` % of
    dt_ms), one when dt_ms is 0."""

    def __init__(self, sample):
        self._sample = sample
        self.fe = None
        self.vbuf = None
        self.ibuf = None
        self.bad_reads = 0

    def calibrate(self, cal):
        from array import array

        from firmware.adc_frontend import ADCFrontEnd

        self.fe = ADCFrontEnd(cal)
        n = self.fe.n
        self.vbuf = array("H", bytes(2 * n))
        self.ibuf = array("H", bytes(2 * n))
        return True

    def poll(self, out, dt_ms=0):
        fe = self.fe
        n = fe.n
        vbuf = self.vbuf
        ibuf = self.ibuf
        fe.begin()
        good = 0
        for _ in range(fe.windows(dt_ms)):
            if self._sample(vbuf, ibuf, n):
                fe.add(vbuf, ibuf, n)
                good += 1
            else:
                self.bad_reads += 1  # a window the board could not time: left out of the mean
        if not good:
            return False
        fe.finish(out)
        return True  # status bits (clipping, no frequency) are in out[11]; the sample still counts
