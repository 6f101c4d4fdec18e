"""Board self-test: what works on this board, as a table of checks with pass/fail and figures.

Imported only when run, never by the meter: ``tools/deploy.py ... --selftest`` runs
``from firmware import selftest; selftest.main(BOARD, FLASH)`` over the raw REPL (main.py set
aside first: the running meter's watchdog cannot be stopped); ``mpremote run firmware/selftest.py``
or ``mpremote exec "import firmware.selftest"`` run it with the board found from sys.platform and
/flash. The emulator runs ``run(board, cfg)`` on its unix board (emulator/main.py).

Checks (one line each: ``name PASS|FAIL|SKIP figures``, then ``SELFTEST:`` + JSON of them all):

- config     config.json loads and validates (meter id, front end)
- atm90e26   the calibration written over SPI and checked by the chip: CS1/CS2 read back equal
             the computed ones, SysStatus without CalErr/AdjErr (figures: SysStatus, CS1, CS2)
- urms       one measurement of the front end: Urms in V (FAIL below 10 V: no mains on the
             voltage input, or a wrong pin); Irms and frequency as figures
- flash      write, read back and remove a scratch file in the flash directory (bytes, ms)
- rtc        the clock advances over a 1.1 s wait (unix time, delta)
- heap       gc.mem_free() after a collection (FAIL below MIN_FREE bytes)
- wifi       config "wifi": joined, its status and RSSI (SKIP without a wifi section)
- broker     TCP connect to config "broker" host:port (ms)
- mqtt       CONNECT with the meter's credentials, the broker's CONNACK return code (0 = accepted)
"""

import gc
import json
import sys
import time

import firmware
from firmware.compat import ticks_diff, ticks_ms

MIN_FREE = 16384  # bytes of heap the meter needs free beyond its boot (firmware/README.md: ~32 KB peak)
SCRATCH = "selftest.tmp"
TIMEOUT_S = 5


def check_frontend(board, cfg, rows):
    atm = cfg["frontend"] == "atm90e26"
    try:
        fe = board.frontend(cfg)
        ok = fe.calibrate(cfg["calibration"])
    except Exception as e:  # noqa: BLE001 - the test reports what failed
        rows.append(("atm90e26" if atm else "adc", False, "front end: %s" % e))
        return
    if atm:
        d = fe.driver
        st = d.read(0x01)  # SysStatus (clears on read)
        cs1 = d.read(0x2C)
        cs2 = d.read(0x3B)
        good = ok and st >= 0 and not st & 0xF000 and cs1 == d.cs1 and cs2 == d.cs2
        rows.append(
            (
                "atm90e26",
                good,
                "SysStatus 0x%04X CS1 0x%04X/0x%04X CS2 0x%04X/0x%04X" % (st, cs1, d.cs1, cs2, d.cs2),
            )
        )
    else:
        rows.append(("adc", ok, "front end loaded (v_scale %r)" % cfg["calibration"].get("v_scale")))
    out = [0] * 14
    board.elapsed_ms()
    board.sleep_ms(1000)
    got = fe.poll(out, board.elapsed_ms())
    u = out[4] / 100
    rows.append(
        ("urms", bool(got) and u >= 10, "%.2f V  Irms %.3f A  %.2f Hz" % (u, out[5] / 1000, out[9] / 100))
    )


