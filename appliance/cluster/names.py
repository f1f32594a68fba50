"""What a node may be called.

A node's name becomes its host name, Nova's ``host`` (the compute service and the hypervisor),
the OVN chassis name (``external_ids:system-id``, which Neutron's OVN driver binds ports by),
the common name of its certificate (OVN's southbound RBAC compares it with the chassis name,
ovn-architecture(7) "Role-Based Access Control") and the suffix of its RabbitMQ and Keystone
users. The strictest of these is a DNS label, so that is the rule.
"""

from __future__ import annotations

import re

from .errors import ClusterError

# One DNS label (RFC 1123): lower case, so that the host name, Nova's host and the chassis
# name are the same string however each side folds case.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Names a host resolves to itself, or that the appliance's first boot replaces (facts.py).
RESERVED = frozenset({"localhost", "debian", "controller"})
# The users a node gets on the controller: node-<name> in RabbitMQ and in Keystone.
USER_PREFIX = "node-"


def check_node_name(name: object) -> str:
    """``name`` if it is a valid node name; ClusterError(kind="name") otherwise.

    "controller" is refused too: it is the host name first boot picks when none is set,
    so a second machine of that name would clash with a default controller."""
    if not isinstance(name, str) or not _LABEL.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) <= 80 else "that"
        raise ClusterError("name", f"node name {shown} is not valid: expected a lower-case DNS label "
                                   "(letters, digits and '-', at most 63 characters, not starting or ending with '-')")
    if name in RESERVED:
        raise ClusterError("name", f"node name {name!r} is reserved ({', '.join(sorted(RESERVED))} are not node names)")
    return name


def node_user(name: str) -> str:
    """The RabbitMQ and Keystone user name of node ``name`` (``node-<name>``)."""
    return USER_PREFIX + check_node_name(name)
