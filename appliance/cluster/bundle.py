"""What the controller hands a node that redeemed its token: the bundle, exactly.

The fields are the least-privilege list of docs/scale-out.md ("What a node receives"); a
bundle with any other field is refused by the node, so a controller that (by a bug) offered a
database URL or another service's password would be refused rather than obeyed. JSON on the
wire (the join service's answer, over TLS pinned to the token's CA)::

    {"version": 1, "node": "c2", "controller": "c1", "controller_ip": "10.254.0.10",
     "region": "RegionOne", "keystone_url": "http://c1:5000/v3",
     "rabbitmq_user": "node-c2", "rabbitmq_password": "...", "keystone_user": "node-c2",
     "keystone_password": "...", "metadata_secret": "...",
     "ca_pem": "-----BEGIN CERTIFICATE-----...", "certificate_pem": "-----BEGIN CERTIFICATE-----..."}

The node's private key is not in it: the node made it and sent only a signing request.
Errors: ClusterError(kind="malformed"), one line, never a secret.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import Callable, NoReturn

from .errors import ClusterError
from .names import node_user
from .token import JoinToken

VERSION = 1
# Passwords and the metadata secret: the alphabet of the appliance's own secrets (site_checks'
# "secret" pattern), which URLs and oslo.config files take unquoted.
_SECRET = re.compile(r"[A-Za-z0-9._~-]{8,128}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A host name as the site config takes it (site_checks' "hostname"): "controller" included.
_HOST = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/v3")
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?")
MAX_BUNDLE = 64 * 1024


@dataclass(frozen=True)
class NodeBundle:
    node: str
    controller: str  # the controller's host name (the node's /etc/hosts maps it)
    controller_ip: str  # its management address, as in the token
    region: str
    keystone_url: str
    rabbitmq_user: str  # node-<node>: nova-compute's RPC only
    rabbitmq_password: str
    keystone_user: str  # node-<node>: role "service" in project "service"
    keystone_password: str
    metadata_secret: str  # the metadata proxy's shared secret (one per cloud: Nova has no other)
    ca_pem: str  # the appliance CA
    certificate_pem: str  # the node's client certificate, CN = node
    version: int = VERSION

    SECRETS = ("rabbitmq_password", "keystone_password", "metadata_secret")

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={'<hidden>' if f.name in self.SECRETS else getattr(self, f.name)!r}"
                          for f in fields(self) if not f.name.endswith("_pem"))
        return f"NodeBundle({shown})"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


FIELDS = tuple(f.name for f in fields(NodeBundle))


def json_object(text: str, limit: int, bad: Callable[[str], NoReturn]) -> dict:
    """``text`` as a JSON object of at most ``limit`` characters, else ``bad(problem)``: how
    each side of a join reads what the other sent."""
    if not isinstance(text, str) or len(text) > limit:
        bad(f"expected at most {limit} characters of JSON")
    try:
        data = json.loads(text)
    except ValueError:
        bad("not JSON")
    if not isinstance(data, dict):
        bad("not a JSON object")
    return data


def parse_bundle(text: str, token: JoinToken) -> NodeBundle:
    """The controller's answer to ``token``'s node, checked: exactly FIELDS, the node's own
    user names, the token's controller address, secrets and certificates of the right form."""
    def bad(problem: str):
        raise ClusterError("malformed", f"the controller's answer is not a node bundle: {problem}")

    data = json_object(text, MAX_BUNDLE, bad)
    extra = sorted(set(map(str, data)) - set(FIELDS))
    if extra:
        bad(f"unexpected field {extra[0]!r} (a node takes only its own credentials: {', '.join(FIELDS)})")
    missing = [f for f in FIELDS if f not in data]
    if missing:
        bad(f"field {missing[0]!r} is missing")
    if data["version"] != VERSION:
        bad(f"version {data['version']!r}, expected {VERSION}")
    for name in FIELDS:
        if name != "version" and not isinstance(data[name], str):
            bad(f"field {name!r} is not text")
    if data["node"] != token.name:
        bad(f"it is for node {data['node']!r}, the token for {token.name!r}")
    for name in ("rabbitmq_user", "keystone_user"):
        if data[name] != node_user(token.name):
            bad(f"field {name!r} is {data[name]!r}; a node gets only its own user {node_user(token.name)!r}")
    if data["controller_ip"] != token.host:
        bad(f"controller_ip {data['controller_ip']!r} is not the token's {token.host}")
    if not _HOST.fullmatch(data["controller"]):
        bad("field 'controller' is not a host name")
    if not _NAME.fullmatch(data["region"]):
        bad("field 'region' is not a region name")
    if not _URL.fullmatch(data["keystone_url"]):
        bad("field 'keystone_url' is not a Keystone v3 URL")
    for name in NodeBundle.SECRETS:
        if not _SECRET.fullmatch(data[name]):
            bad(f"field {name!r} is not 8 to 128 characters of letters, digits, '.', '_', '~' or '-'")
    for name in ("ca_pem", "certificate_pem"):
        if not _PEM_CERT.fullmatch(data[name]):
            bad(f"field {name!r} is not one PEM certificate")
    return NodeBundle(**data)
