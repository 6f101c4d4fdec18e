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


def pytest_collection_modifyitems(session, config, items):
    """Under pytest-xdist (``make test`` runs two workers) every HIL test goes to one worker
    (``--dist loadgroup``): the report in build/hil-report is one session's record of them all."""
    for item in items:
        if _is_hil(item.nodeid):
            item.add_marker(pytest.mark.xdist_group("hil"))


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


def pytest_runtest_logreport(report):
    if not _is_hil(report.nodeid):
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


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    rec = config._hil_recorder
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


def _worker_report(config):
    """Under xdist the controller ran no HIL test itself: the points and paths of the report a
    worker wrote during this session (None when none was)."""
    if not hasattr(config, "workerinput") and config.pluginmanager.hasplugin("xdist"):
        d = _opts(config).hil_report or os.path.join(ROOT, DEFAULT_REPORT)
        path = os.path.join(d, "report.json")
        try:
            if os.path.getmtime(path) >= config._hil_started:
                with open(path) as f:
                    doc = json.load(f)
                paths = [os.path.join(d, n) for n in ("report.json", "report.html", "report.txt")]
                return doc["points"], [p for p in paths if os.path.exists(p)]
        except (OSError, ValueError, KeyError):
            pass
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rec = config._hil_recorder
    if not rec.points and not config._hil_paths:
        found = _worker_report(config)
        if found is None or not getattr(config.option, "numprocesses", None):
            return
        rec.points[:], config._hil_paths = found
    tr = terminalreporter
    if rec.points:
        tr.section("HIL accuracy (IEC 62053-21 class 1)")
        for line in text_table(rec.points).splitlines():
            tr.write_line(line)
    if config._hil_paths:
        tr.write_line("HIL report: %s" % "  ".join(os.path.relpath(p) for p in config._hil_paths))
