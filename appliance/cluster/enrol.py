"""Enrolment and removal as steps over interfaces: what `appliance add-node`, `join` and
`remove-node` do, with the CA (ca.py) and the running cloud (``CloudOps``) passed in, so the
order and the refusals are tested without a cloud.

Wired today: names, the registry, token text, token input, expiry, the removal of an
invitation nobody used, the CA (ca.py over appliance/tls.py), the join service as profile
data (service ``JOIN_SERVICE``: its unit and port), a node's RabbitMQ and Keystone users
(issuer.py), the node-facing listeners and their allow-list (listeners.py, allowlist.py),
``CloudOps`` on the running cloud (cloudops.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Protocol

from ..errors import ApplianceError
from ..profiles import Profile
from ..schema import read_text_input
from .ca import CertificateAuthority
from .errors import ClusterError
from .names import check_node_name, node_user
from .registry import NodeRegistry
from .token import JoinToken, check_not_expired, parse_token, utc

# The role a node joins as (profile data: Profile.roles).
NODE_ROLE = "compute"
# The profile service of the controller's join service, where a node redeems its token over
# TLS (docs/scale-out.md, "Join flow"): its unit and its one declared port.
JOIN_SERVICE = "join"
# How long an invitation lasts: an hour unless said otherwise; at least 5 minutes (a machine
# must boot), at most a day (an unused secret should not lie around).
LIFETIME_DEFAULT = 3600
LIFETIME_BOUNDS = (300, 86400)
_DURATION = re.compile(r"([0-9]{1,6})([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# A token file or stdin: a token is ~280 characters; more is not a token.
TOKEN_INPUT_LIMIT = 4096


def parse_lifetime(text: str) -> int:
    """``"90m"``, ``"2h"``, ``"1d"``, ``"600"`` (seconds) -> seconds within LIFETIME_BOUNDS;
    ApplianceError (one line) otherwise."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    low, high = LIFETIME_BOUNDS
    if match is None:
        raise ApplianceError(f"--expires: expected a duration like 30m, 2h or 1d, got {text!r}")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if not low <= seconds <= high:
        raise ApplianceError(f"--expires: expected 5m to 1d, got {text} ({seconds} s)")
    return seconds


def require_role(profile: Profile) -> None:
    if NODE_ROLE not in profile.roles:
        raise ClusterError("role", f"profile {profile.name} has no {NODE_ROLE} role: this appliance cannot take nodes "
                                   "or join another's cloud (scale-out needs ML2/OVN, e.g. trixie-epoxy)")


def join_port(profile: Profile) -> int:
    """The port the profile declares for its join service (trixie-epoxy: 9777), which a token
    names; ClusterError(kind="role") for a profile that declares no join service."""
    if not profile.has_service(JOIN_SERVICE) or not profile.service(JOIN_SERVICE).ports:
        raise ClusterError("role", f"profile {profile.name} declares no {JOIN_SERVICE!r} service with a port: this "
                                   "appliance has no join service for a node to redeem a token at")
    return profile.service(JOIN_SERVICE).ports[0].port


def add_node(name: str, *, profile: Profile, registry: NodeRegistry, controller: str, host: str,
             ca_of: Callable[[], CertificateAuthority], now: int, lifetime: int) -> JoinToken:
    """Invite node ``name``: the token to print. ``controller``: this host's name; ``host``:
    its management address; ``ca_of``: the appliance CA (asked only once the name is free,
    so every refusal about the name comes first). The invitation is recorded last."""
    require_role(profile)
    port = join_port(profile)
    registry.check_free(name, controller=controller, now=now)
    fingerprint = ca_of().ca_sha256()
    node, secret = registry.invite(name, controller=controller, now=now, lifetime=lifetime)
    return JoinToken(name=name, host=host, port=port, expires=node.expires_at, ca_sha256=fingerprint,
                     secret=secret)


def read_token(*, token_file: Path | None, stdin_text: Callable[[], str]) -> JoinToken:
    """The token from ``token_file`` (bounded, UTF-8, a regular file) or else from
    ``stdin_text()``; parsed (ClusterError "malformed") but not yet checked for expiry."""
    if token_file is not None:
        text = read_text_input(token_file, str(token_file), limit=TOKEN_INPUT_LIMIT)
    else:
        text = stdin_text()
        if len(text) > TOKEN_INPUT_LIMIT:
            raise ClusterError("malformed", f"not a join token: more than {TOKEN_INPUT_LIMIT} characters on stdin")
    return parse_token(text)


