"""MQTT over TLS on the meter: the ``ssl.SSLContext`` that verifies the broker (config ``broker.tls``).

Imported only when config.json asks for TLS (firmware/comms.py), so a plain meter never loads it
(the 64 KiB heap of a frozen board). ``context(broker, flash_dir)`` returns
``ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)`` with ``verify_mode = ssl.CERT_REQUIRED`` and the CA
certificate(s) of ``broker["cafile"]`` loaded by ``load_verify_locations(cadata=...)``: a PEM
file on the meter's flash, relative to the flash directory (where config.json is) unless it
starts with ``/``. The connection names ``broker["host"]`` as the server name, so mbedTLS checks
the certificate's subjectAltName against it, and its validity period against the board's clock.

``TLSUnavailable`` (an OSError) says why TLS cannot be had: the MicroPython build has no ``ssl``
module (the unix port built from the vendored source has no mbedTLS; stock ESP32 and Pico W
firmware have it), or the CA file cannot be read or holds no certificate. The meter then never
connects: it does not fall back to a connection in clear.
"""

import binascii


class TLSUnavailable(OSError):
    pass


NO_SSL = (
    "TLS asked for (config broker.tls) but this MicroPython has no ssl module (built without"
    " mbedTLS): the meter will not connect in clear; run a firmware built with TLS (stock ESP32,"
    " Pico W; the unix64 runtime)"
)


def cafile_path(broker, flash_dir):
    path = broker["cafile"]
    return path if path.startswith("/") else flash_dir + "/" + path


def context(broker, flash_dir):
    """The client SSLContext for ``broker`` (a validated config "broker" with tls true)."""
    try:
        import ssl
    except ImportError:
        raise TLSUnavailable(NO_SSL)
    if not hasattr(ssl, "SSLContext"):
        raise TLSUnavailable(NO_SSL)
    path = cafile_path(broker, flash_dir)
    try:
        with open(path, "rb") as f:
            cadata = f.read()
    except OSError as e:
        raise TLSUnavailable("TLS: cannot read config broker.cafile %s: %s" % (path, e))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ders = pem_to_der(cadata)
        for der in ders:
            ctx.load_verify_locations(cadata=der)
    except (ValueError, OSError) as e:
        raise TLSUnavailable("TLS: config broker.cafile %s holds no CA certificate: %s" % (path, e))
    if not ders:
        raise TLSUnavailable("TLS: config broker.cafile %s holds no CA certificate" % path)
    return ctx


def pem_to_der(data):
    """The DER certificates of PEM text (``-----BEGIN CERTIFICATE-----`` blocks), or [data] for a DER
    file. MicroPython's mbedTLS takes DER in every build; some (the unix port's) parse no PEM."""
    if data[:1] == b"0":  # 0x30: an ASN.1 SEQUENCE, DER already
        return [data]
    out = []
    body = None
    for line in data.split(b"\n"):
        line = line.strip()
        if line == b"-----BEGIN CERTIFICATE-----":
            body = []
        elif line == b"-----END CERTIFICATE-----" and body is not None:
            out.append(binascii.a2b_base64(b"".join(body)))
            body = None
        elif body is not None:
            body.append(line)
    return out
