"""MQTT over TLS (issue 16 item 4) against real Mosquitto TLS listeners.

- `headend broker-config --tls` writes a broker whose listeners speak only TLS: the real firmware
  on MicroPython's unix64 port (pip's build, with mbedTLS) and `headend serve` / `dispatch` exchange
  readings and a command through it, each verifying the broker's certificate against the CA the
  command made;
- a wrong CA, an expired server certificate and a plaintext client are refused with an error
  that says so, on the head-end side (dispatch) and on the firmware side (firmware/tls.py and
  firmware/mqtt_client.py on unix64), against one broker with a listener per case;
- a MicroPython without ssl (the unix32 runtime: the vendored source has no mbedTLS) says at
  startup that TLS was asked for and is not available, and never connects in clear;
- broker-config's files: modes, a CA kept across runs, the operator's certificates checked.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess
import sys

import pytest

from headend.cli import main as headend_main
from headend.db.storage import Storage
from headend.meters import tls as broker_tls
from protocol import board_config as config
from tests.firmware.emulate_support import ROOT, emulate, write_scenario
from tests.headend.broker_support import Broker, Serve, cli_json, wait_for
from tests.mosquitto_broker import MosquittoBroker, free_ports

START = 1710115200  # Monday 2024-03-11 00:00 UTC
METER = "tls-1"
LOAD = {"urms": 230, "irms": 4, "phase_deg": 10}


def _tls_broker(capsys, db, out_dir, *extra):
    port, headend_port = free_ports(2)
    argv = ["--db", db, "broker-config", "--out", out_dir, "--port", str(port), "--tls", *extra]
    cfg = cli_json(capsys, *argv, "--headend-port", str(headend_port))
    return cfg, port, headend_port


def _flash(tmp_path, meter):
    flash = tmp_path / "flash"
    flash.mkdir()
    sc = emulate.emulate_bench.Scenario({"start": START, "segments": [{"seconds": 60}]})
    cfg = emulate.emulate_bench.default_config(sc)
    cfg["meter_id"] = METER
    cfg["key"] = bytes.fromhex(meter["key"])
    (flash / "config.json").write_text(config.to_json(cfg))
    return flash


def _readings(db):
    with Storage(db) as store:
        return store.readings(METER)


def _acks(db):
    with Storage(db) as store:
        return [(a["cmd_seq"], a["result"]) for a in store.acks(METER)]


def test_meter_and_headend_exchange_readings_and_a_command_over_tls(tmp_path, broker_tmp, capsys):
    db = str(tmp_path / "h.db")
    meter = cli_json(capsys, "--db", db, "meter", "add", METER)
    cfg, port, headend_port = _tls_broker(capsys, db, str(broker_tmp / "broker"))
    assert cfg["headend_url"].startswith("mqtts://") and cfg["tls"]["ca"] == "made"
    ca = cfg["tls"]["cafile"]
    broker = Broker(cfg["conf"], port)
    url = cfg["headend_url"]
    serve = Serve(db, url, "--cafile", ca)
    flash = _flash(tmp_path, meter)
    meter_url = "mqtts://%s:%s@127.0.0.1:%d" % (METER, meter["mqtt_password"], port)
    try:
        emulate.ensure_built("unix64")
        sc = write_scenario(tmp_path / "a.json", start=START, segments=[{"seconds": 3600, **LOAD}])
        state, err, s = emulate.run_session(
            str(sc), str(flash), broker=meter_url, linger=15, runtime_name="unix64", cafile=ca
        )
        assert state["broker"] == "connected" and state["undelivered"] == 0, err
        assert s.delivery == (0, None)
        on_flash = json.loads((flash / "config.json").read_text())
        assert (flash / "ca.pem").read_bytes() == pathlib.Path(ca).read_bytes(), on_flash
        wait_for(lambda: len(_readings(db)) >= 4, 20, "serve to store the readings")

        # a command over TLS: dispatch verifies the broker too; the broker keeps it in the meter's session
        relay = cli_json(capsys, "--db", db, "command", "relay", METER, "--open", "--json")
        dispatch = ["--db", db, "dispatch", "--broker", url, "--cafile", ca, "--once"]
        assert cli_json(capsys, *dispatch, "--client-id", "headend.dispatch-tls")["sent"] == 1
        sc2 = write_scenario(tmp_path / "b.json", start=START, segments=[{"seconds": 5400, **LOAD}])
        state, err = emulate.run(
            str(sc2), str(flash), broker=meter_url, linger=15, runtime_name="unix64", cafile=ca
        )
        assert state["relay"] == "open" and state["broker"] == "connected", err
        wait_for(lambda: (relay["seq"], 0) in _acks(db), 20, "the meter's ack of the relay command, over TLS")
        readings = _readings(db)
        assert len(readings) >= 6 and len({r["seq"] for r in readings}) == len(readings)
    finally:
        assert serve.terminate() == 0, "".join(serve.lines)
        broker.stop()


# ---------------------------------------------------------------- refusals, one broker with a listener each


@pytest.fixture(scope="module")
def refusing_broker():
    """Anonymous Mosquitto with listeners: ``good`` (a server certificate of CA ``ca``), ``expired``
    (CA ``ca``, expired yesterday), ``plain`` (no TLS); ``wrong_ca`` is a CA that issued neither."""
    from tools.mosquitto_broker import broker_tmpdir

    d = pathlib.Path(broker_tmpdir("open-ami-tls-"))
    ca, ca_key = broker_tls.make_ca("test CA")
    wrong, _ = broker_tls.make_ca("another CA")
    now = datetime.datetime.now(datetime.UTC)
    files = {
        "ca.pem": ca,
        "wrong-ca.pem": wrong,
    }
    files["good.pem"], files["good.key"] = broker_tls.issue(ca, ca_key, ["127.0.0.1", "localhost"])
    files["other.pem"], files["other.key"] = broker_tls.issue(ca, ca_key, ["broker.example"])
    files["expired.pem"], files["expired.key"] = broker_tls.issue(
        ca, ca_key, ["127.0.0.1"], now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    )
    for name, data in files.items():
        (d / name).write_bytes(data)
        os.chmod(d / name, 0o644)  # test keys: the broker's user (mosquitto, when run as root) reads them
    plain, good, expired, other = free_ports(4)
    lines = []
    for port, name in ((good, "good"), (expired, "expired"), (other, "other")):
        lines += ["listener %d 127.0.0.1" % port, "certfile %s/%s.pem" % (d, name)]
        lines += ["keyfile %s/%s.key" % (d, name), "cafile %s/ca.pem" % d]
    broker = MosquittoBroker(d, lines, port=plain)
    broker.ports = [plain, good, expired, other]
    with broker:
        yield {
            "dir": d,
            "plain": plain,
            "good": good,
            "expired": expired,
            "other": other,  # the right CA, but a certificate for another host (broker.example)
            "ca": str(d / "ca.pem"),
            "wrong_ca": str(d / "wrong-ca.pem"),
        }
    shutil.rmtree(d, ignore_errors=True)


def _dispatch(capsys, tmp_path, url, *extra):
    db = str(tmp_path / "d.db")
    if not os.path.exists(db):
        cli_json(capsys, "--db", db, "meter", "add", METER)
    capsys.readouterr()
    argv = ["--db", db, "dispatch", "--broker", url, "--once", "--client-id", "headend.d", *extra]
    rc = headend_main(argv)
    return rc, capsys.readouterr().err


def test_headend_refuses_a_wrong_ca_an_expired_certificate_and_plaintext(refusing_broker, tmp_path, capsys):
    b = refusing_broker
    ok = _dispatch(capsys, tmp_path, "mqtts://u@127.0.0.1:%d" % b["good"], "--cafile", b["ca"])
    assert ok[0] == 0, ok[1]  # the control: this CA, this listener, connects
    rc, err = _dispatch(capsys, tmp_path, "mqtts://u@127.0.0.1:%d" % b["good"], "--cafile", b["wrong_ca"])
    # Mosquitto sends its CA along: OpenSSL finds a self-signed root it was not given
    assert rc != 0 and re.search(
        r"TLS: the broker's certificate was refused: (self-signed certificate in certificate chain|unable"
        r" to get local issuer)",
        err,
    ), err
    rc, err = _dispatch(capsys, tmp_path, "mqtts://u@127.0.0.1:%d" % b["expired"], "--cafile", b["ca"])
    assert rc != 0 and "TLS: the broker's certificate was refused: certificate has expired" in err, err
    rc, err = _dispatch(capsys, tmp_path, "mqtts://u@localhost:%d" % b["good"], "--cafile", b["ca"])
    assert rc == 0, err  # the certificate names localhost too
    rc, err = _dispatch(capsys, tmp_path, "mqtts://u@127.0.0.1:%d" % b["other"], "--cafile", b["ca"])
    assert rc != 0 and "TLS: the broker's certificate was refused: IP address mismatch" in err, err
    rc, err = _dispatch(capsys, tmp_path, "mqtt://u@127.0.0.1:%d" % b["good"])
    assert rc != 0 and "closed the connection before answering the CONNECT (is it a TLS listener?" in err, err
    rc, err = _dispatch(capsys, tmp_path, "mqtts://u@127.0.0.1:%d" % b["plain"], "--cafile", b["ca"])
    assert rc != 0 and "TLS handshake with the broker failed" in err, err
    rc, err = _dispatch(capsys, tmp_path, "mqtt://u@127.0.0.1:%d" % b["plain"], "--cafile", b["ca"])
    assert rc != 0 and "--cafile is for a TLS broker: use an mqtts:// URL" in err, err

    # serve keeps retrying (the broker may get a good certificate), saying each time why it cannot connect
    db = str(tmp_path / "d.db")
    url = "mqtts://u@127.0.0.1:%d" % b["expired"]
    cmd = [sys.executable, "-m", "headend.cli", "serve", "--db", db, "--broker", url, "--cafile", b["ca"]]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stderr.readline()]  # each line is an event: no sleep
        while "cannot reach" not in lines[-1] and lines[-1] and len(lines) < 20:
            lines.append(proc.stderr.readline())
        line = lines[-1]
        assert (
            "cannot reach the broker (TLS: the broker's certificate was refused: certificate has expired)"
            in line
        )
    finally:
        proc.kill()
        proc.wait(5)
        proc.stderr.close()


FIRMWARE_SCRIPT = """
import sys, json
sys.path.insert(0, %(root)r)
import asyncio
from firmware import tls
from firmware.mqtt_client import MQTTClient
out = []

