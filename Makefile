# Two commands set everything up: `make demo` and `make test`.
# Both create .venv (Python 3.11+) and install what they need.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/sbin:/usr/local/sbin

.PHONY: venv mosquitto chromium test test-micropython lint format demo bench mpy clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "ERROR: Python 3.11 or newer is needed (python3.11 on PATH)" >&2; exit 1; }
	@echo "setting up $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

mosquitto:
	@sh tools/ensure_mosquitto.sh

# headless Chromium for the web dashboard's browser tests (Debian's package; Playwright drives it)
chromium:
	@sh tools/ensure_chromium.sh

test: venv mosquitto chromium
	$(BIN)/pytest

# the dual-runtime tests alone, on MicroPython, as bytecode on a 64 KiB heap,
# one process per module (as pytest's tests/test_dual_runtime_micropython.py does)
test-micropython: venv
	$(BIN)/python tools/mpy_build.py --out build/mpy
	@cd build/mpy && fail=0; for f in tests/dual/test_*.mpy; do m=$$(basename $$f .mpy); echo "== $$m"; \
		$(CURDIR)/$(BIN)/micropython -X heapsize=64K -c \
		"import sys; sys.path.insert(0, 'tests/dual'); import mp_runner; mp_runner.main(['$$m'])" || fail=1; \
		done; exit $$fail

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: venv mosquitto
	$(BIN)/python tools/demo.py

# benchmarks (never part of make test): prints tables, writes bench/results.json
bench: venv mosquitto
	$(BIN)/python tools/bench.py

mpy: venv
	$(BIN)/python tools/mpy_build.py --out build/mpy

clean:
	rm -rf build .pytest_cache .hypothesis
