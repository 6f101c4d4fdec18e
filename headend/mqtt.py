"""The head-end's MQTT edges, shared: broker URLs and paho clients (``serve``, ``dispatch``, ``console``).

``parse_broker_url("mqtt://USER:PASS@HOST:PORT")`` -> {host, port, username, password, tls, cafile}
(``ServiceError`` naming the URL when it is not one; ``mqtts://`` is MQTT over TLS, port 8883 by
default, the server's certificate checked against ``?cafile=PATH`` (``--cafile``) or, without one,
the system's CAs, and its name against HOST); ``check_service_client_id(id)``: a head-end
client id must be one no meter can have; ``broker_url_with_password(url, password_file)``: the
password from the URL, ``--password-file`` or ``$HEADEND_BROKER_PASSWORD`` (``BROKER_HELP``,
``PASSWORD_HELP`` are the options' help; ``cafile=`` puts ``--cafile`` into the URL);
``make_client(broker, client_id, ...)``
is a paho-mqtt 2 client (callback API version 2) with the URL's credentials (and TLS) set, of class
``cls`` (ingest passes its chunked-read subclass) with paho's keyword arguments passed on.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import paho.mqtt.client as mqtt

from headend.errors import ServiceError
from protocol import topics


def parse_broker_url(url: str) -> dict:
    """``mqtt[s]://USER:PASS@HOST:PORT[?cafile=PATH]`` -> {host, port, username, password, tls, cafile}."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts") or not parts.hostname:
        raise ServiceError(
            "broker URL must look like mqtt://USER:PASS@HOST:PORT (mqtts:// for TLS), got %r"
            % broker_url_without_password(url)
        )
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ServiceError("broker URL has a bad port: %r" % broker_url_without_password(url))
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"cafile"})
    if unknown:
        raise ServiceError("broker URL: unknown parameter %s (only cafile)" % ", ".join(unknown))
    cafile = query.get("cafile", [None])[-1]
    if cafile is not None and not tls:
        raise ServiceError("--cafile is for a TLS broker: use an mqtts:// URL, got %s://" % parts.scheme)
    if cafile == "":
        raise ServiceError("--cafile must name a file")
    return {
        "host": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "tls": tls,
        "cafile": cafile,
    }


def check_service_client_id(client_id: str, flag: str = "--client-id") -> str:
    """ServiceError for a head-end client id a meter could also have.

    Mosquitto's client ids are one namespace across its listeners, and a login under an
    id already connected takes that session over (a clean one discards it and its queue).
    The meters' listener of `headend broker-config` gives each meter its username as
    client id, a meter id (``[A-Za-z0-9_-]{1,32}``): a head-end session named like a
    meter would be lost when that meter logs in. The defaults (``headend.ingest``,
    ``headend.dispatch``, ``headend.console.<hex>``) carry a dot for that reason."""
    if not isinstance(client_id, str) or not client_id:
        raise ServiceError("%s must not be empty" % flag)
    if topics.meter_id_valid(client_id):
        like = client_id.replace("-", ".", 1) if client_id.startswith("headend-") else "headend." + client_id
        raise ServiceError(
            "%s %r could be a meter's id, and the broker gives every meter its id as client id: that"
            " meter's login would take this session over; use an id with a character meter ids cannot"
            " have, such as a dot (e.g. %r)" % (flag, client_id, like)
        )
    return client_id


PASSWORD_ENV = "HEADEND_BROKER_PASSWORD"
BROKER_HELP = (
    "mqtt://USER[:PASS]@HOST:PORT, or mqtts://... for MQTT over TLS (better without PASS: see"
    " --password-file)"
)
CAFILE_HELP = (
    "with an mqtts:// --broker: the CA certificate(s) (PEM) the broker's certificate must chain to"
    " (broker-config --tls writes DIR/ca.pem); default: the system's CAs"
)
PASSWORD_HELP = (
    "read the broker password from FILE's first line instead of the URL (which `ps` shows);"
    " without either, $%s is used" % PASSWORD_ENV
)


def add_broker_arguments(parser) -> None:
    """``--broker URL`` and ``--password-file FILE``, as serve, dispatch and console take them;
    ``broker_url_with_password(args.broker, args.password_file)`` combines them."""
    parser.add_argument("--broker", required=True, metavar="URL", help=BROKER_HELP)
    parser.add_argument("--password-file", metavar="FILE", help=PASSWORD_HELP)
    parser.add_argument("--cafile", metavar="FILE", help=CAFILE_HELP)