def check_joinable(token: JoinToken, *, profile: Profile, first_boot_done: bool, now: float) -> None:
    """What a machine checks before it contacts the controller: the token is still valid,
    the profile has the compute role, and this machine is not a cloud of its own already."""
    require_role(profile)
    if first_boot_done:
        raise ClusterError("role", "this appliance finished its first boot as the controller of its own cloud; "
                                   "a node joins from a fresh first boot (a new machine, or this image written anew)")
    check_not_expired(token, now)


class CloudOps(Protocol):
    """What removing a node asks of the running cloud, on the controller. Each call is
    idempotent (the thing gone already is no error), so a removal that failed half-way runs
    again. ``host`` is the node's name, which is Nova's host and the OVN chassis name."""

    def instances_on(self, host: str) -> list[str]:
        """Names (or ids) of the instances Nova places on ``host``, every project."""

    def delete_instances_on(self, host: str) -> None:
        """Delete the instances on ``host``, every project, and wait until they are gone
        (Nova refuses to delete a compute service that still hosts any; with the node down
        its API deletes them locally)."""

    def delete_compute_service(self, host: str) -> None:
        """The nova-compute service; Nova drops its compute node and resource provider."""

    def delete_resource_provider(self, host: str) -> None:
        """Placement's provider of ``host``, if Nova left one behind."""

    def delete_network_agents(self, host: str) -> None:
        """Neutron's agents of ``host`` (OVN controller agent, OVN metadata agent)."""

    def delete_chassis(self, host: str) -> None:
        """The OVN southbound Chassis and Chassis_Private rows of ``host``."""

    def delete_rabbitmq_user(self, user: str) -> None: ...

    def delete_keystone_user(self, user: str) -> None: ...

    def forget_certificate(self, host: str) -> None:
        """Take the node off the controller's allow-list for its node-facing listeners."""

    def close_node_listeners(self) -> None:
        """Back to loopback: called once no node is joining or joined."""

    def stop_join_service(self) -> None:
        """Called once no invitation can be redeemed any more."""


def remove_node(name: str, *, registry: NodeRegistry, cloud: CloudOps, force: bool, now: int,
                say: Callable[[str], None]) -> None:
    """Remove node ``name`` from this controller's cloud, leaving no service, agent, chassis,
    provider, user or listener behind (the node-facing listeners close with the last member,
    the join service with the last invitation that can still be redeemed). An invitation
    nobody used leaves the registry and touches no other part of the cloud.
    Refused while instances live on the node (ClusterError "busy") unless ``force``, which
    deletes them first (Nova refuses to delete a compute service hosting instances). The
    registry entry goes last, so a removal that failed half-way can be run again."""
    node = registry.get(check_node_name(name))
    if node.state == "invited":
        registry.remove(name)
        say(f"invitation of node {name} (valid until {utc(node.expires_at)}) cancelled; its token is void")
    else:
        instances = cloud.instances_on(name)
        if instances and not force:
            shown = ", ".join(instances[:5]) + (f" and {len(instances) - 5} more" if len(instances) > 5 else "")
            raise ClusterError("busy", f"node {name} still hosts {len(instances)} instance(s): {shown}; delete them "
                                       "first, or give --force (they are lost with the node)")
        if instances:
            cloud.delete_instances_on(name)
            say(f"node {name}: {len(instances)} instance(s) deleted (--force)")
        user = node_user(name)
        # The node's addresses leave the allow-list first: a node still running would
        # otherwise register its chassis (and report its service) again as they are deleted.
        for step in (lambda: cloud.forget_certificate(name), lambda: cloud.delete_compute_service(name),
                     lambda: cloud.delete_resource_provider(name), lambda: cloud.delete_network_agents(name),
                     lambda: cloud.delete_chassis(name), lambda: cloud.delete_rabbitmq_user(user),
                     lambda: cloud.delete_keystone_user(user)):
            step()
        registry.remove(name)
        say(f"node {name} removed: compute service, resource provider, network agents, chassis, "
            f"RabbitMQ and Keystone user {user}, certificate")
    if not registry.has_members():
        cloud.close_node_listeners()
    if not registry.has_pending(now):
        cloud.stop_join_service()
