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


# ------------------------------------------------------------------ both database engines

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_session():
    """One PostgreSQL database for the test session (tests/pg_support.py), dropped at its end."""
    from tests.pg_support import SessionDatabase

    s = SessionDatabase()
    s.start()
    yield s
    s.stop()


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


@pytest.fixture
def db_target(engine, request, tmp_path, monkeypatch):
    """A new empty database on ``engine``: a SQLite path in tmp_path, or a PostgreSQL URL to a
    schema of its own in the session's database (its master key in a file named by
    $HEADEND_MASTER_KEY_FILE: a URL has no default key file beside it)."""
    if engine == "sqlite":
        return str(tmp_path / "h.db")
    return _pg_target(request, tmp_path, monkeypatch)


@pytest.fixture
def pg_url(request, tmp_path, monkeypatch):
    """``db_target`` on PostgreSQL only, for tests of what only PostgreSQL has."""
    return _pg_target(request, tmp_path, monkeypatch)


def _pg_target(request, tmp_path, monkeypatch) -> str:
    pg = request.getfixturevalue("pg_session")
    if pg.url is None:
        pytest.skip(pg.why_not)
    monkeypatch.setenv("HEADEND_MASTER_KEY_FILE", str(tmp_path / "pg.master-key"))
    import secrets as _secrets

    return pg.schema_url("t_" + _secrets.token_hex(6))
