"""pytest wiring of the HIL suite: options, the session's target and broker, the report at the end.

Options (``pytest hil_tests --help``, group "hil"): without ``--port`` the target is
the emulator; with it, the board on that serial port (nothing touches a serial
port otherwise). ``--ref-*`` declare the reference load the tester's bench applies
to the board. ``--hil-report DIR`` (default build/hil-report) receives report.json,
report.html and report.txt; the table is also printed at the end of the run.
"""

import datetime
import json
import os
import platform
import time

import pytest

from hil_tests import iec
from hil_tests.report import Recorder, text_table
from hil_tests.targets import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.basename(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_REPORT = os.path.join("build", "hil-report")


def pytest_addoption(parser):
    g = parser.getgroup("hil", "hardware-in-the-loop suite (hil_tests/)")
    g.addoption(
        "--port", default=None, help="serial port of a board running the firmware (default: the emulator)"
    )
    g.addoption(
        "--board", default="auto", choices=("auto", "esp32", "rp2040"), help="board kind (default: ask it)"
    )
    g.addoption("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    g.addoption(
        "--board-flash", default="/flash", help="the firmware's flash directory on the board (default /flash)"
    )
    g.addoption(
        "--board-scratch",
        default="/hil",
        help="scratch directory on the board for test meters (default /hil)",
    )
    g.addoption(
        "--reset",
        default="repl",
        choices=("repl", "rts"),
        help="power-cut method on a board: repl = Ctrl-C then machine.reset(); rts = pulse RTS (ESP32 EN)",
    )
    g.addoption("--ref-watts", type=float, default=None, help="reference active power of the bench's load, W")
    g.addoption("--ref-volts", type=float, default=230.0, help="reference voltage, V (default 230)")
    g.addoption("--ref-amps", type=float, default=None, help="reference current, A (default: W / (V * PF))")
    g.addoption(
        "--ref-pf", default="1", help="reference power factor: 1, 0.5L (inductive), 0.8C (capacitive)"
    )
    g.addoption(
        "--ref-seconds", type=float, default=60.0, help="seconds to integrate at the reference (default 60)"
    )
    g.addoption(
        "--ib", type=float, default=None, help="basic current Ib, A (default: the board's config.json)"
    )
    g.addoption(
        "--imax", type=float, default=None, help="maximum current Imax, A (default: the board's config.json)"
    )
    g.addoption(
        "--relay-cuts-load",
        action="store_true",
        help="the board's relay switches the bench's load (prepaid test)",
    )
    g.addoption(
        "--broker-host",
        default=None,
        help="this machine's address as the board sees it: runs the broker test against a board",
    )
    g.addoption("--hil-report", default=None, help="report directory (default build/hil-report)")


class HilOptions:
    """The hil options as attributes (targets take this, not the pytest config)."""

    NAMES = (
        "port",
        "board",
        "baud",
        "board_flash",
        "board_scratch",
        "reset",
        "ref_watts",
        "ref_volts",
        "ref_amps",
        "ref_pf",
        "ref_seconds",
        "ib",
        "imax",
        "relay_cuts_load",
        "broker_host",
        "hil_report",
    )

    def __init__(self, config):
        for n in self.NAMES:
            setattr(self, n, config.getoption(n))


def _opts(config):
    return HilOptions(config)


_CONFIG = []  # the running pytest config (pytest_runtest_logreport gets none)


def pytest_configure(config):
    _CONFIG[:] = [config]
    config._hil_recorder = Recorder()
    config._hil_started = time.time()
    config._hil_paths = None
    config._hil_target_name = "board" if config.getoption("port") else "emulator"


def accuracy_points(config):
    """Parameters of test_accuracy: the starting current and every class 1 point for both front ends on
    the emulator; on a board the one point the tester declared (or None: that test skips, naming the
    missing options)."""
    opts = _opts(config)
    if not opts.port:
        return [p for fe in ("atm90e26", "adc") for p in iec.accuracy_points(fe)]
    return [base.declared_point(opts, "board")]


def pytest_generate_tests(metafunc):
    if "accuracy_point" in metafunc.fixturenames:
        pts = accuracy_points(metafunc.config)
        metafunc.parametrize("accuracy_point", pts, ids=[p.ident if p else "board-undeclared" for p in pts])


@pytest.fixture(scope="session")
def hil_options(request):
    return _opts(request.config)


@pytest.fixture(scope="session")
def target(request, tmp_path_factory):
    from hil_tests.targets import make_target

    t = make_target(_opts(request.config), tmp_path_factory.mktemp("hil-" + request.config._hil_target_name))
    request.config._hil_target = t
    yield t
    t.close()


class _Broker:
    """The session's Mosquitto: ``port`` on loopback for this machine; ``board_host``/``board_port``
    where a board reaches it (--broker-host)."""

    def __init__(self, workdir, board_host=None):
        from tools.mosquitto_broker import MosquittoBroker, free_port

        self.board_host = board_host
        self.board_port = free_port() if board_host else None
        lines = ["listener %d 0.0.0.0" % self.board_port] if board_host else []
        self.b = MosquittoBroker(workdir, conf_lines=lines)
        self.port = self.b.port

    def start(self):
        self.b.start()
        return self

    def stop(self):
        self.b.stop()


@pytest.fixture(scope="session")
def hil_broker(request, tmp_path_factory):
    """One real Mosquitto for the whole session (anonymous; tests use distinct meter ids)."""
    b = _Broker(tmp_path_factory.mktemp("hil-broker"), _opts(request.config).broker_host).start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def hil_report(request):
    return request.config._hil_recorder


def _is_hil(nodeid):
    return nodeid.startswith(HERE + "/") or nodeid.startswith(HERE + "::")


def _xdist_controller(config):
    """True in pytest-xdist's controlling process (``make test`` runs the suite on several workers):
    the HIL tests run in the workers, each of which leaves its part of the record in
    ``<report dir>/.parts/<worker>.json``; the controller merges the parts into the one report."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_runtest_logreport(report):
    if not _is_hil(report.nodeid) or (_CONFIG and _xdist_controller(_CONFIG[0])):
        return
    rec = _recorder_of(report)
    if rec is None:
        return
    reason = ""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
    elif report.failed:
        reason = (report.longreprtext or "").strip().splitlines()[-1:] or [""]
        reason = reason[0][:300]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = report.outcome if report.when == "call" else ("skipped" if report.skipped else "error")
        rec.add_test(report.nodeid, outcome, report.duration, reason)


def _recorder_of(_report):
    return _CONFIG[0]._hil_recorder if _CONFIG else None


def _parts_dir(config):
    return os.path.join(_opts(config).hil_report or os.path.join(ROOT, DEFAULT_REPORT), ".parts")


def _merge_parts(config, rec):
    """Into the controller's recorder: the parts the workers wrote in this session (then removed)."""
    d = _parts_dir(config)
    try:
        names = sorted(os.listdir(d))
    except OSError:
        return
    for name in names:
        path = os.path.join(d, name)
        try:
            if os.path.getmtime(path) >= config._hil_started:
                with open(path) as f:
                    part = json.load(f)
                rec.points.extend(part["points"])
                rec.tests.extend(part["tests"])
            os.remove(path)
        except (OSError, ValueError, KeyError):
            continue


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    rec = config._hil_recorder
    if hasattr(config, "workerinput"):  # an xdist worker: its part of the record, for the controller
        if rec.tests:
            os.makedirs(_parts_dir(config), exist_ok=True)
            part = os.path.join(_parts_dir(config), "%s.json" % config.workerinput["workerid"])
            with open(part + ".tmp", "w") as f:
                json.dump({"points": rec.points, "tests": rec.tests}, f)
            os.replace(part + ".tmp", part)
        return
    if _xdist_controller(config):
        _merge_parts(config, rec)
    if not rec.tests:
        return
    opts = _opts(config)
    t = getattr(config, "_hil_target", None)
    meta = {
        "target": config._hil_target_name,
        "started": datetime.datetime.fromtimestamp(config._hil_started).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - config._hil_started, 1),
        "host": platform.node(),
        "exit_status": int(exitstatus),
    }
    if opts.port:
        meta.update(port=opts.port, board=getattr(t, "board_kind", opts.board))
        meta.update(
            ref_watts=opts.ref_watts, ref_volts=opts.ref_volts, ref_amps=opts.ref_amps, ref_pf=opts.ref_pf
        )
        meta["ref_seconds"] = opts.ref_seconds
    else:
        meta["reference"] = "the emulated front end (scenario load known exactly)"
    d = opts.hil_report or os.path.join(ROOT, DEFAULT_REPORT)
    config._hil_paths = rec.write(d, meta)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rec = config._hil_recorder
    if not rec.points and not config._hil_paths:
        return
    tr = terminalreporter
    if rec.points:
        tr.section("HIL accuracy (IEC 62053-21 class 1)")
        for line in text_table(rec.points).splitlines():
            tr.write_line(line)
    if config._hil_paths:
        tr.write_line("HIL report: %s" % "  ".join(os.path.relpath(p) for p in config._hil_paths))
