import pathlib
import shutil

import pytest

from tests.mosquitto_broker import MosquittoBroker, broker_tmpdir


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto broker on a free loopback port (anonymous access)."""
    with MosquittoBroker(tmp_path) as b:
        yield b


@pytest.fixture
def broker_tmp():
    """A temporary directory for `headend broker-config` files that the broker can reach:
    run as root, Mosquitto reads them as user mosquitto, which cannot traverse tmp_path (0700)."""
    d = pathlib.Path(broker_tmpdir())
    yield d
    shutil.rmtree(d, ignore_errors=True)