def broker_url_with_cafile(url: str, cafile: str | None) -> str:
    """The URL carrying ``--cafile`` (an absolute path) as its ``cafile`` parameter; ServiceError for
    --cafile with a plain mqtt:// URL or a file that cannot be read."""
    if cafile is None:
        return url
    parts = urlsplit(url)
    if parts.scheme != "mqtts":
        raise ServiceError("--cafile is for a TLS broker: use an mqtts:// URL, got %s://" % parts.scheme)
    path = os.path.abspath(cafile)
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ServiceError("cannot read --cafile %s: %s" % (cafile, e.strerror))
    query = [(k, v) for k, v in parse_qs(parts.query, keep_blank_values=True).items() if k != "cafile"]
    query = urlencode([(k, x) for k, vs in query for x in vs] + [("cafile", path)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def broker_url_with_password(
    url: str, password_file: str | None = None, environ=None, cafile: str | None = None
) -> str:
    """The broker URL carrying its password, for this process only.

    The password comes from the URL (``mqtt://USER:PASS@HOST:PORT``, visible in ``ps``),
    else from ``password_file``'s first line (``--password-file``), else from
    ``$HEADEND_BROKER_PASSWORD``. Giving it in the URL and in a file is refused. ``cafile``
    (``--cafile``) goes into the URL too (``broker_url_with_cafile``)."""
    environ = os.environ if environ is None else environ
    url = broker_url_with_cafile(url, cafile)
    broker = parse_broker_url(url)
    password = None
    if password_file is not None:
        if broker["password"] is not None:
            raise ServiceError("the broker password is in the URL and in --password-file: give it once")
        try:
            with open(password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except OSError as e:
            raise ServiceError("cannot read --password-file %s: %s" % (password_file, e.strerror))
        if not password:
            raise ServiceError("--password-file %s is empty: its first line is the password" % password_file)
    elif broker["password"] is None and environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    if password is None:
        return url
    if broker["username"] is None:
        raise ServiceError("a broker password needs a user name in the URL: mqtt://USER@HOST:PORT")
    parts = urlsplit(url)
    netloc = "%s:%s@%s" % (
        quote(broker["username"], safe=""),
        quote(password, safe=""),
        parts.netloc.rsplit("@", 1)[-1],
    )
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def broker_url_without_password(url: str) -> str:
    """The URL with its password removed (for child processes' command lines)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = "%s@%s" % (parts.username, parts.netloc.rsplit("@", 1)[-1])
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def make_client(broker: dict, client_id: str, cls=mqtt.Client, **kwargs) -> mqtt.Client:
    """A paho client for ``broker`` (a ``parse_broker_url`` result), credentials set; for an mqtts://
    broker TLS that verifies the broker's certificate (chain to ``cafile`` or the system's CAs,
    validity, the host name or address): a failed check is an ``ssl.SSLCertVerificationError``
    (an OSError) from connect(), saying why (``certificate has expired``, ``unable to get local
    issuer certificate``, ``IP address mismatch``)."""
    client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
    if broker["username"]:
        client.username_pw_set(broker["username"], broker["password"])
    if broker.get("tls"):
        client.tls_set_context(tls_context(broker.get("cafile")))
    return client


def connect_error(e: OSError, tls: bool = False) -> str:
    """What a failed connect() says: for TLS (``tls``: an mqtts:// broker), whether the broker's
    certificate was refused and why (``certificate has expired``, ``self-signed certificate in
    certificate chain`` or ``unable to get local issuer certificate``: not the --cafile's CA,
    ``IP address mismatch``), or the handshake failed (a plaintext listener spoken to in TLS)."""
    import ssl

    if isinstance(e, ssl.SSLCertVerificationError):
        return "TLS: the broker's certificate was refused: %s" % (e.verify_message or e.reason or e)
    if isinstance(e, ssl.SSLError) or (tls and isinstance(e, (ConnectionResetError, ConnectionAbortedError))):
        return "TLS handshake with the broker failed (%s): is it a TLS listener?" % (
            getattr(e, "reason", None) or e.strerror or e
        )
    return str(e)


def tls_context(cafile: str | None = None):
    """A client ``ssl.SSLContext`` that requires the server's certificate, checked against cafile
    (the system's CAs when None) and the host name; ServiceError for a cafile it cannot load."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cafile is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return ctx
    try:
        ctx.load_verify_locations(cafile=cafile)  # only these CAs, not the system's too
    except ssl.SSLError as e:
        raise ServiceError("--cafile %s holds no PEM certificate: %s" % (cafile, e))
    except OSError as e:
        raise ServiceError("cannot read --cafile %s: %s" % (cafile, e.strerror or e))
    return ctx
