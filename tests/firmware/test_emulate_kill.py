"""Kill test: SIGKILL the firmware 200 times at random moments, restart on the same flash, compare.

The firmware process (micropython, tools/emulate.py's command line, served by
the CPython test bench in this process) plays a 6-day
ATM90E26 scenario (about 2.7 kW import with reactive load, an export
stretch, a 4-rate tariff), saving every ~50 Wh (every one or two 60 s steps,
so many kills land inside a save). A quarter of the runs are killed during
boot (whose first act is a save too: at a random instant before the boot's
typical end, measured on the earlier runs), the others once the bench has
served a random 0..40 emulated minutes of this run, plus up to 2 ms of real
time, so the kill lands anywhere in a step, saves included. The kills are
gated on the bench's progress, not on wall time alone, so a faster runtime
(the frozen unix32) or machine is killed just as often. Each run is
restarted with a fresh bench (a fresh chip, as after a power cut); a restart resumes at the
persisted clock and re-plays the scenario from there. A few whole
``tools/emulate.py`` runs (bench and firmware, one process group) are
killed as well. Then it
runs to the end and is compared with an uninterrupted run on a fresh flash:

- state never corrupt: every boot after the first completed save loads a
  state (boot line ``restored 1``), with a slot seq and clock that never go back;
- never counts twice: total import, export and reactive of the killed meter
  <= the uninterrupted meter's, but for one chip count per change of the flow's
  direction (the chip's residue is signed; see the test);
- never loses more than the bound: the difference <= 1 chip count (100
  units) per restart and register, the emulated chip's residue that a power
  cut loses (the chip restarts empty, as a real one does).
"""

import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

from tests.firmware.emulate_support import ROOT, TARIFF_4, emulate, run, units, write_scenario

START = 1719763200  # 2024-06-30 16:00 UTC = July 1 00:00 in the tariff's UTC+8
KILLS = 200
CLI_KILLS = 4  # whole tools/emulate.py runs (bench + firmware) killed as a process group
DAY = [
    {"seconds": 43200, "urms": 230, "irms": 13, "phase_deg": 25},
    {"seconds": 7200, "urms": 232, "irms": 9, "phase_deg": 200},
    {"seconds": 36000, "urms": 228, "irms": 13, "phase_deg": -20},
]
SCENARIO = {"frontend": "atm90e26", "start": START, "tariff": TARIFF_4, "segments": DAY * 6}
BOOT = re.compile(r"^boot (\d+) restored (\d) seq (\d+) ts (\d+) rec (\d+)$", re.M)


def _turns(scenario, part):
    """How often the active (cos) or reactive (sin) flow changes direction over the scenario."""
    signs = [part(math.radians(seg.get("phase_deg", 0))) > 0 for seg in scenario["segments"]]
    return sum(a != b for a, b in zip(signs, signs[1:], strict=False))


def _totals(s):
    snap = s["registers"]
    n, per = snap[1], snap[2]
    q = [snap[4 + 4 * n + i] * per + snap[4 + 4 * n + 4 + i] for i in range(4)]
    return sum(units(s, "imp")), sum(units(s, "exp")), q


