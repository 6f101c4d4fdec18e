"""The head-end's broker password stays out of `ps`: `--password-file` or
$HEADEND_BROKER_PASSWORD instead of the URL (serve, its workers, dispatch, console)."""

import os
import pathlib
import subprocess
import sys

import pytest

from headend.mqtt import (
    PASSWORD_ENV,
    ServiceError,
    broker_url_with_password,
    broker_url_without_password,
    parse_broker_url,
)
from protocol import topics
from tests.headend.broker_support import MeterClient, Serve, cli_json, start_broker, wait_for
from tests.headend.test_serve import counters, key, readings


def test_the_password_comes_from_the_url_the_file_or_the_environment(tmp_path):
    f = tmp_path / "pw"
    f.write_text("s3cret/:@\n")
    url = "mqtt://headend.ingest@127.0.0.1:1884"
    from_file = parse_broker_url(broker_url_with_password(url, str(f), environ={}))
    assert (from_file["username"], from_file["password"], from_file["port"]) == (
        "headend.ingest",
        "s3cret/:@",
        1884,
    )
    from_env = parse_broker_url(broker_url_with_password(url, None, environ={PASSWORD_ENV: "e"}))
    assert from_env["password"] == "e"
    # the file wins over the environment; a URL password is used as it is
    assert parse_broker_url(broker_url_with_password(url, str(f), environ={PASSWORD_ENV: "e"}))[
        "password"
    ] == ("s3cret/:@")
    assert broker_url_with_password("mqtt://u:p@h:1", None, environ={PASSWORD_ENV: "e"}) == "mqtt://u:p@h:1"
    assert broker_url_with_password(url, None, environ={}) == url
    assert broker_url_without_password("mqtt://u:p@h:1") == "mqtt://u@h:1"


@pytest.mark.parametrize(
    "url, content, message",
    [
        ("mqtt://u:p@h:1", "x\n", "in the URL and in --password-file"),
        ("mqtt://u@h:1", "\n", "is empty"),
        ("mqtt://h:1", "x\n", "needs a user name"),
        ("mqtt://u@h:1", None, "cannot read --password-file"),
    ],
)
def test_bad_password_sources_are_named(tmp_path, url, content, message):
    f = tmp_path / "pw"
    if content is not None:
        f.write_text(content)
    with pytest.raises(ServiceError, match=message):
        broker_url_with_password(url, str(f), environ={})


def cmdlines_of(proc_pid):
    """The command lines of a process and its children (from /proc)."""
    out = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if int(p.name) == proc_pid or ppid == proc_pid:
            out.append(cmdline)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_reads_the_password_file_and_no_command_line_shows_it(tmp_path, broker_tmp, capsys, workers):
    db, broker_db = str(tmp_path / "headend.db"), str(tmp_path / "broker.db")
    m = cli_json(capsys, "meter", "add", "A", "--db", broker_db)
    cli_json(capsys, "meter", "add", "A", "--db", db, "--key", m["key"])
    broker, url = start_broker(capsys, broker_db, str(broker_tmp / "broker"))
    try:
        password = parse_broker_url(url)["password"]
        pw_file = broker_tmp / "broker" / "headend.password"
        assert pw_file.read_text().strip() == password  # broker-config wrote it, 0600
        assert os.stat(pw_file).st_mode & 0o777 == 0o600
        bare = broker_url_without_password(url)
        extra = ["--password-file", str(pw_file), "--client-id", "headend.pwtest"]
        if workers > 1:
            extra += ["--workers", str(workers)]
        serve = Serve(db, bare, *extra, subscribed=workers)
        try:
            lines = cmdlines_of(serve.proc.pid)
            assert len(lines) >= workers  # serve itself, or its workers
            assert not [line for line in lines if password in line]
            pub = MeterClient("A", m["mqtt_password"], broker.port)
            pub.publish_all([(topics.up("A", "reading"), f) for f in readings(key(m), "A", range(1, 11))])
            pub.close()
            wait_for(lambda: counters(db).get("accepted:reading") == 10, 30, "10 readings")
        finally:
            assert serve.terminate() == 0
    finally:
        broker.stop()


def test_serve_without_any_password_is_refused_by_the_broker_with_a_clear_error(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "headend.db")
    broker, url = start_broker(capsys, db, str(broker_tmp / "broker"))
    try:
        env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "headend.cli",
                "serve",
                "--db",
                db,
                "--broker",
                broker_url_without_password(url),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode != 0
        assert "broker refused the connection: Not authorized" in proc.stderr
    finally:
        broker.stop()
