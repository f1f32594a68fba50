"""The appliance CA (appliance/tls.py) as the nodes see it: it signs each node's client
certificate, and the join token pins it.

Controller side: ``controller_ca`` loads the CA first boot made (its key 0600 under
``/etc/appliance/tls``) as an ``ApplianceCA``, which signs a node's certificate signing request
(CSR) into a TLS client certificate for the OVN southbound database, and issues the join
service's server certificate. Node side: ``node_key_and_request`` makes the node's key and its
CSR; the key never leaves the node (node.write_key keeps it 0600).

Shapes: keys, certificates and requests are PEM ``bytes``; the CA certificate also as DER.
The pin (``ca_sha256``, what the token carries) is ``tls.fingerprint`` of the CA certificate,
the digest `appliance status` prints, written as 64 lower-case hex digits without colons.

A node certificate's common name is the node's name, because OVN's southbound RBAC authorizes
a chassis by comparing that name with the rows it writes (ovn-architecture(7), "Role-Based
Access Control"; OVN's RBAC tutorial). A request that names anything else, or asks for more
than a TLS client's key usage, is refused with one line (ClusterError, kinds "csr", "subject",
"usage"; errors.py) before anything is signed.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Protocol

from .. import tls
from .errors import ClusterError
from .names import check_node_name

# A node certificate's lifetime: the most the appliance's server certificates get too
# (tls.SERVER_DAYS); a node that outlives it is issued a new one by joining again.
NODE_DAYS = 825
# A CSR is ~400 bytes of PEM; more is not one a node made.
MAX_CSR = 16 * 1024
# How a refusal names an extended key usage (RFC 5280 §4.2.1.12); others by their OID.
_EKU_NAMES = {"1.3.6.1.5.5.7.3.1": "serverAuth", "1.3.6.1.5.5.7.3.2": "clientAuth", "1.3.6.1.5.5.7.3.3": "codeSigning",
              "1.3.6.1.5.5.7.3.4": "emailProtection", "1.3.6.1.5.5.7.3.8": "timeStamping", "1.3.6.1.5.5.7.3.9": "OCSPSigning"}


class CertificateAuthority(Protocol):
    def ca_certificate_der(self) -> bytes:
        """The CA certificate, DER."""

    def ca_certificate_pem(self) -> bytes:
        """The CA certificate, PEM (what a node trusts)."""

    def ca_sha256(self) -> str:
        """The token's pin of this CA: SHA-256 of its certificate's DER, 64 lower-case hex."""

    def sign_node_request(self, csr_pem: bytes, *, node: str, days: int) -> bytes:
        """A client certificate (PEM) for ``csr_pem``, valid ``days`` days; refuses (an
        ApplianceError) a request whose subject common name is not ``node`` or that asks for
        more than a TLS client's key usage."""


def pin_of(cert_pem: bytes) -> str:
    """``tls.fingerprint`` (``AB:CD:...``, what status prints) in the token's form: the same
    SHA-256 of the DER, as 64 lower-case hex digits (``token.ca_fingerprint`` of the DER)."""
    return tls.fingerprint(cert_pem).replace(":", "").lower()


