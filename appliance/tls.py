"""The appliance's own certificate authority and the dashboard's server certificate.

Both are made on the appliance at first boot (never in the image) with python3-cryptography,
which the appliance already carries for openstacksdk: an EC P-256 key each, SHA-256
signatures. Here the CA signs one certificate, the dashboard's, for the appliance's host name
and management address; scale-out (cluster/ca.py) has it sign the join service's and, for
clientAuth only, its nodes' too. Private keys are written 0600 and never logged; the CA
certificate is public (an operator fetches it and trusts it, checking its fingerprint).

Works with python3-cryptography 38 (Debian 12) and later: no API newer than that is needed.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from .files import atomic_write

# A CA certificate outlives any appliance; a server certificate stays within the 825 days
# Apple's platforms accept for a TLS server certificate, and is issued again (by `appliance
# run --again`) once fewer than RENEW_BEFORE days are left.
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
# Clocks of a client and a freshly booted appliance disagree a little.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class TlsPaths:
    """Private keys under the 0700 config directory; certificates where the web server's
    workers (www-data) may read them, the CA's to hand it out."""

    private_dir: Path = Path("/etc/appliance/tls")
    public_dir: Path = Path("/var/lib/appliance/tls")

    @property
    def ca_key(self) -> Path:
        return self.private_dir / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.public_dir / "ca.crt"

    @property
    def server_key(self) -> Path:
        return self.private_dir / "dashboard.key"

    @property
    def server_cert(self) -> Path:
        return self.public_dir / "dashboard.crt"


def _utc(moment: datetime.datetime) -> datetime.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def not_after(cert) -> datetime.datetime:
    """The end of a certificate's validity, timezone-aware (cryptography < 42 has only the
    naive ``not_valid_after``, 42+ deprecates it for ``not_valid_after_utc``)."""
    return _utc(getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER form as colon-separated upper-case hex, the form
    ``openssl x509 -noout -fingerprint -sha256`` prints."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def _cert_pem(cert) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def make_ca(hostname: str, now: datetime.datetime):
    """(key, certificate) of a new CA named after the appliance; it may sign no other CA
    (path length 0)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OpenStack LXC appliance"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{hostname} appliance CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def signing_only():
    """The key usage of every end-entity certificate the appliance CA signs: digital
    signatures only (ECDHE key exchange needs nothing more), never certificate signing."""
    from cryptography import x509

    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def make_server_cert(ca_key, ca_cert, hostname: str, address: str, now: datetime.datetime):
    """(key, certificate) for TLS servers at ``hostname`` and ``address`` (both in the
    subject alternative names, which is what browsers check), signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _new_key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname),
                                                        x509.IPAddress(ipaddress.ip_address(address))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(signing_only(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def server_cert_problem(cert, ca_cert, hostname: str, address: str, now: datetime.datetime) -> str | None:
    """Why the server certificate must be issued again, or None when it serves: signed by
    this CA, naming exactly ``hostname`` and ``address``, and valid beyond RENEW_BEFORE."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                    ec.ECDSA(cert.signature_hash_algorithm))
    except (InvalidSignature, TypeError, ValueError):
        return "not signed by the appliance's CA"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    addresses = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    if (names, addresses) != ({hostname}, {address}):
        return f"names {sorted(names | addresses)}, not {hostname} and {address}"
    if not_after(cert) - now < RENEW_BEFORE:
        return f"expires {not_after(cert):%Y-%m-%d}"
    return None


def _load(path: Path, loader):
    try:
        return loader(path.read_bytes())
    except (OSError, ValueError):
        return None


def ensure_ca(paths: TlsPaths, hostname: str, now: datetime.datetime | None = None):
    """(CA key, CA certificate, what was done) with the CA made only when its key or
    certificate is missing, unreadable or not a pair; ``done`` is ["made a new CA"] or [].
    The CA exists whatever else the appliance serves: the dashboard's certificate, the join
    service's and its nodes' certificates are all signed by it (docs/scale-out.md)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    now = now or datetime.datetime.now(datetime.timezone.utc)
    paths.private_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.public_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    ca_key = _load(paths.ca_key, lambda data: serialization.load_pem_private_key(data, password=None))
    ca_cert = _load(paths.ca_cert, x509.load_pem_x509_certificate)
    if ca_key is not None and ca_cert is not None and _paired(ca_key, ca_cert):
        return ca_key, ca_cert, []
    ca_key, ca_cert = make_ca(hostname, now)
    atomic_write(paths.ca_key, _key_pem(ca_key), mode=0o600)
    atomic_write(paths.ca_cert, _cert_pem(ca_cert), mode=0o644)
    return ca_key, ca_cert, ["made a new CA"]


def _paired(key, cert) -> bool:
    return cert.public_key().public_numbers() == key.public_key().public_numbers()


def ensure_certificates(paths: TlsPaths, hostname: str, address: str,
                        now: datetime.datetime | None = None) -> list[str]:
    """Make what is missing or no longer fits: the CA (``ensure_ca``; a new CA means a new
    server certificate too), then the dashboard's server certificate. Returns what was done,
    one phrase each (no key material); [] when everything was in place."""
    from cryptography import x509

    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_key, ca_cert, done = ensure_ca(paths, hostname, now)
    cert = _load(paths.server_cert, x509.load_pem_x509_certificate)
    problem = "missing" if cert is None or not paths.server_key.exists() else \
        server_cert_problem(cert, ca_cert, hostname, address, now)
    if problem:
        key, cert = make_server_cert(ca_key, ca_cert, hostname, address, now)
        atomic_write(paths.server_key, _key_pem(key), mode=0o600)
        atomic_write(paths.server_cert, _cert_pem(cert), mode=0o644)
        done.append(f"issued the dashboard's certificate for {hostname} and {address} (was: {problem})")
    return done


def ca_fits(paths: TlsPaths) -> bool:
    """The CA's part of the step's "done already?": its key and certificate there, a pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_key = _load(paths.ca_key, lambda data: serialization.load_pem_private_key(data, password=None))
    ca_cert = _load(paths.ca_cert, x509.load_pem_x509_certificate)
    return ca_key is not None and ca_cert is not None and _paired(ca_key, ca_cert)


def certificates_fit(paths: TlsPaths, hostname: str, address: str) -> bool:
    """The step's "done already?": every file there and the server certificate serving."""
    from cryptography import x509

    ca_cert = _load(paths.ca_cert, x509.load_pem_x509_certificate)
    cert = _load(paths.server_cert, x509.load_pem_x509_certificate)
    if ca_cert is None or cert is None or not (paths.ca_key.exists() and paths.server_key.exists()):
        return False
    return server_cert_problem(cert, ca_cert, hostname, address, datetime.datetime.now(datetime.timezone.utc)) is None
