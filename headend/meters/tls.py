"""TLS for the broker: a CA and server certificate made here, or the operator's, checked and copied.

``headend broker-config --tls`` calls ``broker_tls(out_dir, hosts, cert, key, cafile, owner)``:

- without ``cert``/``key``/``cafile`` it makes (once) a CA in out_dir, ``ca.pem`` (what the meters'
  ``broker.cafile`` and the head-end's ``--cafile`` hold) and ``ca.key`` (0600, the caller's own,
  never the broker's: it only signs), then issues the broker a new server certificate on every run,
  ``server.pem`` and ``server.key`` (0600, the broker's user), valid ``SERVER_DAYS`` days, its
  subjectAltName every name or address of ``hosts``. A CA kept across runs means a re-run (a new
  meter, a renewed server certificate) needs nothing new on the meters;
- with all three (``--cert --key --cafile``) it checks that the key is the certificate's, that
  the CA issued it (signature and names), that it is valid now and names every host, and copies
  them to the same three names (no ``ca.key``): ProvisionError naming the file and the problem.

``make_ca(name, days=...)``, ``issue(ca_cert, ca_key, hosts, not_before, not_after)`` -> PEM bytes
(certificate, key); tests use them for a wrong CA and an expired certificate. Keys are
ECDSA P-256 (Mosquitto's OpenSSL, paho's and the meters' mbedTLS all take it; small for a
meter's handshake), signatures SHA-256.
"""

from __future__ import annotations

import datetime
import ipaddress
import os

from headend.errors import ProvisionError

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity browsers and most TLS clients still accept
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.pem", "ca.key", "server.pem", "server.key"


def _x509():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem_key(key) -> bytes:
    _, _, serialization, _, _, _ = _x509()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(host: str):
    x509 = _x509()[0]
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def check_hosts(hosts) -> list[str]:
    """The names and addresses a server certificate is issued for; ProvisionError for a bad one."""
    out = []
    for h in hosts:
        if not isinstance(h, str) or not h or len(h) > 253:
            raise ProvisionError("--tls-host %r is not a host name or IP address" % (h,))
        try:
            out.append(str(ipaddress.ip_address(h)))
            continue
        except ValueError:
            pass
        labels = h.rstrip(".").split(".")
        if not all(0 < len(p) <= 63 and p.replace("-", "").isalnum() and p.isascii() for p in labels):
            raise ProvisionError("--tls-host %r is not a host name or IP address" % (h,))
        out.append(h.lower())
    if not out:
        raise ProvisionError("--tls-host: at least one host name or IP address is needed")
    return out


def make_ca(name: str = "open-ami broker CA", days: int = CA_DAYS, not_before=None):
    """A self-signed CA: (certificate PEM, key PEM)."""
    x509, hashes, serialization, ec, _, NameOID = _x509()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = not_before or _now() - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue(ca_cert_pem: bytes, ca_key_pem: bytes, hosts, not_before=None, not_after=None):
    """A server certificate for ``hosts`` signed by the CA: (certificate PEM, key PEM)."""
    x509, hashes, serialization, ec, EKU, NameOID = _x509()
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - datetime.timedelta(minutes=5)
    end = not_after or start + datetime.timedelta(days=SERVER_DAYS)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ProvisionError("cannot read %s %s: %s" % (flag, path, e.strerror))


def check_operator_files(cert_pem: bytes, key_pem: bytes, ca_pem: bytes, hosts, paths) -> None:
    """ProvisionError naming the file and what is wrong with the operator's certificate set."""
    x509, _, serialization, _, _, _ = _x509()
    cert_path, key_path, ca_path = paths
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        raise ProvisionError("--cert %s is not a PEM certificate: %s" % (cert_path, e))
    try:
        key = serialization.load_pem_private_key(key_pem, None)
    except TypeError:
        raise ProvisionError("--key %s is encrypted: Mosquitto needs it without a passphrase" % key_path)
    except ValueError as e:
        raise ProvisionError("--key %s is not a PEM private key: %s" % (key_path, e))
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as e:
        raise ProvisionError("--cafile %s is not a PEM certificate: %s" % (ca_path, e))
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, pub) != cert.public_key().public_bytes(der, pub):
        raise ProvisionError("--key %s is not the key of --cert %s" % (key_path, cert_path))
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            break
        except Exception:  # InvalidSignature, a name mismatch (ValueError), another key type (TypeError)
            continue
    else:
        raise ProvisionError(
            "--cert %s was not issued by any certificate in --cafile %s" % (cert_path, ca_path)
        )
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ProvisionError(
            "--cert %s is not valid now: valid from %s to %s"
            % (cert_path, cert.not_valid_before_utc.isoformat(), cert.not_valid_after_utc.isoformat())
        )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
        names |= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        names = set()
    missing = [h for h in hosts if h not in names]
    if missing:
        raise ProvisionError(
            "--cert %s does not name %s in its subjectAltName (it names %s): clients checking the"
            " host would refuse it; give --tls-host for the names it has, or a certificate for these"
            % (cert_path, ", ".join(missing), ", ".join(sorted(names)) or "nothing")
        )


def broker_tls(out_dir: str, hosts, cert=None, key=None, cafile=None, owner=None, write=None) -> dict:
    """Write the broker's TLS files into out_dir (module docstring); their paths and how they came.

    ``owner``: (uid, gid) of the broker's files (the broker's user when run as root), ``write``:
    ``write(path, bytes_text, owner, mode)`` (headend.meters.provision's private writer)."""
    given = [f for f in (cert, key, cafile) if f is not None]
    if given and len(given) != 3:
        raise ProvisionError("--cert, --key and --cafile go together: give all three, or none to make a CA")
    hosts = check_hosts(hosts or DEFAULT_HOSTS)
    paths = {n: os.path.join(out_dir, n) for n in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)}
    if given:
        cert_pem, key_pem, ca_pem = _read(cert, "--cert"), _read(key, "--key"), _read(cafile, "--cafile")
        check_operator_files(cert_pem, key_pem, ca_pem, hosts, (cert, key, cafile))
        source = "given"
    else:
        if os.path.exists(paths[CA_CERT]) and os.path.exists(paths[CA_KEY]):
            ca_pem, ca_key = _read(paths[CA_CERT], "CA"), _read(paths[CA_KEY], "CA key")
            source = "kept"
        else:
            ca_pem, ca_key = make_ca()
            write(paths[CA_KEY], ca_key, None, 0o600)
            source = "made"
        cert_pem, key_pem = issue(ca_pem, ca_key, hosts)
    # the CA certificate is public (meters and the head-end get a copy); the server key is secret
    write(paths[CA_CERT], ca_pem, owner, 0o644)
    write(paths[SERVER_CERT], cert_pem, owner, 0o644)
    write(paths[SERVER_KEY], key_pem, owner, 0o600)
    return {
        "cafile": paths[CA_CERT],
        "certfile": paths[SERVER_CERT],
        "keyfile": paths[SERVER_KEY],
        "ca": source,
        "hosts": hosts,
    }
