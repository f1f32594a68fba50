"""The certificate authority behind the nodes' certificates, as an interface.

The controller's CA (issue 27's ``appliance/tls.py``: a CA and server certificates made with
python3-cryptography) will sign each node's certificate for the OVN southbound database over
TLS; the join token pins the CA by ``token.ca_fingerprint`` of its DER form. Until that module
is wired in, ``controller_ca`` says so in one line instead of pretending.

Shapes: certificates and requests are PEM text (``bytes``), the CA certificate also as DER for
the fingerprint. A node's key is made on the node and never leaves it: the controller signs a
certificate signing request (CSR) whose common name must be the node's name, because OVN's
southbound RBAC authorizes a chassis by comparing that name with the rows it writes
(ovn-architecture(7), "Role-Based Access Control"; OVN's RBAC tutorial).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..errors import ApplianceError


class CertificateAuthority(Protocol):
    def ca_certificate_der(self) -> bytes:
        """The CA certificate, DER."""

    def ca_certificate_pem(self) -> bytes:
        """The CA certificate, PEM (what a node trusts)."""

    def sign_node_request(self, csr_pem: bytes, *, node: str, days: int) -> bytes:
        """A client certificate (PEM) for ``csr_pem``, valid ``days`` days; refuses (an
        ApplianceError) a request whose subject common name is not ``node`` or that asks for
        more than a TLS client's key usage."""


def controller_ca(state_dir: Path) -> CertificateAuthority:
    """The appliance CA kept under ``state_dir``. Not wired in yet: raises ApplianceError."""
    raise ApplianceError("not yet implemented: the appliance CA that signs node certificates comes with "
                         "appliance/tls.py (issue 27); see docs/scale-out.md, \"Certificates\"")