async def one(port, cafile):
    c = MQTTClient("tls-probe")
    try:
        if cafile is None:
            await c.connect("127.0.0.1", port, 5000)
        else:
            await c.connect("127.0.0.1", port, 5000, tls.context({"cafile": cafile}, "/"))
        await c.disconnect()
        return "connected"
    except Exception as e:
        return "%%s: %%s" %% (type(e).__name__, e)

for port, cafile in %(cases)r:
    out.append(asyncio.run(one(port, cafile)))
print(json.dumps(out))
"""


def test_firmware_refuses_a_wrong_ca_an_expired_certificate_and_plaintext(refusing_broker, tmp_path):
    """firmware/tls.py + firmware/mqtt_client.py on pip's unix64 MicroPython (mbedTLS)."""
    b = refusing_broker
    cases = [
        (b["good"], b["ca"]),
        (b["good"], b["wrong_ca"]),
        (b["expired"], b["ca"]),
        (b["good"], None),
        (b["plain"], b["ca"]),
        (b["other"], b["ca"]),
    ]
    script = tmp_path / "probe.py"
    script.write_text(FIRMWARE_SCRIPT % {"root": str(ROOT), "cases": cases})
    exe = emulate.runtime("unix64").exe()
    assert (
        "SSLContext"
        in subprocess.run(
            [exe, "-c", "import ssl; print(ssl.SSLContext)"], capture_output=True, text=True
        ).stdout
    ), "pip's unix64 MicroPython has ssl"
    run = subprocess.run([exe, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    good, wrong, expired, plain, tls_to_plain, other_host = json.loads(run.stdout)
    assert good == "connected"
    where = "MQTTError: TLS with 127.0.0.1:%d failed: "
    assert wrong.startswith(where % b["good"]) and "not correctly signed by the trusted CA" in wrong, wrong
    assert expired.startswith(where % b["expired"]) and "validity has expired" in expired, expired
    assert plain.startswith(
        "MQTTError: connect: 127.0.0.1:%d ended the connection before a CONNACK" % b["good"]
    )
    assert "a TLS listener? (config broker.tls)" in plain, plain
    assert tls_to_plain.startswith(where % b["plain"]), tls_to_plain
    # a certificate of the right CA for another host: mbedTLS checks the name the meter connected to
    assert other_host.startswith(where % b["other"]) and "does not match with the expected CN" in other_host


class _FakeApp:
    def __init__(self, flash_dir):
        self.reporter = type("R", (), {"meter_id": METER, "on_append": None})()
        self.board = type("B", (), {"flash_dir": flash_dir})()


def test_a_runtime_without_ssl_says_so_and_never_connects(tmp_path, monkeypatch, capsys):
    """The unix32 runtime's MicroPython is built from the vendored source, which has no mbedTLS:
    `import ssl` fails there as it does here with the module hidden."""
    import asyncio

    from firmware import comms, tls

    (tmp_path / "ca.pem").write_bytes(broker_tls.make_ca()[0])
    broker = config.validate(
        {"meter_id": METER, "key": "00" * 32, "broker": {"tls": True, "cafile": "ca.pem"}}
    )["broker"]
    assert broker["port"] == 8883
    assert tls.context(broker, str(tmp_path)) is not None  # with ssl: the CA loads
    monkeypatch.setitem(sys.modules, "ssl", None)
    with pytest.raises(tls.TLSUnavailable, match="this MicroPython has no ssl module"):
        tls.context(broker, str(tmp_path))
    c = comms.Comms(_FakeApp(str(tmp_path)), broker)
    assert c.fatal is not None and c.state == comms.LINK_UNREACHABLE and c.last_error == c.fatal
    assert (
        "link: TLS asked for (config broker.tls) but this MicroPython has no ssl module"
        in capsys.readouterr().err
    )
    asyncio.run(asyncio.wait_for(c.run(), 5))  # returns at once: no connection attempt, no plaintext
    assert c.client is None and c.connects == 0


def test_board_config_tls_needs_a_cafile_and_a_cafile_needs_tls(tmp_path):
    base = {"meter_id": METER, "key": "00" * 32}
    with pytest.raises(config.ConfigError, match=r"config.broker.cafile: required with tls true"):
        config.validate({**base, "broker": {"tls": True}})
    with pytest.raises(config.ConfigError, match=r"config.broker.cafile: only with tls true"):
        config.validate({**base, "broker": {"cafile": "ca.pem"}})
    with pytest.raises(config.ConfigError, match=r"config.broker.tls: expected true or false"):
        config.validate({**base, "broker": {"tls": "yes", "cafile": "ca.pem"}})
    plain = config.validate(base)["broker"]
    assert "tls" not in plain and plain["port"] == 1883
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    from firmware import tls

    with pytest.raises(tls.TLSUnavailable, match="bad.pem holds no CA certificate"):
        tls.context({"cafile": "bad.pem"}, str(tmp_path))
    with pytest.raises(tls.TLSUnavailable, match="cannot read config broker.cafile"):
        tls.context({"cafile": "missing.pem"}, str(tmp_path))


# ---------------------------------------------------------------- broker-config --tls files


def test_broker_config_tls_files_modes_a_kept_ca_and_the_operators_certificates(tmp_path, broker_tmp, capsys):
    from cryptography import x509

    db = str(tmp_path / "h.db")
    out = broker_tmp / "broker"
    cfg, port, headend_port = _tls_broker(
        capsys, db, str(out), "--tls-host", "meters.example", "--tls-host", "10.0.0.2"
    )
    files = cfg["tls"]
    for name, mode in (("ca.pem", 0o644), ("ca.key", 0o600), ("server.pem", 0o644), ("server.key", 0o600)):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == mode, name
    if os.geteuid() == 0:  # the broker's user reads its key, never the CA's
        import pwd

        assert os.stat(out / "server.key").st_uid == pwd.getpwnam("mosquitto").pw_uid
        assert os.stat(out / "ca.key").st_uid == 0
    cert = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["meters.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]
    conf = (out / "mosquitto.conf").read_text()
    assert conf.count("certfile %s" % files["certfile"]) == 2 and conf.count("listener ") == 2
    ca_before = (out / "ca.pem").read_bytes()
    again, _, _ = _tls_broker(capsys, db, str(out), "--plain-listener", str(free_ports(1)[0]))
    assert again["tls"]["ca"] == "kept" and (out / "ca.pem").read_bytes() == ca_before
    conf = (out / "mosquitto.conf").read_text()
    assert conf.count("listener ") == 3 and conf.count("certfile ") == 2  # the plain one has none

    # the operator's certificate set: checked, then copied
    ca, ca_key = broker_tls.make_ca("operator CA")
    cert_pem, key_pem = broker_tls.issue(ca, ca_key, ["127.0.0.1"])
    other_cert, other_key = broker_tls.issue(ca, ca_key, ["127.0.0.1"])
    wrong_ca, _ = broker_tls.make_ca("not the issuer")
    now = datetime.datetime.now(datetime.UTC)
    old_cert, old_key = broker_tls.issue(
        ca, ca_key, ["127.0.0.1"], now - datetime.timedelta(days=9), now - datetime.timedelta(days=1)
    )
    for name, data in (
        ("c.pem", cert_pem),
        ("c.key", key_pem),
        ("ca.pem", ca),
        ("o.key", other_key),
        ("w.pem", wrong_ca),
        ("old.pem", old_cert),
        ("old.key", old_key),
    ):
        (tmp_path / name).write_bytes(data)
    t = str(tmp_path)

    def given(cert, key, cafile, *extra):
        capsys.readouterr()
        argv = ["--db", db, "broker-config", "--out", str(out), "--port", str(port), "--tls"]
        argv += [
            "--cert",
            "%s/%s" % (t, cert),
            "--key",
            "%s/%s" % (t, key),
            "--cafile",
            "%s/%s" % (t, cafile),
        ]
        rc = headend_main([*argv, *extra])
        return rc, capsys.readouterr()

    rc, res = given("c.pem", "o.key", "ca.pem", "--tls-host", "127.0.0.1")
    assert rc != 0 and "--key %s/o.key is not the key of --cert %s/c.pem" % (t, t) in res.err, res.err
    rc, res = given("c.pem", "c.key", "w.pem", "--tls-host", "127.0.0.1")
    assert rc != 0 and "was not issued by any certificate in --cafile %s/w.pem" % t in res.err, res.err
    rc, res = given("old.pem", "old.key", "ca.pem", "--tls-host", "127.0.0.1")
    assert rc != 0 and "--cert %s/old.pem is not valid now" % t in res.err, res.err
    rc, res = given("c.pem", "c.key", "ca.pem")  # default hosts: localhost is not in its SAN
    assert rc != 0 and "does not name localhost in its subjectAltName" in res.err, res.err
    rc, res = given("c.pem", "c.key", "ca.pem", "--tls-host", "127.0.0.1")
    assert rc == 0, res.err
    assert json.loads(res.out)["tls"]["ca"] == "given"
    assert (out / "server.pem").read_bytes() == cert_pem and (out / "ca.pem").read_bytes() == ca
    assert stat.S_IMODE(os.stat(out / "server.key").st_mode) == 0o600

    capsys.readouterr()
    assert headend_main(["--db", db, "broker-config", "--out", str(out), "--port", "1", "--cert", "x"]) != 0
    assert "--cert needs --tls" in capsys.readouterr().err


def test_deploy_copies_a_tls_meters_ca_file_beside_its_config(tmp_path):
    import io

    from tools import deploy

    cfg = {
        "meter_id": METER,
        "key": "00" * 32,
        "broker": {"host": "10.0.0.2", "tls": True, "cafile": "ca.pem"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(deploy.DeployError, match="broker.cafile ca.pem is not beside it"):
        deploy.deploy("/dev/null-port", "esp32", str(path), dry_run=True, out=io.StringIO(), frozen=True)
    (tmp_path / "ca.pem").write_bytes(broker_tls.make_ca()[0])
    r = deploy.deploy("/dev/null-port", "esp32", str(path), dry_run=True, out=io.StringIO(), frozen=True)
    copy = r["commands"][1]
    at = copy.index(str(tmp_path / "ca.pem"))
    assert copy[at - 2 : at + 2] == ["fs", "cp", str(tmp_path / "ca.pem"), ":/flash/ca.pem"]
    assert copy.index(":/flash/config.json") < at


def test_meter_config_with_broker_cafile_writes_a_tls_board_config(tmp_path, capsys):
    db = str(tmp_path / "h.db")
    cli_json(capsys, "--db", db, "meter", "add", METER)
    ca = tmp_path / "broker-ca.pem"
    ca.write_bytes(broker_tls.make_ca()[0])
    out = tmp_path / "board"
    argv = ["--db", db, "meter", "config", METER, "--out", str(out), "--new-password", "--json"]
    s = cli_json(capsys, *argv, "--broker-port", "8883", "--broker-cafile", str(ca))
    assert s["broker"]["tls"] is True
    assert "--runtime unix64 --broker mqtts://" in s["next"] and "--cafile %s/ca.pem" % out in s["next"]
    cfg = config.load(str(out / "config.json"))
    assert (
        cfg["broker"]["tls"] is True and cfg["broker"]["cafile"] == "ca.pem" and cfg["broker"]["port"] == 8883
    )
    assert (out / "ca.pem").read_bytes() == ca.read_bytes()
    (tmp_path / "junk.pem").write_text("no certificate here\n")
    capsys.readouterr()
    argv = ["--db", db, "meter", "config", METER, "--out", str(tmp_path / "b2"), "--new-password"]
    assert headend_main([*argv, "--broker-cafile", str(tmp_path / "junk.pem")]) != 0
    assert "--broker-cafile %s/junk.pem holds no PEM certificate" % tmp_path in capsys.readouterr().err


def test_the_unix32_runtime_without_ssl_says_so_at_startup_and_stays_offline(refusing_broker, tmp_path):
    """The emulator's frozen unix32 runtime, built from the vendored MicroPython source (no mbedTLS)."""
    emulate.ensure_built("unix32")
    exe = emulate.runtime("unix32").exe()
    probe = subprocess.run([exe, "-c", "import ssl"], capture_output=True, text=True)
    if probe.returncode == 0:
        pytest.skip("this unix32 build has ssl: nothing to refuse")
    flash = _flash(tmp_path, {"key": "11" * 32})
    sc = write_scenario(tmp_path / "q.json", start=START, segments=[{"seconds": 900, **LOAD}])
    url = "mqtts://%s:x@127.0.0.1:%d" % (METER, refusing_broker["good"])
    state, err, s = emulate.run_session(
        str(sc), str(flash), broker=url, linger=5, runtime_name="unix32", cafile=refusing_broker["ca"]
    )
    said = "link: TLS asked for (config broker.tls) but this MicroPython has no ssl module"
    assert said in err, err
    assert (
        state["broker"].startswith("unreachable: TLS asked for") and state["comms"]["link"]["connects"] == 0
    )
    assert s.delivery[0] == emulate.EXIT_UNDELIVERED and "no ssl module" in s.delivery[1]
