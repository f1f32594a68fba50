"""The node's side of a join: trust the controller the token names, and only then send it the
secret (docs/scale-out.md, "Join flow"; the wire is joinserver.py's).

The node has no CA yet; its token pins one (``ca_sha256``). So:

1. ``pinned_ca``: a TLS handshake with the join service that trusts nothing and sends
   nothing; among the certificates the service presents, the one whose SHA-256 is the pin is
   the CA. None is: ClusterError "fingerprint", one line, and the connection is closed with
   no byte of HTTP written, let alone the secret.
2. The node makes its key (written 0600 before anything leaves) and its CSR.
3. ``redeem``: a second connection that trusts that CA alone and requires the server
   certificate to name the token's address (OpenSSL checks chain, dates and name), then the
   one POST with the secret; the answer is checked (``bundle.parse_bundle``, and it carries
   the pinned CA and a certificate for this node's own key) before anything is written.

Errors: ClusterError of the controller's refusal (its kind, its one line), "fingerprint",
"malformed" (an answer that is not this node's bundle); ApplianceError when the service
cannot be reached. No message holds the secret.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from contextlib import contextmanager
from typing import Iterator

from ..errors import ApplianceError
from .bundle import MAX_BUNDLE, NodeBundle, parse_bundle
from .ca import node_key_and_request
from .errors import KINDS, ClusterError
from .joinserver import PATH
from .joinservice import JoinRequest
from .node import NodeFiles, write_bundle, write_key
from .token import JoinToken, ca_fingerprint, check_fingerprint

# Seconds to reach the service and finish a handshake.
CONNECT_TIMEOUT = 10.0
# Seconds for the answer: the controller signs and creates users in RabbitMQ and Keystone
# before it answers.
ANSWER_TIMEOUT = 120.0
# The most of a refusal's text shown: it comes from the network.
MAX_MESSAGE = 400


def pinned_ca(token: JoinToken, *, timeout: float = CONNECT_TIMEOUT) -> bytes:
    """The DER of the CA certificate ``token`` pins, as the join service at
    ``token.endpoint`` presents it in its TLS handshake. Nothing but the handshake is sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Deliberately unverified: this connection only shows which certificates the service
    # has; it is closed without a byte of HTTP, and trust comes from the pin alone.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with _reaching(token):
        with socket.create_connection((token.host, token.port), timeout=timeout) as raw:
            with context.wrap_socket(raw) as tls:
                chain = _presented_chain(tls)
    if not chain:
        raise ClusterError("fingerprint", f"the join service at {token.endpoint} presented no certificate; the token "
                                          "pins the controller's CA")
    for der in chain:
        if ca_fingerprint(der) == token.ca_sha256:
            return der
    check_fingerprint(token, chain[-1])  # raises, naming the digest of the CA the service presented
    return chain[-1]


def redeem(token: JoinToken, request: JoinRequest, ca_der: bytes, *, timeout: float = ANSWER_TIMEOUT) -> NodeBundle:
    """POST ``request`` to the join service over TLS verified by ``ca_der`` alone, the server
    certificate naming ``token.host``; the answer parsed as ``token``'s node's bundle."""
    context = ssl.create_default_context(cadata=ca_der)  # this CA only: no system trust store
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    connection = http.client.HTTPSConnection(token.host, token.port, timeout=timeout, context=context)
    with _reaching(token):
        try:
            connection.request("POST", PATH, body=request.to_json().encode("utf-8"),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read(MAX_BUNDLE + 1)
        finally:
            connection.close()
    text = body.decode("utf-8", errors="replace")
    if response.status == 200:
        return parse_bundle(text, token)
    raise _refusal(token, response.status, text)


def join_controller(token: JoinToken, *, files: NodeFiles, overlay_ip: str) -> NodeBundle:
    """The whole join of this machine as ``token``'s node: pin, key, request, answer. Writes
    the key (0600) before the request leaves and the bundle (node.write_bundle) once checked;
    returns it."""
    ca_der = pinned_ca(token)
    key_pem, csr_pem = node_key_and_request(token.name)
    write_key(files, key_pem)
    request = JoinRequest(name=token.name, secret=token.secret, csr_pem=csr_pem.decode("ascii"), overlay_ip=overlay_ip)
    bundle = redeem(token, request, ca_der)
    check_issued(bundle, token, key_pem)
    write_bundle(files, bundle)
    return bundle


def check_issued(bundle: NodeBundle, token: JoinToken, key_pem: bytes) -> None:
    """What parse_bundle cannot know: the bundle's CA is the pinned one ("fingerprint") and
    its certificate is for this node's own key and name ("malformed")."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    check_fingerprint(token, ssl.PEM_cert_to_DER_cert(bundle.ca_pem))
    cert = x509.load_pem_x509_certificate(bundle.certificate_pem.encode("ascii"))
    key = serialization.load_pem_private_key(key_pem, password=None)
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise ClusterError("malformed", "the controller's answer is not a node bundle: its certificate is not for "
                                        "the key this node made")
    if cert.subject.rfc4514_string() != f"CN={token.name}":
        raise ClusterError("malformed", f"the controller's answer is not a node bundle: its certificate is not for "
                                        f"node {token.name}")


def _presented_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """DER of every certificate the server presented, its own first. Python 3.13 (trixie's)
    has SSLSocket.get_unverified_chain; 3.10 to 3.12 have it only on the C-level object,
    as certificate objects (bpo-18233)."""
    public = getattr(tls, "get_unverified_chain", None)
    chain = public() if public is not None else tls._sslobj.get_unverified_chain()
    return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain or []]


def _refusal(token: JoinToken, status: int, text: str) -> ApplianceError:
    """The controller's refusal as one line of its kind; an answer that is no refusal of the
    service's shape says so."""
    try:
        data = json.loads(text)
        kind, message = data["kind"], data["message"]
    except (ValueError, TypeError, KeyError):
        kind = message = None
    if not isinstance(message, str):
        return ClusterError("malformed", f"the join service at {token.endpoint} answered HTTP {status} without a "
                                         "refusal of its own (is it the appliance's join service?)")
    shown = "".join(c if c.isprintable() else " " for c in message)[:MAX_MESSAGE]
    if kind in KINDS:
        return ClusterError(kind, f"the controller refused the join: {shown}")
    return ApplianceError(f"the join of node {token.name} failed at the controller (HTTP {status}): {shown}")


@contextmanager
def _reaching(token: JoinToken) -> Iterator[None]:
    """The network's errors as one line naming the service."""
    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        raise ApplianceError(f"the join service at {token.endpoint} presented a certificate the pinned CA does not "
                             f"vouch for at this address ({exc.verify_message})") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ApplianceError(f"cannot reach the join service at {token.endpoint}: {reason}") from None
