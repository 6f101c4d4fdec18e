"""``headend web user add|list`` and ``headend web --port N`` as a real process."""

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from headend import cli
from headend.db.storage import Storage
from headend.web import auth
from tests.headend.web_support import Client
from tools.mosquitto_broker import free_port


def run(capsys, *argv, stdin=None):
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(list(argv))
    finally:
        sys.stdin = sys.__stdin__
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_add_and_list(db_target, capsys):  # both engines (tests/conftest.py)
    db = db_target
    code, out, _ = run(
        capsys,
        "--db",
        db,
        "web",
        "user",
        "add",
        "ann",
        "--role",
        "operator",
        "--password-stdin",
        stdin="a long passphrase\n",
    )
    assert code == 0 and out.strip() == "web user ann added (operator)"
    assert (
        run(
            capsys,
            "web",
            "user",
            "add",
            "bob",
            "--role",
            "viewer",
            "--password-stdin",
            "--db",
            db,
            stdin="another passphrase\n",
        )[0]
        == 0
    )
    code, out, _ = run(capsys, "--db", db, "web", "user", "list", "--json")
    assert [(u["name"], u["role"]) for u in json.loads(out)] == [("ann", "operator"), ("bob", "viewer")]
    with Storage(db) as store:
        ann = store.web_user("ann")
        assert auth.verify_password(ann, "a long passphrase") and "a long passphrase" not in json.dumps(ann)


def test_user_add_refuses_what_it_cannot_keep(db_target, capsys):  # both engines (tests/conftest.py)
    db = db_target
    args = ("--db", db, "web", "user", "add")
    assert run(capsys, *args, "ann", "--role", "viewer", "--password-stdin", stdin="long enough pw\n")[0] == 0
    code, _, err = run(capsys, *args, "ann", "--role", "viewer", "--password-stdin", stdin="long enough pw\n")
    assert code == 1 and err.strip() == "error: web user 'ann' already exists"
    code, _, err = run(capsys, *args, "cy", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 8 characters" in err
    code, _, err = run(capsys, *args, "a b", "--role", "viewer", "--password-stdin", stdin="long enough pw\n")
    assert code == 1 and "user name must be" in err
    with pytest.raises(SystemExit) as e:
        run(capsys, *args, "dee", "--role", "admin", "--password-stdin", stdin="long enough pw\n")
    assert e.value.code == 2 and "invalid choice: 'admin'" in capsys.readouterr().err
    code, _, err = run(capsys, "--db", db, "web")
    assert code == 1 and err.strip() == "error: --port is required: headend web --port N"
    with Storage(db) as store:
        assert [u["name"] for u in store.web_users()] == ["ann"]


def test_headend_web_serves_until_sigterm(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    assert (
        run(
            capsys,
            "--db",
            db,
            "web",
            "user",
            "add",
            "ann",
            "--role",
            "operator",
            "--password-stdin",
            stdin="a long passphrase\n",
        )[0]
        == 0
    )
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "headend.cli", "web", "--port", str(port), "--db", db],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()
        assert line.strip() == "headend web: listening on http://127.0.0.1:%d/" % port
        base = "http://127.0.0.1:%d" % port
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/api/fleet", timeout=5)
        assert e.value.code == 401 and json.loads(e.value.read()) == {"error": "login required"}
        c = Client(base)
        status, headers, body = c.get("/")
        assert (status, headers["Location"], body) == (302, "/login", b"")
        assert c.login("ann", "a long passphrase")[0] == 303
        status, _, body = c.get("/api/me")
        assert status == 200 and json.loads(body)["user"] == "ann"
    finally:
        proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == 0
