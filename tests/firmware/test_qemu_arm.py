"""The qemu-arm runtime (make firmware-arm; tools/emulate.py --runtime qemu-arm): the firmware on a Cortex-M3.

MicroPython's qemu port (board MPS2_AN385, 64 KiB heap, the firmware frozen,
viper compiled for Thumb-2) runs in qemu-system-arm against the same CPython
bench as the unix runtimes, over the emulated UART; its flash is a littlefs
image in the --flash DIR, reached through semihosting (emulator/qemu_main.py).
The IEC class 1 points run on it too (tests/firmware/test_emulate_accuracy.py,
parametrized on the runtime). Here:

- a simulated day under the four-rate tariff (the kill test's day: import
  with reactive load, an export stretch, capacitive import; ATM90E26, 60 s
  polls) gives exactly the integers of the unix32 runtime: registers with
  their remainders, reactive quadrants, events, steps, saves;
- SIGKILLs of qemu during that day, each followed by a resume on the same
  --flash DIR: every boot after the first save loads a state, and each
  register ends within one chip count per restart of the uninterrupted qemu
  day's (the residue a fresh chip starts without; test body), where counting
  anything twice would add a whole step. The kills are gated on events, not on wall time: at the instant the
  bench's emulated clock passes a point of the day (the firmware then waits
  for the bench's reply), or at the n-th write to the flash image after such
  a point, or from power-up (inotify on flash.img): littlefs commits a save in
  a few writes and the kill follows the write within a fraction of a
  millisecond, so it lands inside that save or just after it, or in a boot's
  formatting, config copy or first save.
"""

import ctypes
import os
import random
import select
import struct
import threading

import pytest

from tests.firmware.emulate_support import TARIFF_4, emulate, run, write_scenario
from tests.firmware.test_emulate_kill import BOOT, DAY, START, _totals

RT = "qemu-arm"
SCENARIO = {"frontend": "atm90e26", "start": START, "tariff": TARIFF_4, "segments": DAY}
SAME = (
    "registers", "imp", "exp", "imp_mwh", "exp_mwh", "q", "q_mvarh", "events", "events_dropped",
    "ts", "steps", "saves", "rate", "tariff", "relay", "boot_count", "bad_reads", "chip_counts",
)  # fmt: skip
IN_MODIFY = 0x2


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """The day, uninterrupted, on unix32 and on qemu-arm (each on a fresh flash)."""
    d = tmp_path_factory.mktemp("qemu-day")
    return {rt: run(d, rt, SCENARIO, runtime=rt) for rt in ("unix32", RT)}


def test_day_under_four_rates_same_integers_as_unix32(day):
    q, u = day[RT], day["unix32"]
    assert [k for k in SAME if q[k] != u[k]] == [], {k: (q[k], u[k]) for k in SAME if q[k] != u[k]}
    assert all(q["imp"]) and q["exp"][1] > 0 and q["q"][0] and q["q"][3], q  # every rate, export, Q1, Q4
    assert q["frozen"] and q["heap_size"] <= 64 * 1024 and q["heap_peak"] < q["heap_size"], q
    print(
        "\nqemu-arm day: %d steps, %d saves, %d ms in the firmware (unix32 %d ms), heap_peak %d of %d"
        % (q["steps"], q["saves"], q["wall_ms"], u["wall_ms"], q["heap_peak"], q["heap_size"])
    )


class ImageWrites:
    """Writes to the flash image, as inotify reports them (qemu's semihosting write() calls)."""

    def __init__(self, path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(path), IN_MODIFY) < 0:
            raise OSError(ctypes.get_errno(), "inotify on %s" % path)

    def _events(self):
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return 0
        n = i = 0
        while i < len(buf):  # struct inotify_event: wd, mask, cookie, len, name[len]
            n += 1
            i += 16 + struct.unpack_from("iIII", buf, i)[3]
        return n

    def drain(self):
        while self._events():
            pass

    def wait(self, n, timeout=60):
        """Until n more writes (identical unread events coalesce: at least n); False on timeout."""
        seen = 0
        while seen < n:
            if not select.select([self.fd], [], [], timeout)[0]:
                return False
            seen += self._events()
        return True

    def close(self):
        os.close(self.fd)


