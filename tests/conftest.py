import pytest

from tests.mosquitto_broker import MosquittoBroker


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto broker on a free loopback port (anonymous access)."""
    with MosquittoBroker(tmp_path) as b:
        yield b
