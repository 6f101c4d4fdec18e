"""Board configuration (``config.json`` on flash), validated once at load.

The schema both sides share: the firmware loads it at boot (``firmware/app.py``) and the
head-end writes it (``headend meter provision``, ``headend.meters.fleet``).

``load(path) -> dict`` reads JSON and returns ``validate(obj)``: a new dict
with every default filled in. ``default_config(meter_id, key_hex)`` is the
same for a minimal config. Every problem raises ``ConfigError(field, msg)``,
whose text names the field: ``config.broker.port: expected int 1..65535,
got "x"``. Unknown keys are refused, naming the key (typo protection: a
misspelt ``"intervall"`` must not silently leave the default in force), except
inside ``calibration`` and ``pins``, which are free-form dicts for the front
end and the board file.

Keys (contract; A, V, s, ms, milli-units of currency):
  meter_id          required, 1..32 chars of [A-Za-z0-9_-]
  key               required, 64 hex chars -> ``bytes`` of 32 (32 bytes also
                    accepted, so validate(validate(c)) == validate(c))
  broker            {host "127.0.0.1", port 1883 (8883 with tls), user = meter_id, password "",
                    tls false, cafile}: with tls true the meter speaks MQTT over TLS and
                    verifies the broker's certificate (and host name) against cafile, the
                    CA certificate(s) in PEM as a file on the meter's flash (a path relative
                    to the flash directory, where config.json is, or absolute; 1..64 chars),
                    required with tls true, refused without it (firmware/tls.py). The
                    validated broker holds tls and cafile only when tls is true
  wifi              optional {ssid (1..32 chars), password "" (0..63)}; None if absent
  interval          reading interval s, 900; 60..86400 and divides 86400
  frontend          "atm90e26" or "adc"
  ib, imax, un      A, A, V numbers: 5, 60, 230; 0 < ib <= imax <= 400, un 50..480
  mains_hz          50 or 60
  meter_constant    imp/kWh, 3200; int 100..100000
  rates             tariff rates, 4; 1..8
  calibration       dict for the front end, {}
  pins              dict for the board file, {}
  persist_interval  s, 900; 60..86400 (flash wear: see firmware/persist.py)
  persist_wh        Wh, 50; 1..100000: persist once this much active energy
                    (import + export) is unpersisted, or after persist_interval,
                    whichever comes first (firmware/meter_state.py)
  poll_ms           metering poll period, 1000; 100..60000 (the energy
                    integrator's longest step)
  outbox_kb         flash for the store-and-forward outbox, KiB, 256; 16..1024 (its
                    RAM index is 16 bytes per 4 KiB segment); 7 days of 15-minute
                    readings plus events are ~137 KiB (firmware/outbox.py)
  prepaid           {enabled false, low_balance 5000, emergency_credit 0,
                     friendly_hours [[weekday 0..6 (Monday 0), start_minute,
                     end_minute], ...] with 0 <= start < end <= 1440}
  privacy           false; true: every up message is sealed with COSE_Encrypt0 (AES-CCM with
                    the key derived from ``key``) and only COSE_Encrypt0 commands are taken
                    (docs/protocol.md "Confidential envelope", docs/security.md)
  thresholds        {sag_pct 90 (1..99), swell_pct 110 (101..200),
                     overload_pct 100 (of imax, 1..200), mismatch_pct 10 (of
                     line current, 1..100), mismatch_min_ma 100 (0..100000)}
"""

import binascii
import json

FRONTENDS = ("atm90e26", "adc")
SECONDS_PER_DAY = 86400
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_HEX = "0123456789abcdefABCDEF"


class ConfigError(ValueError):
    """A config value is missing, mistyped or out of range; ``field`` names it."""

    def __init__(self, field, msg):
        super().__init__("config%s: %s" % ("." + field if field else "", msg))
        self.field = field
        self.msg = msg


def _show(v):
    try:
        s = json.dumps(v)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _is_int(v):
    return isinstance(v, int) and v is not True and v is not False


def _int(field, v, lo, hi):
    if not _is_int(v) or not lo <= v <= hi:
        raise ConfigError(field, "expected int %d..%d, got %s" % (lo, hi, _show(v)))
    return v


