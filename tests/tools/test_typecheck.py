"""make lint's type check (tools/typecheck.py) is live: a misspelled machine.SPI keyword in a copy of
the board files fails it (the whole per-board check runs in `make lint`, minutes; this is its self-check)."""

import shutil

import pytest

from tools import typecheck


def test_misspelled_spi_keyword_is_caught(tmp_path):
    if shutil.which("node") is None:
        pytest.skip("pyright needs node")
    typecheck.install_stubs("esp32")
    caught, report = typecheck.selfcheck()
    assert caught, report
    assert "firmware/boards/mcu.py:" in report