class Killer:
    """Kills one firmware process per call at a random moment (module docstring); learns how long a
    boot takes from the runs it has seen."""

    def __init__(self, rng):
        self.rng = rng
        self.boot_s = []  # process start -> the first SLEEP request (boot done), per run

    def __call__(self, sc, flash):
        """One firmware process served by a fresh bench, SIGKILLed: (state, stderr, rc)."""
        rng = self.rng
        s = emulate.Session(str(sc), str(flash))
        t0 = time.monotonic()
        bench, orig = s.bench, s.bench.sleep
        advance = rng.uniform(0, 40 * 60 * 1000)  # emulated ms to serve before the kill
        booted, reached = [], threading.Event()

        def sleep(ms):
            if not booted:
                booted.append(bench.t_ms)
                self.boot_s.append(time.monotonic() - t0)
            d = orig(ms)
            if bench.t_ms - booted[0] >= advance:
                reached.set()
            return d

        bench.sleep = sleep
        res = []
        t = threading.Thread(target=lambda: (res.append(s.wait(60)), reached.set()))
        t.start()
        if rng.random() < 0.25:  # during boot
            typical = sorted(self.boot_s)[len(self.boot_s) // 2] if self.boot_s else 0.03
            time.sleep(rng.uniform(0, typical))
        else:
            reached.wait(60)
            time.sleep(rng.uniform(0, 0.002))
        s.proc.kill()
        t.join()
        return res[0]


def test_kill_200_times_then_compare(tmp_path):
    emulate.ensure_built()
    sc = write_scenario(tmp_path / "kill.json", **SCENARIO)
    flash = tmp_path / "killed"
    rng = random.Random(20240701)
    t0 = time.monotonic()
    boots = []
    kills = 0
    finished_early = 0
    killer = Killer(rng)
    for _ in range(KILLS):
        state, err, rc = killer(sc, flash)
        if rc == 0 or state is not None:  # done: its final report came before the kill, if any
            finished_early += 1
            assert state is not None, err
        else:
            assert rc == -9 and state is None, err
            kills += 1
        boots += [tuple(int(x) for x in m) for m in BOOT.findall(err)]
    cli = [sys.executable, str(ROOT / "tools" / "emulate.py"), "--scenario", str(sc), "--flash", str(flash)]
    for _ in range(CLI_KILLS):
        p = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(rng.uniform(0.15, 0.4))
        os.killpg(p.pid, signal.SIGKILL)
        _out, err = p.communicate()
        assert p.returncode in (0, -9), err.decode()
        boots += [tuple(int(x) for x in m) for m in BOOT.findall(err.decode())]
    final, err = emulate.run(str(sc), str(flash))
    boots += [tuple(int(x) for x in m) for m in BOOT.findall(err)]
    kill_wall = time.monotonic() - t0
    ref = run(tmp_path, "ref", SCENARIO)
    # state never corrupt: once a state was saved, every boot loads one; seq and clock never go back
    loaded = False
    prev = (0, 0)
    for _n, restored, seq, ts, _rec in boots:
        assert restored or not loaded, boots
        loaded = loaded or restored
        assert (seq, ts) >= prev, (prev, seq, ts)
        prev = (seq, ts)
    restarts = final["boot_count"] - 1
    assert final["ts"] == ref["ts"], (final["ts"], ref["ts"])
    assert kills > 150 and restarts <= KILLS + CLI_KILLS, (kills, finished_early, restarts)
    ki, ke, kq = _totals(final)
    ri, re_, rq = _totals(ref)
    bound = 100 * restarts  # one chip count (100 units) lost per restart and register
    # never counts twice. The chip's residue is signed: forward and reverse energy cancel in it
    # (emulator/atm90e26_model.py), so where the flow turns, the uninterrupted meter first spends
    # what remains of the old direction's residue, while a meter whose chip a power cut emptied
    # starts from zero and can register one count more in the new direction: at most one count
    # (100 units) per turn. A step counted twice would be over a thousand counts.
    p_turns, q_turns = _turns(SCENARIO, math.cos), _turns(SCENARIO, math.sin)
    assert ki <= ri + 100 * p_turns and ke <= re_ + 100 * p_turns, (final, ref)
    assert all(a <= b + 100 * q_turns for a, b in zip(kq, rq, strict=True)), (final, ref)
    assert ri - ki <= bound and re_ - ke <= bound, (ri - ki, re_ - ke, bound)
    assert all(b - a <= bound for a, b in zip(kq, rq, strict=True))
    worst = max(ri - ki, re_ - ke, max(b - a for a, b in zip(kq, rq, strict=True)))
    print(
        "\nkill test: %d kills (%d runs finished), %d restarts that loaded state, %d storage recoveries, "
        "%.1f s; worst loss %d units = %.3f Wh (bound %d units); import lost %d units"
        % (
            kills,
            finished_early,
            restarts,
            final["storage_recoveries"],
            kill_wall,
            worst,
            worst / final["registers"][2],
            bound,
            ri - ki,
        )
    )
    assert os.path.exists(flash / "state.a") and os.path.exists(flash / "state.b")