def _num(field, v, lo, hi):
    if not (_is_int(v) or isinstance(v, float)) or not lo <= v <= hi:
        raise ConfigError(field, "expected number %s..%s, got %s" % (lo, hi, _show(v)))
    return v


def _str(field, v, lo, hi):
    if not isinstance(v, str) or not lo <= len(v) <= hi:
        raise ConfigError(field, "expected string of %d..%d chars, got %s" % (lo, hi, _show(v)))
    return v


def _bool(field, v):
    if v is not True and v is not False:
        raise ConfigError(field, "expected true or false, got %s" % _show(v))
    return v


def _section(field, v, allowed):
    """A dict whose keys are all in ``allowed``; None (absent) -> {}."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(field, "expected an object, got %s" % _show(v))
    for k in v:
        if k not in allowed:
            raise ConfigError((field + "." if field else "") + str(k), "unknown key")
    return v


def _meter_id(v):
    _str("meter_id", v, 1, 32)
    for c in v:
        if c not in _ID_CHARS:
            raise ConfigError("meter_id", "expected 1..32 chars of [A-Za-z0-9_-], got %s" % _show(v))
    return v


def _key(v):
    if isinstance(v, (bytes, bytearray)) and len(v) == 32:
        return bytes(v)
    if isinstance(v, str) and len(v) == 64:
        for c in v:
            if c not in _HEX:
                break
        else:
            return binascii.unhexlify(v)
    raise ConfigError("key", "expected 64 hex chars (32 bytes), got %s" % _show(v))


def _broker(v, meter_id):
    v = _section("broker", v, ("host", "port", "user", "password", "tls", "cafile"))
    tls = _bool("broker.tls", v.get("tls", False))
    out = {
        "host": _str("broker.host", v.get("host", "127.0.0.1"), 1, 253),
        "port": _int("broker.port", v.get("port", 8883 if tls else 1883), 1, 65535),
        "user": _str("broker.user", v.get("user", meter_id), 1, 64),
        "password": _str("broker.password", v.get("password", ""), 0, 256),
    }
    if not tls:
        if "cafile" in v:
            raise ConfigError("broker.cafile", "only with tls true (the meter would connect in clear)")
        return out
    if "cafile" not in v:
        raise ConfigError("broker.cafile", "required with tls true: the CA certificate file on the flash")
    out["tls"] = True
    out["cafile"] = _str("broker.cafile", v["cafile"], 1, 64)
    return out


def _wifi(v):
    if v is None:
        return None
    v = _section("wifi", v, ("ssid", "password"))
    if "ssid" not in v:
        raise ConfigError("wifi.ssid", "required when wifi is given")
    return {
        "ssid": _str("wifi.ssid", v["ssid"], 1, 32),
        "password": _str("wifi.password", v.get("password", ""), 0, 63),
    }


def _interval(field, v, lo):
    _int(field, v, lo, SECONDS_PER_DAY)
    if SECONDS_PER_DAY % v:
        raise ConfigError(field, "expected a divisor of 86400, got %s" % _show(v))
    return v


def _free_dict(field, v):
    if not isinstance(v, dict):
        raise ConfigError(field, "expected an object, got %s" % _show(v))
    return dict(v)


def _friendly_hours(v):
    field = "prepaid.friendly_hours"
    if not isinstance(v, list):
        raise ConfigError(field, "expected a list of [weekday, start_minute, end_minute], got %s" % _show(v))
    out = []
    for i in range(len(v)):
        f = "%s[%d]" % (field, i)
        e = v[i]
        if not isinstance(e, list) or len(e) != 3:
            raise ConfigError(f, "expected [weekday, start_minute, end_minute], got %s" % _show(e))
        wd = _int(f + "[0]", e[0], 0, 6)
        start = _int(f + "[1]", e[1], 0, 1439)
        end = _int(f + "[2]", e[2], start + 1, 1440)
        out.append([wd, start, end])
    return out


def _prepaid(v):
    v = _section("prepaid", v, ("enabled", "low_balance", "emergency_credit", "friendly_hours"))
    return {
        "enabled": _bool("prepaid.enabled", v.get("enabled", False)),
        "low_balance": _int("prepaid.low_balance", v.get("low_balance", 5000), 0, 10**9),
        "emergency_credit": _int("prepaid.emergency_credit", v.get("emergency_credit", 0), 0, 10**9),
        "friendly_hours": _friendly_hours(v.get("friendly_hours", [])),
    }


_THRESHOLDS = (
    # name, default, lo, hi
    ("sag_pct", 90, 1, 99),
    ("swell_pct", 110, 101, 200),
    ("overload_pct", 100, 1, 200),
    ("mismatch_pct", 10, 1, 100),
    ("mismatch_min_ma", 100, 0, 100000),
)


def _thresholds(v):
    v = _section("thresholds", v, [t[0] for t in _THRESHOLDS])
    out = {}
    for name, default, lo, hi in _THRESHOLDS:
        out[name] = _int("thresholds." + name, v.get(name, default), lo, hi)
    return out


_TOP = (
    "meter_id",
    "key",
    "broker",
    "wifi",
    "interval",
    "frontend",
    "ib",
    "imax",
    "un",
    "mains_hz",
    "meter_constant",
    "rates",
    "calibration",
    "pins",
    "persist_interval",
    "persist_wh",
    "poll_ms",
    "outbox_kb",
    "prepaid",
    "thresholds",
    "privacy",
)


def validate(cfg):
    """A new, complete config dict from ``cfg``; ConfigError on the first problem."""
    if not isinstance(cfg, dict):
        raise ConfigError("", "expected a JSON object, got %s" % _show(cfg))
    _section("", cfg, _TOP)
    for req in ("meter_id", "key"):
        if req not in cfg:
            raise ConfigError(req, "required")
    meter_id = _meter_id(cfg["meter_id"])
    out = {
        "meter_id": meter_id,
        "key": _key(cfg["key"]),
        "broker": _broker(cfg.get("broker"), meter_id),
        "wifi": _wifi(cfg.get("wifi")),
        "interval": _interval("interval", cfg.get("interval", 900), 60),
        "ib": _num("ib", cfg.get("ib", 5), 0.001, 400),
        "un": _num("un", cfg.get("un", 230), 50, 480),
        "meter_constant": _int("meter_constant", cfg.get("meter_constant", 3200), 100, 100000),
        "rates": _int("rates", cfg.get("rates", 4), 1, 8),
        "calibration": _free_dict("calibration", cfg.get("calibration", {})),
        "pins": _free_dict("pins", cfg.get("pins", {})),
        "persist_interval": _int("persist_interval", cfg.get("persist_interval", 900), 60, SECONDS_PER_DAY),
        "persist_wh": _int("persist_wh", cfg.get("persist_wh", 50), 1, 100000),
        "poll_ms": _int("poll_ms", cfg.get("poll_ms", 1000), 100, 60000),
        "outbox_kb": _int("outbox_kb", cfg.get("outbox_kb", 256), 16, 1024),
        "prepaid": _prepaid(cfg.get("prepaid")),
        "thresholds": _thresholds(cfg.get("thresholds")),
        "privacy": _bool("privacy", cfg.get("privacy", False)),
    }
    out["imax"] = _num("imax", cfg.get("imax", 60), out["ib"], 400)
    frontend = cfg.get("frontend", "atm90e26")
    if frontend not in FRONTENDS:
        raise ConfigError("frontend", 'expected "atm90e26" or "adc", got %s' % _show(frontend))
    out["frontend"] = frontend
    hz = cfg.get("mains_hz", 50)
    if not _is_int(hz) or hz not in (50, 60):
        raise ConfigError("mains_hz", "expected 50 or 60, got %s" % _show(hz))
    out["mains_hz"] = hz
    return out


def load(path):
    """Read, parse and validate the JSON config file at ``path``."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError("", "cannot read %s: %s" % (path, e))
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ConfigError("", "%s is not valid JSON: %s" % (path, e))
    return validate(obj)


def default_config(meter_id, key_hex):
    """The complete validated config for a meter with every default."""
    return validate({"meter_id": meter_id, "key": key_hex})


def to_json(cfg):
    """JSON text of a validated config (key back to hex) that ``load`` accepts."""
    out = dict(cfg)
    out["key"] = binascii.hexlify(cfg["key"]).decode()
    if out["wifi"] is None:
        del out["wifi"]
    return json.dumps(out)
