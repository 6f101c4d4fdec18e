"""`make demo` keeps working: the README promises what it prints."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_demo_runs_and_checks_out():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py")], capture_output=True, text=True, timeout=300
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "demo        OK" in out
    # the firmware part ran and every rate register matched the calendar within 0.5 %
    rows = [line.split() for line in out.splitlines() if line.startswith(("T1 ", "T2 ", "T3 ", "T4 "))]
    firmware_rows = [r for r in rows if r[-1] == "%"]
    assert len(firmware_rows) == 4 and all(abs(float(r[-2])) < 0.5 for r in firmware_rows), out
    assert "rejected 1 by kid check, 1 by tag check" in out
