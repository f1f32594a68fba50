"""The controller's side of a join, without the socket: one request in, one bundle out.

The join service (an HTTPS endpoint on the management address, running while an invitation
can be redeemed; docs/scale-out.md, "Join flow") reads a ``JoinRequest`` from a node and
answers with ``handle_join``'s bundle, or with the status of its ClusterError (``STATUS``) and
the error's one line. The order is the point of this module:

1. the request's form is checked, its certificate request too (ca.check_node_request):
   nothing is touched for a malformed one, so a bad CSR does not spend the token;
2. the token is redeemed: the invitation is spent before anything is handed out;
3. the node's certificate is signed from its request (its key never travels);
4. its RabbitMQ and Keystone users are made with fresh passwords;
5. its addresses go on the allow-list of the node-facing ports;
6. the bundle is assembled (and checked as the node will check it).

Steps 4 and 5 are all made or none (changes.apply): a failure undoes the users made before
it. A failure after step 2 leaves the node "joining" all the same (the token is spent):
`appliance remove-node` cleans up, a new `add-node` invites again. Wire shape of a request (JSON)::

    {"name": "c2", "secret": "<the token's>", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----...",
     "overlay_ip": "10.254.0.11"}
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Callable, Protocol

from .bundle import NodeBundle, json_object, parse_bundle
from .ca import NODE_DAYS, CertificateAuthority, check_node_request
from .changes import Change, apply
from .errors import ClusterError
from .names import check_node_name, node_user
from .registry import NodeRegistry
from .token import JoinToken

# HTTP status of each refusal the service answers with (the body is the one line).
STATUS = {"malformed": 400, "name": 400, "csr": 400, "subject": 403, "usage": 403, "unknown": 403, "mismatch": 403,
          "used": 409, "expired": 410}
MAX_REQUEST = 16 * 1024
_CSR = re.compile(r"-----BEGIN CERTIFICATE REQUEST-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE REQUEST-----\n?")
_B64URL = re.compile(r"[A-Za-z0-9_-]{43}")
FIELDS = ("name", "secret", "csr_pem", "overlay_ip")


@dataclass(frozen=True)
class JoinRequest:
    name: str
    secret: str
    csr_pem: str
    overlay_ip: str  # the node's Geneve endpoint (its site's overlay_ip or management address)

    def __repr__(self) -> str:
        return f"JoinRequest(name={self.name!r}, overlay_ip={self.overlay_ip!r}, secret=<hidden>)"

    def to_json(self) -> str:
        return json.dumps({f: getattr(self, f) for f in FIELDS}, sort_keys=True)


def parse_request(text: str) -> JoinRequest:
    """A node's request, checked; ClusterError "malformed" (one line, never the secret)."""
    def bad(problem: str):
        raise ClusterError("malformed", f"not a join request: {problem}")

    data = json_object(text, MAX_REQUEST, bad)
    if sorted(data) != sorted(FIELDS):
        bad(f"expected exactly the fields {', '.join(FIELDS)}")
    if not all(isinstance(data[f], str) for f in FIELDS):
        bad("every field is text")
    check_node_name(data["name"])
    if not _B64URL.fullmatch(data["secret"]):
        bad("field 'secret' is not a token's secret")
    if not _CSR.fullmatch(data["csr_pem"]):
        bad("field 'csr_pem' is not one PEM certificate request")
    try:
        address = ipaddress.IPv4Address(data["overlay_ip"])
    except ValueError:
        bad("field 'overlay_ip' is not an IPv4 address")
    if address.is_unspecified or address.is_loopback or address.is_multicast or address.is_link_local:
        bad("field 'overlay_ip' is not a unicast address another host can reach")
    return JoinRequest(**{f: data[f] for f in FIELDS})


class Issuer(Protocol):
    """What the running cloud does for a join (each idempotent: a retried join converges)."""

    def create_rabbitmq_user(self, user: str, password: str, node: str) -> None:
        """The user with ``rabbitmq.node_permissions(node)``."""

    def create_keystone_user(self, user: str, password: str) -> None:
        """In project "service" with role "service" only."""

    def allow_node(self, node: str, address: str, overlay_ip: str) -> None:
        """``address`` on the node-facing ports' allow-list, ``overlay_ip`` for Geneve; opens
        the node-facing listeners if they are not open yet."""

    def delete_rabbitmq_user(self, user: str) -> None:
        """Gone already is no error."""

    def delete_keystone_user(self, user: str) -> None:
        """Gone already is no error."""


@dataclass(frozen=True)
class Controller:
    """What the bundle says about the controller (from its facts, site and profile)."""

    hostname: str
    management_ip: str
    region: str
    keystone_url: str
    metadata_secret: str

    def __repr__(self) -> str:
        return f"Controller({self.hostname!r}, {self.management_ip!r})"


def handle_join(request: JoinRequest, *, peer: str, registry: NodeRegistry, ca: CertificateAuthority,
                issuer: Issuer, controller: Controller, now: int, new_password: Callable[[], str]) -> NodeBundle:
    """Redeem ``request`` from TCP peer ``peer`` and return the node's bundle (see the module
    docstring for the order). ClusterError: csr, subject, usage (the certificate request,
    checked before the token is spent); unknown, used, expired, mismatch (the registry)."""
    check_node_request(request.csr_pem.encode("ascii"), request.name)
    registry.redeem(request.name, request.secret, now=now, address=peer)
    certificate = ca.sign_node_request(request.csr_pem.encode("ascii"), node=request.name, days=NODE_DAYS)
    user = node_user(request.name)
    rabbitmq_password, keystone_password = new_password(), new_password()
    apply([
        Change(f"RabbitMQ user {user}", done=lambda: False,
               make=lambda: issuer.create_rabbitmq_user(user, rabbitmq_password, request.name),
               undo=lambda: issuer.delete_rabbitmq_user(user)),
        Change(f"Keystone user {user}", done=lambda: False,
               make=lambda: issuer.create_keystone_user(user, keystone_password),
               undo=lambda: issuer.delete_keystone_user(user)),
        # Last: a node is let in only once its users exist (its allow-list entry goes with them).
        Change(f"node {request.name} on the allow-list", done=lambda: False,
               make=lambda: issuer.allow_node(request.name, peer, request.overlay_ip), undo=lambda: None),
    ])
    bundle = NodeBundle(node=request.name, controller=controller.hostname, controller_ip=controller.management_ip,
                        region=controller.region, keystone_url=controller.keystone_url, rabbitmq_user=user,
                        rabbitmq_password=rabbitmq_password, keystone_user=user, keystone_password=keystone_password,
                        metadata_secret=controller.metadata_secret, ca_pem=ca.ca_certificate_pem().decode("ascii"),
                        certificate_pem=certificate.decode("ascii"))
    # What the node will refuse, the controller refuses to send (a bug here, not the node's).
    parse_bundle(bundle.to_json(), JoinToken(name=request.name, host=controller.management_ip, port=1, expires=1,
                                             ca_sha256="0" * 64))
    return bundle
