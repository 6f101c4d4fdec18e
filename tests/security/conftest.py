"""Fixtures of the security tests: a fleet of two provisioned meters (A, B) behind a real
Mosquitto configured by `headend broker-config` (per-meter passwords and ACL), with
`headend serve` started on demand as a real subprocess."""

from __future__ import annotations

import pytest

from tests.headend.broker_support import Serve, cli_json, start_broker


@pytest.fixture
def fleet(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "headend.db")
    meters = {m: cli_json(capsys, "meter", "add", m, "--db", db) for m in ("A", "B")}
    broker, url = start_broker(capsys, db, str(broker_tmp / "broker"))
    user, password = url.split("//")[1].split("@")[0].split(":")
    started: list[Serve] = []

    def serve(*extra):
        started.append(Serve(db, url, *extra))
        return started[-1]

    yield {
        "db": db,
        "url": url,
        "port": broker.port,
        "headend_port": broker.headend_port,
        "meters": meters,
        "key": {m: bytes.fromhex(v["key"]) for m, v in meters.items()},
        "password": {m: v["mqtt_password"] for m, v in meters.items()},
        "headend_user": (user, password),
        "serve": serve,
    }
    for s in started:  # a failed test must not leave its `headend serve` running
        if s.proc.poll() is None:
            s.kill()
    broker.stop()