def _killed(sc, flash, at_s, writes):
    """One qemu run on ``flash``, SIGKILLed once the bench's clock passed START + at_s: at once (writes
    0: the firmware is waiting for the bench) or at the writes-th write to the image after that; at_s
    None: at the writes-th write from power-up (the boot: mount or format, config, first save)."""
    s = emulate.Session(str(sc), str(flash), runtime_name=RT)
    # the bench made the image; qemu waits at its REPL prompt until wait() brings the firmware up
    image = ImageWrites(s.bench.image) if writes else None
    bench, orig = s.bench, s.bench.sleep
    gate = (START + (at_s or 0)) * 1000
    reached = threading.Event()
    if at_s is None:
        reached.set()

    def sleep(ms):
        d = orig(ms)
        if bench.t_ms >= gate and not reached.is_set():
            if not writes:
                s.proc.kill()
            reached.set()
        return d

    bench.sleep = sleep
    res = []
    t = threading.Thread(target=lambda: (res.append(s.wait(120)), reached.set()))
    t.start()
    if writes:
        assert reached.wait(120)
        if at_s is not None:
            image.drain()
        image.wait(writes)
        s.proc.kill()
        image.close()
    t.join()
    return res[0]


def test_sigkill_mid_day_resumes_without_double_counting(tmp_path, day):
    emulate.ensure_built(RT)
    sc = write_scenario(tmp_path / "day.json", **SCENARIO)
    flash = tmp_path / "killed"
    rng = random.Random(20240702)
    # (emulated s into the day or None: from power-up, kill at the n-th flash write after it or 0: at
    # once): the first boot (formatting the new image), a resuming boot (its first save), then through
    # the day, inside saves and between steps
    hours = (2, 6, 11, 16, 21)
    plan = [(None, 2), (None, 8)] + [
        (h * 3600 + rng.randrange(3600), rng.choice((0, 1, 2, 4))) for h in hours
    ]
    boots, kills = [], 0
    for at_s, writes in plan:
        state, err, rc = _killed(sc, flash, at_s, writes)
        assert state is None and rc == -9, (rc, err)
        kills += 1
        boots += [tuple(int(x) for x in m) for m in BOOT.findall(err)]
    final, err = emulate.run(str(sc), str(flash), runtime_name=RT)
    boots += [tuple(int(x) for x in m) for m in BOOT.findall(err)]
    ref = day[RT]
    # state never corrupt: once a state was saved, every boot loads one; seq and clock never go back
    loaded, prev = False, (0, 0)
    for _n, restored, seq, ts, _rec in boots:
        assert restored or not loaded, boots
        loaded = loaded or restored
        assert (seq, ts) >= prev, (prev, seq, ts)
        prev = (seq, ts)
    assert loaded and final["ts"] == ref["ts"], (boots, final["ts"], ref["ts"])
    restarts = final["boot_count"] - 1
    assert 1 <= restarts <= kills, (restarts, kills, boots)
    ki, ke, kq = _totals(final)
    ri, re_, rq = _totals(ref)
    # Each restart starts a fresh chip, with a zero residue (< 1 count = 1/32 Wh = 100 units): a
    # register ends up to one count per restart below the uninterrupted meter's (the residue lost at
    # the cut) or, because the emulated chip keeps one signed residue per quantity, above it when the
    # power flow reversed after the restart (the residue it started without shifts a count from one
    # direction to the other). Counting anything twice would add at least a whole 60 s step (about
    # 380 to 1450 counts at this load), far beyond the bound.
    bound = 100 * restarts
    diffs = [ki - ri, ke - re_] + [a - b for a, b in zip(kq, rq, strict=True)]
    assert all(abs(d) <= bound for d in diffs), (diffs, bound, final, ref)
    print(
        "\nqemu-arm kills: %d (plan %s), %d restarts that loaded state, %d storage recoveries; "
        "killed - uninterrupted: import %d, export %d, Q1..Q4 %s units (bound +-%d)"
        % (kills, plan, restarts, final["storage_recoveries"], diffs[0], diffs[1], diffs[2:], bound)
    )
