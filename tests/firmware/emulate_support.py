"""Helpers for the CPython tests that run tools/emulate.py (the firmware on micropython) end to end."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_emulate():
    spec = importlib.util.spec_from_file_location("emulate_tool", ROOT / "tools" / "emulate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


emulate = _load_emulate()

# Code run with micropython_exe() from the project root imports the frozen firmware (unix32) only
# with '.frozen' ahead of '' (the root, where firmware/ holds the sources) on sys.path; on a runtime
# with nothing frozen (unix64) the sources import, as before.
FROZEN_FIRST = "import sys; sys.path.insert(0, '.frozen')\n"


def micropython_exe():
    """The default runtime's micropython (tools/emulate.py: unix32, the firmware frozen in and
    rebuilt first when a frozen source changed; EMULATE_RUNTIME=unix64 for pip's port)."""
    rt = emulate.runtime()
    rt.ensure()
    return rt.exe()


# Monday-first week; a 4-rate tariff in the docs/protocol.md set-tariff shape with JSON string keys
TARIFF_4 = {
    "0": 41,
    "1": 0,
    "2": [1200, 950, 650, 350],
    "3": [
        [[0, 4], [420, 3], [600, 2], [660, 1], [720, 2], [840, 3], [1140, 1], [1260, 2], [1380, 4]],  # summer
        [[0, 4], [480, 3], [1050, 1], [1200, 3], [1320, 4]],  # winter weekday (17:30: a half hour)
        [[0, 4], [570, 3], [1320, 4]],  # weekend (09:30)
    ],
    "4": [[0, 0, 0, 0, 0, 2, 2], [1, 1, 1, 1, 1, 2, 2]],
    "5": [[4, 1, 0], [10, 1, 1]],  # summer from April 1, winter from October 1
    "7": 480,
}


def write_scenario(path, **scenario):
    path = pathlib.Path(path)
    path.write_text(json.dumps(scenario))
    return path


def run(tmp_path, name, scenario, flash=None, heap=emulate.DEFAULT_HEAP, runtime=None):
    """Run one scenario (dict) on ``flash`` (default: a fresh dir named after it) on ``runtime``
    (tools/emulate.py's RUNTIMES; default its default); the final state."""
    sc = write_scenario(tmp_path / (name + ".json"), **scenario)
    state, _err = emulate.run(str(sc), str(flash or tmp_path / (name + "-flash")), heap, runtime_name=runtime)
    return state


def units(state, key="imp"):
    """Exact register contents in front-end units, per rate, from the raw snapshot.

    snapshot: [version, n, units_per_wh, units_per_varh, imp*n, imp_rem*n, exp*n, exp_rem*n, q*4, q_rem*4]
    """
    snap = state["registers"]
    n, per = snap[1], snap[2]
    base = 4 if key == "imp" else 4 + 2 * n
    return [snap[base + i] * per + snap[base + n + i] for i in range(n)]
