# Two commands set everything up: `make demo` and `make test`.
# Both create .venv (Python 3.11+), install what they need and build the firmware's
# runtime (`make firmware`).

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/sbin:/usr/local/sbin

.PHONY: venv mosquitto postgresql chromium firmware firmware-arm arm-toolchain test test-micropython lint format demo bench mpy clean

# The emulator's runtime: MicroPython 1.28.0's unix port compiled 32-bit (gcc -m32, Debian's
# gcc-multilib, installed when missing) with the firmware frozen in from emulator/manifest.py
# (which includes firmware/manifest.py, what a board gets). Source: $(MICROPY_SRC) (a tarball or
# a checkout) when set, else ../shared/vendor/micropython-1.28.0.tar.gz, else a clone of tag
# v1.28.0 from GitHub (tools/build_micropython.py). Rebuilt when a frozen file changes.
UNIX32 := build/micropython-unix32/micropython
FROZEN_SOURCES := $(wildcard firmware/*.py firmware/boards/*.py protocol/*.py emulator/*.py)
BUILD_PYTHON := $(or $(PYTHON),python3)

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "ERROR: Python 3.11 or newer is needed (python3.11 on PATH)" >&2; exit 1; }
	@echo "setting up $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

mosquitto:
	@sh tools/ensure_mosquitto.sh

# PostgreSQL for the tests of both engines: a server at 127.0.0.1:5432, else Debian's initdb and
# pg_ctl for a private cluster (tests/pg_support.py); the package is installed when missing
postgresql:
	@sh tools/ensure_postgresql.sh

# headless Chromium for the web dashboard's browser tests (Debian's package; Playwright drives it)
chromium:
	@sh tools/ensure_chromium.sh

firmware: $(UNIX32)

$(UNIX32): $(FROZEN_SOURCES) tools/build_micropython.py
	@sh tools/ensure_gcc_m32.sh
	@sh tools/ensure_mbedtls_m32.sh
	$(BUILD_PYTHON) tools/build_micropython.py --jobs 2

# The qemu-arm runtime (tools/emulate.py --runtime qemu-arm): MicroPython 1.28.0's qemu port for
# the MPS2-AN385 board, a Cortex-M3 run by qemu-system-arm, with a 64 KiB heap, littlefs and
# emulator/qemu_manifest.py frozen (firmware/manifest.py plus the emulator's entry; viper compiled
# for Thumb-2) and the qemuhost C module (emulator/cmodules: semihosting flash, stderr, exit).
# Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm are installed when
# missing. Same MicroPython source as `make firmware` (tools/build_qemu_arm.py reuses
# tools/build_micropython.py's); rebuilt when a frozen or C module file changes.
QEMU_ARM := build/micropython-qemu-arm/firmware.elf
CMODULE_SOURCES := $(wildcard emulator/cmodules/*/*)

firmware-arm: arm-toolchain $(QEMU_ARM)

arm-toolchain:
	@sh tools/ensure_arm_toolchain.sh

$(QEMU_ARM): $(FROZEN_SOURCES) $(CMODULE_SOURCES) tools/build_qemu_arm.py tools/build_micropython.py | arm-toolchain
	$(BUILD_PYTHON) tools/build_qemu_arm.py --jobs 2

# the suite on TEST_WORKERS processes (pytest-xdist; default: the machine's cores, at most 4); the
# workers' parts of the HIL record are merged into one build/hil-report by the controlling process
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

test: venv mosquitto postgresql chromium firmware firmware-arm
	$(BIN)/pytest -n $(TEST_WORKERS)

# the dual-runtime tests alone, one process per module on a 64 KiB heap (as pytest's
# tests/test_dual_runtime_micropython.py does): on the frozen 32-bit runtime (the tree holds
# only the tests and vectors; '.frozen' first on sys.path), then as bytecode on pip's 64-bit port
test-micropython: venv firmware
	$(BIN)/python tools/mpy_build.py --frozen --arch x86 --out build/mpy-frozen
	$(BIN)/python tools/mpy_build.py --out build/mpy
	@fail=0; for rt in unix32 unix64; do \
		if [ $$rt = unix32 ]; then dir=build/mpy-frozen; exe=$(CURDIR)/$(UNIX32); first="sys.path.insert(0, '.frozen'); "; \
		else dir=build/mpy; exe=$(CURDIR)/$(BIN)/micropython; first=""; fi; \
		for f in $$dir/tests/dual/test_*.mpy; do m=$$(basename $$f .mpy); echo "== $$rt $$m"; \
		(cd $$dir && $$exe -X heapsize=64K -c \
		"import sys; sys.path.insert(0, 'tests/dual'); import mp_runner; $$first mp_runner.main(['$$m'])") || fail=1; \
		done; done; exit $$fail

# ruff, then the firmware type-checked per board against that port's MicroPython stubs (pyright;
# the stubs pip-installed into build/stubs/<port> when missing: tools/typecheck.py), then the
# checker's self-check: a misspelled machine.SPI keyword in a temporary copy must be caught
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/typecheck.py --install
	$(BIN)/python tools/typecheck.py --selfcheck

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: venv mosquitto firmware
	$(BIN)/python tools/demo.py

# benchmarks (never part of make test): prints tables, writes bench/results.json; the firmware's
# image sizes build the same port with nothing and with only firmware/manifest.py frozen (kept in
# build/micropython-unix32-bare and -board; a few minutes the first time)
bench: venv mosquitto postgresql firmware
	$(BIN)/python tools/bench.py

mpy: venv
	$(BIN)/python tools/mpy_build.py --out build/mpy

clean:
	rm -rf build .pytest_cache .hypothesis
