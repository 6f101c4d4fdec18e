"""Mosquitto never runs as root: started as root with `headend broker-config`'s file it drops to
user mosquitto (`user mosquitto`, never `user root`), and the files it reads after that (the
password files and ACLs, also on a SIGHUP reload, and its persistence file) are that user's;
its config stays root's. A directory it could not reach is refused with its name."""

from __future__ import annotations

import os
import pwd
import re
import signal
import stat

import pytest

from headend.db.storage import Storage
from headend.meters import provision
from headend.meters.provision import ProvisionError
from tests.headend.broker_support import Broker, wait_for
from tests.mosquitto_broker import free_ports
from tests.security.test_broker_identity import login

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="Mosquitto switches users only when started as root")


def ids(path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def process_ids(pid: int) -> tuple[list[int], list[int]]:
    """Real, effective, saved and filesystem uids and gids of a process (/proc/PID/status)."""
    fields = dict(line.split(":", 1) for line in open("/proc/%d/status" % pid).read().splitlines())
    return [int(v) for v in fields["Uid"].split()], [int(v) for v in fields["Gid"].split()]


@ROOT_ONLY
def test_as_root_the_broker_runs_as_mosquitto_and_reads_its_files_as_that_user(tmp_path, broker_tmp):
    mosq = pwd.getpwnam("mosquitto")
    out_dir = broker_tmp / "broker"
    port, headend_port = free_ports(2)
    with Storage(tmp_path / "h.db") as st:
        m1 = provision.add_meter(st, "m1")
        cfg = provision.write_broker_config(st, str(out_dir), port, True, headend_port)
    conf = open(cfg["conf"]).read().splitlines()
    assert "user mosquitto" in conf and not any(line.startswith("user root") for line in conf)
    broker_files = ("passwd", "acl", "headend-passwd", "headend-acl")
    for name in broker_files:
        assert ids(out_dir / name) == (mosq.pw_uid, mosq.pw_gid, 0o600), name
    # root's: the broker may read its config (for a reload) and write in the directory, but not
    # replace the config (sticky) nor change it
    assert ids(cfg["conf"]) == (0, mosq.pw_gid, 0o640)
    assert ids(out_dir) == (0, mosq.pw_gid, 0o1770)

    broker = Broker(cfg["conf"], port)
    try:
        uids, gids = process_ids(broker.proc.pid)
        assert uids == [mosq.pw_uid] * 4 and gids == [mosq.pw_gid] * 4, (uids, gids)
        user, password = cfg["headend_url"][len("mqtt://") :].split("@")[0].split(":")
        assert login("m1", m1["mqtt_password"], port) and login(user, password, headend_port)

        # a meter provisioned later: broker-config again, SIGHUP, and the broker (now mosquitto)
        # reads the config and the new password file
        with Storage(tmp_path / "h.db") as st:
            m2 = provision.add_meter(st, "m2")
            provision.write_broker_config(st, str(out_dir), port, True, headend_port)
        assert not login("m2", m2["mqtt_password"], port)
        broker.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: login("m2", m2["mqtt_password"], port), 10, "m2's login after the reload")
        assert login("m1", m1["mqtt_password"], port) and login(user, password, headend_port)

        # its persistence file, written as that user in root's sticky directory
        db_file = out_dir / "mosquitto.db"
        broker.proc.send_signal(signal.SIGUSR1)
        wait_for(db_file.exists, 10, "mosquitto.db")
        assert ids(db_file)[:2] == (mosq.pw_uid, mosq.pw_gid)
    finally:
        broker.stop()
    assert broker.proc is None


@ROOT_ONLY
def test_as_root_a_directory_the_broker_user_cannot_reach_is_refused_by_name(tmp_path):
    # pytest's tmp_path lies under /tmp/pytest-of-root, mode 0700: the first directory from / that
    # others cannot search is named
    blocked = [p for p in tmp_path.parents if stat.S_IMODE(os.stat(p).st_mode) & 0o001 == 0][-1]
    expected = "cannot reach %s: %s (mode 0700, owner root) is not traversable" % (tmp_path / "b", blocked)
    with Storage(tmp_path / "h.db") as st:
        provision.add_meter(st, "m1")
        with pytest.raises(ProvisionError, match=re.escape(expected)):
            provision.write_broker_config(st, str(tmp_path / "b"), 1883)
    assert not (tmp_path / "b" / "passwd").exists() and not (tmp_path / "b" / "mosquitto.conf").exists()


def test_not_root_the_config_names_no_user(tmp_path, monkeypatch):
    # Mosquitto started by an unprivileged user keeps running as that user: nothing to switch to,
    # nothing to hand over (run in-process with a non-root euid, so it runs as root too)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with Storage(tmp_path / "h.db") as st:
        cfg = provision.write_broker_config(st, str(tmp_path / "b"), 1883)
    assert not any(line.startswith("user ") for line in open(cfg["conf"]).read().splitlines())
    assert stat.S_IMODE(os.stat(cfg["conf"]).st_mode) == 0o600
    assert os.stat(tmp_path / "b" / "passwd").st_uid == os.getuid(), "no chown"