def check_node_request(csr_pem: bytes, node: str):
    """The CSR ``csr_pem`` of node ``node``, parsed (a cryptography CertificateSigningRequest)
    once it is one the CA signs: one PEM request with a valid signature over an EC P-256 key
    (what `appliance join` makes), subject exactly ``CN=<node>``, and no extension beyond a
    TLS client's (key usage digitalSignature, extended key usage clientAuth, a subject
    alternative name of ``node`` alone, no CA).

    ClusterError, one line that never repeats the request: "csr" (form, signature, key),
    "subject" (another name), "usage" (more than a client's usage)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    check_node_name(node)

    def refuse(kind: str, problem: str):
        raise ClusterError(kind, f"node {node}'s certificate request is refused: {problem}")

    if not isinstance(csr_pem, bytes) or len(csr_pem) > MAX_CSR or csr_pem.count(b"-----BEGIN ") != 1:
        refuse("csr", f"expected one PEM certificate signing request of at most {MAX_CSR} bytes")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        key = csr.public_key()
        extensions = list(csr.extensions)
        subject = list(csr.subject)
        signed = csr.is_signature_valid
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        refuse("csr", "it does not parse as a PKCS #10 request")
    if not signed:
        refuse("csr", "its signature does not verify (altered on the way?)")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        refuse("csr", f"its key is {_key_kind(key)}; a node makes an EC P-256 key (appliance join)")
    names = [(attribute.oid, attribute.value) for attribute in subject]
    if names != [(NameOID.COMMON_NAME, node)]:
        shown = csr.subject.rfc4514_string()
        refuse("subject", f"it names {shown[:80]!r}; a node's request names exactly CN={node}, its invited name")
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.SubjectAlternativeName):
            if list(value) != [x509.DNSName(node)]:
                refuse("subject", f"its subject alternative names are not {node} alone")
        elif isinstance(value, x509.BasicConstraints):
            if value.ca:
                refuse("usage", "it asks to be a CA")
        elif isinstance(value, x509.KeyUsage):
            if not value.digital_signature or _key_usages(value) != ["digital_signature"]:
                refuse("usage", f"it asks for key usage {', '.join(_key_usages(value)) or 'none'}; a TLS client "
                                "signs only (digital_signature)")
        elif isinstance(value, x509.ExtendedKeyUsage):
            if list(value) != [ExtendedKeyUsageOID.CLIENT_AUTH]:
                shown = ", ".join(_EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in value)
                refuse("usage", f"it asks for extended key usage {shown}; a node's certificate is for clientAuth only")
        else:
            shown = extension.oid.dotted_string if isinstance(value, x509.UnrecognizedExtension) else type(value).__name__
            refuse("usage", f"it asks for extension {shown}, which a node's certificate does not carry")
    return csr


class ApplianceCA:
    """The appliance CA, loaded: ``key`` and ``cert`` are cryptography objects (an EC private
    key and its certificate). Never shows the key (``repr``)."""

    def __init__(self, key, cert):
        self._key, self._cert = key, cert

    def __repr__(self) -> str:
        return f"ApplianceCA({self._cert.subject.rfc4514_string()!r}, sha256={self.ca_sha256()[:12]}...)"

    def ca_certificate_der(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._cert.public_bytes(serialization.Encoding.DER)

    def ca_certificate_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._cert.public_bytes(serialization.Encoding.PEM)

    def ca_sha256(self) -> str:
        return pin_of(self.ca_certificate_pem())

    def sign_node_request(self, csr_pem: bytes, *, node: str, days: int = NODE_DAYS,
                          now: datetime.datetime | None = None) -> bytes:
        """Node ``node``'s TLS client certificate (PEM) for the key of ``csr_pem``: subject
        ``CN=<node>``, key usage digitalSignature, extended key usage clientAuth, not a CA,
        valid from ``now`` (less tls.BACKDATE for clocks that disagree) for ``days`` days (1
        to NODE_DAYS) but never past the CA's own end. Refusals: ``check_node_request``;
        ``days`` out of range is the caller's bug (ValueError)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        if not isinstance(days, int) or not 1 <= days <= NODE_DAYS:
            raise ValueError(f"days: expected 1 to {NODE_DAYS}, got {days!r}")
        csr = check_node_request(csr_pem, node)
        now = now or datetime.datetime.now(datetime.timezone.utc)
        end = min(now + datetime.timedelta(days=days), tls.not_after(self._cert))
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
                .issuer_name(self._cert.subject).public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - tls.BACKDATE).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(tls.signing_only(), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                               critical=False)
                .sign(self._key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM)

    def server_certificate(self, hostname: str, address: str,
                           now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM) of a TLS server at ``hostname`` and ``address``
        (``tls.make_server_cert``: serverAuth, both names in the subject alternative names),
        for the join service and the southbound database. The key is the caller's to keep 0600."""
        from cryptography.hazmat.primitives import serialization

        key, cert = tls.make_server_cert(self._key, self._cert, hostname, address,
                                         now or datetime.datetime.now(datetime.timezone.utc))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def controller_ca(paths: tls.TlsPaths = tls.TlsPaths()) -> ApplianceCA:
    """The appliance CA first boot made under ``paths``. ClusterError(kind="ca") when its key
    or certificate is missing, unreadable or not a pair: one line naming the files, never
    their content."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        paired = cert.public_key().public_numbers() == key.public_key().public_numbers()
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not readable as a key and its certificate"
        raise ClusterError("ca", f"the appliance CA ({paths.ca_key}, {paths.ca_cert}) cannot sign node certificates: "
                                 f"{problem}; first boot's certificates step makes it") from None
    if not paired:
        raise ClusterError("ca", f"the appliance CA's key {paths.ca_key} is not the key of {paths.ca_cert}: restore "
                                 "both from a backup (a new CA means every node joins again)")
    return ApplianceCA(key, cert)


def tls_paths(config_dir: Path, state_dir: Path) -> tls.TlsPaths:
    """tls.TlsPaths under an appliance's directories (the defaults are /etc/appliance and
    /var/lib/appliance), so commands and tests point both at the same place."""
    return tls.TlsPaths(private_dir=Path(config_dir) / "tls", public_dir=Path(state_dir) / "tls")


def node_key_and_request(node: str) -> tuple[bytes, bytes]:
    """(key PEM, CSR PEM) of node ``node``: a new EC P-256 key (PKCS #8, unencrypted: the node
    keeps it 0600, node.write_key) and a request for ``CN=<node>`` without extensions (the CA
    sets the usage)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, check_node_name(node))]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def _key_kind(key) -> str:
    """How a refusal names a public key: "RSA 2048-bit", "EC secp384r1", "Ed25519PublicKey"."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}-bit"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__.lstrip("_")


def _key_usages(usage) -> list[str]:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign")
    return [name for name in names if getattr(usage, name)]
