"""The appliance CA signing node certificates (appliance/cluster/ca.py over appliance/tls.py):
a node's own request for its own name becomes a TLS client certificate; every other request
is refused with one line of its kind; the token's pin is the digest status prints."""

import datetime
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance import tls
from appliance.cluster import ca as cas
from appliance.cluster.errors import KINDS, ClusterError
from appliance.cluster.token import ca_fingerprint

NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    """A CA as first boot makes it (tls.ensure_certificates), loaded by controller_ca."""
    paths = cas.tls_paths(tmp_path_factory.mktemp("etc"), tmp_path_factory.mktemp("var"))
    tls.ensure_certificates(paths, "c1", "10.254.0.10", now=NOW)
    return paths, cas.controller_ca(paths)


def request(names=(("CN", "c2"),), key=None, extensions=()):
    """A CSR (PEM) with the subject ``names`` (in order) and ``extensions`` [(value, critical)]."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME}
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oids[k], v) for k, v in names]))
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def usage(**on):
    flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
    return x509.KeyUsage(**{**flags, **on})


def altered_signature():
    der = x509.load_pem_x509_csr(request()).public_bytes(serialization.Encoding.DER)
    der = der[:-1] + bytes([der[-1] ^ 0x01])
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)


# (label, the CSR for node c2, kind, what the one line says): a row per way to be refused.
REFUSED = [
    ("not PEM", lambda: b"hello", "csr", "expected one PEM certificate signing request"),
    ("text", lambda: "a CSR as str", "csr", "expected one PEM certificate signing request"),
    ("two requests", lambda: request() + request(), "csr", "expected one PEM"),
    ("too large", lambda: b"-----BEGIN " + b"A" * 20000, "csr", "at most 16384 bytes"),
    ("garbage inside", lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
     "csr", "does not parse as a PKCS #10 request"),
    ("a certificate", lambda: tls.make_ca("x", NOW)[1].public_bytes(serialization.Encoding.PEM), "csr",
     "does not parse"),
    ("altered", altered_signature, "csr", "its signature does not verify"),
    ("RSA key", lambda: request(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)), "csr",
     "its key is RSA 2048-bit; a node makes an EC P-256 key"),
    ("P-384 key", lambda: request(key=ec.generate_private_key(ec.SECP384R1())), "csr", "its key is EC secp384r1"),
    ("another node", lambda: request(names=(("CN", "c3"),)), "subject", "it names 'CN=c3'; a node's request names "
     "exactly CN=c2"),
    ("the controller", lambda: request(names=(("CN", "c1"),)), "subject", "it names 'CN=c1'"),
    ("more in the subject", lambda: request(names=(("O", "x"), ("CN", "c2"))), "subject", "names exactly CN=c2"),
    ("two common names", lambda: request(names=(("CN", "c2"), ("CN", "c3"))), "subject", "names exactly CN=c2"),
    ("no subject", lambda: request(names=()), "subject", "it names ''"),
    ("another alternative name", lambda: request(extensions=[(x509.SubjectAlternativeName(
        [x509.DNSName("c2"), x509.DNSName("c1")]), False)]), "subject", "subject alternative names are not c2 alone"),
    ("a CA", lambda: request(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]), "usage",
     "it asks to be a CA"),
    ("certificate signing", lambda: request(extensions=[(usage(digital_signature=True, key_cert_sign=True), True)]),
     "usage", "key usage digital_signature, key_cert_sign; a TLS client signs only"),
    ("key agreement only", lambda: request(extensions=[(usage(key_agreement=True), True)]), "usage",
     "key usage key_agreement"),
    ("a server", lambda: request(extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)]),
     "usage", "extended key usage serverAuth; a node's certificate is for clientAuth only"),
    ("client and server", lambda: request(extensions=[(x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), False)]), "usage", "clientAuth, serverAuth"),
    ("another extension", lambda: request(extensions=[(x509.OCSPNoCheck(), False)]), "usage",
     "it asks for extension OCSPNoCheck"),
]


@pytest.mark.parametrize("label,make,kind,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_requests_one_line_each(authority, label, make, kind, message):
    csr = make()
    with pytest.raises(ClusterError) as caught:
        authority[1].sign_node_request(csr, node="c2", now=NOW)
    line = str(caught.value)
    assert caught.value.kind == kind and kind in KINDS
    assert message in line and "\n" not in line and line.startswith("node c2's certificate request is refused: ")
    assert "BEGIN" not in line


def test_every_refusal_kind_of_a_request_has_a_row():
    assert {row[2] for row in REFUSED} == {"csr", "subject", "usage"}


ACCEPTED = [
    ("as the node makes it", lambda: cas.node_key_and_request("c2")[1]),
    ("a client's usage spelled out", lambda: request(extensions=[
        (x509.BasicConstraints(ca=False, path_length=None), True), (usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (x509.SubjectAlternativeName([x509.DNSName("c2")]), False)])),
]


@pytest.mark.parametrize("label,make", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_a_nodes_request_becomes_its_client_certificate(authority, label, make):
    paths, ca = authority
    csr = x509.load_pem_x509_csr(make())
    cert = x509.load_pem_x509_certificate(ca.sign_node_request(csr.public_bytes(serialization.Encoding.PEM),
                                                               node="c2", days=cas.NODE_DAYS, now=NOW))
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=c2" and cert.issuer == ca_cert.subject
    assert cert.public_key().public_numbers() == csr.public_key().public_numbers()
    ext = cert.extensions
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext.get_extension_for_class(x509.KeyUsage).value == usage(digital_signature=True)
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    assert tls.not_after(cert) == NOW + datetime.timedelta(days=825)
    ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def test_a_node_certificate_never_outlives_its_ca(authority):
    paths, ca = authority
    late = NOW + datetime.timedelta(days=tls.CA_DAYS - 10)
    cert = x509.load_pem_x509_certificate(ca.sign_node_request(request(), node="c2", days=825, now=late))
    assert tls.not_after(cert) == tls.not_after(x509.load_pem_x509_certificate(paths.ca_cert.read_bytes()))


@pytest.mark.parametrize("days", [0, 826, "825"])
def test_a_lifetime_out_of_range_is_the_callers_bug(authority, days):
    with pytest.raises(ValueError, match="days: expected 1 to 825"):
        authority[1].sign_node_request(request(), node="c2", days=days)


def test_the_pin_is_the_digest_status_prints(authority):
    paths, ca = authority
    shown = tls.fingerprint(paths.ca_cert.read_bytes())  # what `appliance status` prints
    assert ca.ca_sha256() == shown.replace(":", "").lower() == ca_fingerprint(ca.ca_certificate_der())
    assert ca.ca_certificate_pem() == paths.ca_cert.read_bytes()
    assert "PRIVATE" not in repr(ca) and ca.ca_sha256()[:12] in repr(ca)


def test_the_node_makes_its_own_p256_key():
    key_pem, csr_pem = cas.node_key_and_request("c2")
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    csr = cas.check_node_request(csr_pem, "c2")
    assert csr.public_key().public_numbers() == key.public_key().public_numbers()
    assert b"PRIVATE" not in csr_pem
    with pytest.raises(ClusterError) as caught:
        cas.node_key_and_request("C2")
    assert caught.value.kind == "name"


def _missing(paths):
    paths.ca_key.unlink()


def _damaged(paths):
    paths.ca_cert.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def _other_key(paths):
    paths.ca_key.write_bytes(cas.node_key_and_request("c2")[0])


CA_REFUSED = [
    ("missing", _missing, "No such file or directory; first boot's certificates step makes it"),
    ("damaged", _damaged, "not readable as a key and its certificate"),
    ("not a pair", _other_key, "is not the key of"),
]


@pytest.mark.parametrize("label,spoil,message", CA_REFUSED, ids=[c[0] for c in CA_REFUSED])
def test_a_ca_that_cannot_sign_is_refused_in_one_line(tmp_path, label, spoil, message):
    paths = cas.tls_paths(tmp_path / "etc", tmp_path / "var")
    tls.ensure_certificates(paths, "c1", "10.254.0.10", now=NOW)
    spoil(paths)
    with pytest.raises(ClusterError) as caught:
        cas.controller_ca(paths)
    assert caught.value.kind == "ca" and message in str(caught.value) and "\n" not in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value)


def test_the_join_services_certificate_names_the_controller(authority):
    paths, ca = authority
    key_pem, cert_pem = ca.server_certificate("c1", "10.254.0.10", now=NOW)
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca_cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    assert tls.server_cert_problem(cert, ca_cert, "c1", "10.254.0.10", NOW) is None
    assert b"PRIVATE KEY" in key_pem


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_openssl_takes_the_node_certificate_as_a_tls_client(tmp_path):
    paths = cas.tls_paths(tmp_path / "etc", tmp_path / "var")
    tls.ensure_certificates(paths, "c1", "10.254.0.10")  # today: openssl checks against the clock
    ca = cas.controller_ca(paths)
    cert = tmp_path / "node.crt"
    cert.write_bytes(ca.sign_node_request(cas.node_key_and_request("c2")[1], node="c2"))
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(paths.ca_cert), "-purpose", "sslclient", str(cert)],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    server = subprocess.run(["openssl", "verify", "-CAfile", str(paths.ca_cert), "-purpose", "sslserver", str(cert)],
                            capture_output=True, text=True)
    assert server.returncode != 0  # a node cannot pose as a server with it