def check_flash(board, rows):
    path = board.flash_dir + "/" + SCRATCH
    data = bytes(range(256)) * 4
    t0 = ticks_ms()
    try:
        with open(path, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            back = f.read()
        import os

        os.remove(path)
        ok = back == data
        rows.append(
            (
                "flash",
                ok,
                "%d bytes written, read back %s, removed (%d ms)"
                % (len(data), "equal" if ok else "DIFFERENT", ticks_diff(ticks_ms(), t0)),
            )
        )
    except OSError as e:
        rows.append(("flash", False, "%s: %s" % (path, e)))


def check_rtc(rows):
    t0 = time.time()
    time.sleep_ms(1100)
    t1 = time.time()
    rows.append(("rtc", t1 > t0, "time %d -> %d (+%d s)" % (t0, t1, t1 - t0)))


def check_heap(rows):
    gc.collect()
    free = gc.mem_free()
    rows.append(("heap", free >= MIN_FREE, "%d bytes free (need %d)" % (free, MIN_FREE)))


def check_wifi(board, cfg, rows):
    wifi = cfg["wifi"]
    if wifi is None:
        rows.append(("wifi", None, "no wifi section in config.json (wired, or the emulator)"))
        return
    try:
        import asyncio

        import network  # pyright: ignore[reportMissingImports]  # the unix port has none (and no wifi)

        board.wifi = wifi
        asyncio.run(board.network_up())
        w = network.WLAN(network.STA_IF)
        rows.append(
            (
                "wifi",
                w.isconnected(),
                "%r status %r RSSI %r dBm" % (wifi["ssid"], w.status(), w.status("rssi")),
            )
        )
    except Exception as e:  # noqa: BLE001
        rows.append(("wifi", False, "%r: %s" % (wifi["ssid"], e)))


def check_broker(cfg, rows):
    import socket

    from firmware import mqtt_packets as mp

    b = cfg["broker"]
    where = "%s:%d" % (b["host"], b["port"])
    t0 = ticks_ms()
    s = None
    try:
        addr = socket.getaddrinfo(b["host"], b["port"])[0][-1]
        s = socket.socket()
        s.settimeout(TIMEOUT_S)
        s.connect(addr)
    except OSError as e:
        rows.append(("broker", False, "%s: %s" % (where, e)))
        rows.append(("mqtt", None, "no TCP connection"))
        if s is not None:
            s.close()
        return
    rows.append(
        (
            "broker",
            True,
            "%s connected (%d ms)%s"
            % (where, ticks_diff(ticks_ms(), t0), " TLS not tried" if b.get("tls") else ""),
        )
    )
    try:
        s.write(mp.encode_connect(cfg["meter_id"], b["user"], b["password"], keepalive=30))
        head = _read(s, 2)
        if head[0] != 0x20:
            raise OSError("not a CONNACK: 0x%02X" % head[0])
        _sp, rc = mp.decode_connack(_read(s, head[1]))
        rows.append(("mqtt", rc == 0, "CONNACK %d (%s) as user %r" % (rc, mp.connack_name(rc), b["user"])))
        s.write(b"\xe0\x00")  # DISCONNECT
    except OSError as e:
        rows.append(("mqtt", False, "%s: %s" % (where, e)))
    finally:
        s.close()


def _read(s, n):
    out = b""
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            raise OSError("the broker closed the connection")
        out += b
    return out


def run(board, cfg, network=True, out=None):
    """The checks on ``board`` for config ``cfg``: a list of (name, ok True/False/None = skipped, figures)."""
    rows = [("config", True, "meter %s, front end %s" % (cfg["meter_id"], cfg["frontend"]))]
    check_frontend(board, cfg, rows)
    check_flash(board, rows)
    check_rtc(rows)
    check_heap(rows)
    if network:
        check_wifi(board, cfg, rows)
        check_broker(cfg, rows)
    return rows


def show(rows, write=None):
    write = write or sys.stdout.write
    for name, ok, fig in rows:
        write("%-9s %-4s %s\n" % (name, "SKIP" if ok is None else ("PASS" if ok else "FAIL"), fig))
    bad = [r[0] for r in rows if r[1] is False]
    write("selftest: %s\n" % ("all checks passed" if not bad else "FAILED: " + ", ".join(bad)))
    write("SELFTEST:" + json.dumps([[n, ok, f] for n, ok, f in rows]) + "\n")
    return not bad


def _board(kind, flash_dir):
    if kind == "rp2040":
        from firmware.boards.rp2040 import Rp2040Board

        return Rp2040Board(flash_dir)
    from firmware.boards.esp32 import Esp32Board

    return Esp32Board(flash_dir)


def main(kind=None, flash_dir="/flash"):
    """On a board: the checks for config.json in ``flash_dir``, printed; True when none failed."""
    if kind is None:
        kind = "rp2040" if sys.platform.startswith("rp2") else "esp32"
    try:
        from protocol import board_config as config

        cfg = config.load(flash_dir + "/config.json")
    except Exception as e:  # noqa: BLE001
        return show([("config", False, "%s/config.json: %s" % (flash_dir, e))])
    return show(run(_board(kind, flash_dir), cfg))


# `mpremote run firmware/selftest.py` and `import firmware.selftest` on a board run the checks;
# tools/deploy.py sets firmware.selftest_args = (board, flash dir) first, the emulator False
_ARGS = getattr(firmware, "selftest_args", None)
if _ARGS is not False and (_ARGS is not None or __name__ == "__main__" or sys.platform in ("esp32", "rp2")):
    main(*(_ARGS or ()))
