"""`make demo` keeps working (a smoke test with a shorter span): the README promises what it prints."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_demo_runs_a_short_span_end_to_end_and_cleans_up(broker_tmp):
    work = broker_tmp / "demo"  # run as root, the demo's broker (user mosquitto) must reach its files
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--days", "1.2", "--work", str(work)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "demo        OK" in out
    lines = out.splitlines()
    # four meters, both front ends, prepaid and postpaid, each reading stored
    meters = [line.split() for line in lines if line.startswith("m-000")]
    assert len(meters) == 4 and {m[1] for m in meters} == {"atm90e26", "adc"}
    assert all(int(m[2]) > 0 and m[2] == m[3] for m in meters), out  # readings made == stored
    assert "0 not stored" in out
    # the prepaid customers' top-ups reached their meters and were acked
    prepaid = [line for line in lines if line.startswith("prepaid")]
    assert len(prepaid) == 2 and all("40 acked" in line for line in prepaid), out
    assert any(line.startswith("bill run") for line in lines) and "bills for" in out
    # alerts as of the end of the emulated span (issue 17 item 3), whatever day the demo runs: the
    # meters' clocks agree with the head-end's, so no clock drift; each meter is offline by its will
    rows = [line.split() for line in lines if line.startswith(" " * 12 + "#")]
    alerts = [a for a in rows if a[1] in ("info", "warning", "critical")]  # "#ID SEVERITY RULE METER ..."
    assert not any(a[2] == "clock_drift" for a in alerts), out
    offline = sorted(a[3] for a in alerts if a[2] == "comm_loss" and "offline" in " ".join(a))
    assert offline == ["m-0001", "m-0002", "m-0003", "m-0004"], out
    assert "as demo / " in out  # a dashboard login was made
    # every process it started is gone: no firmware, broker or head-end left running for this work dir
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(work) not in ps, ps
