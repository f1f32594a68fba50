"""What `appliance status` says of a machine's role, and how it asks the cloud about it.

A controller asks Nova's service list and Neutron's agents as the admin (status.api_report)
and names the compute nodes its registry holds. A compute node holds no admin credentials
(docs/scale-out.md): it asks Placement, as its own user, whether its nova-compute's resource
provider is listed, which nova-compute makes only after it reached the controller's
conductor over RPC (steps_node.node_reports_up). Each role is one ``RoleStatus``
(status.BY_ROLE, keyed by the role names of sitefile.py and profiles.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import ApplianceError
from .context import AgentContext


@dataclass(frozen=True)
class NodeReport:
    """A compute node's view: its name, its controller, and the resource providers its
    user sees in Placement (names)."""

    node: str
    controller: str
    providers: list[str]


@dataclass(frozen=True)
class RoleStatus:
    describe: Callable[[AgentContext], str]  # the "role:" line
    ask: Callable[[AgentContext], object]  # a report; raises when the cloud does not answer
    waiting: Callable[[AgentContext, object], list[str]]  # what the report says is missing; []: ready
    health: Callable[[object], list[str]]  # the report's lines under "as the APIs report them"
    hints: Callable[[AgentContext], list[str]]  # how to use the cloud from here, once it is ready


def controller_line(ctx: AgentContext) -> str:
    """"role: controller" and the nodes of its registry with their state."""
    from ..cluster.commands import registry_of

    try:
        nodes = registry_of(ctx.paths).nodes()
    except (ApplianceError, OSError, ValueError):  # status must always answer
        return "role: controller (its node registry cannot be read)"
    listed = ", ".join(f"{name} ({node.state})" for name, node in sorted(nodes.items()))
    return f"role: controller; compute nodes: {listed or 'none'}"


def node_line(ctx: AgentContext) -> str:
    """"role: compute node N of controller C (address)" once the join left its bundle."""
    from .steps_node import node_config

    try:
        node = node_config(ctx)
    except (ApplianceError, OSError, ValueError):
        return "role: compute node (joining: no bundle yet)"
    return f"role: compute node {node.node} of controller {node.controller} ({node.controller_ip})"


def node_report(ctx: AgentContext) -> NodeReport:
    from .steps_node import node_config, node_connect

    node = node_config(ctx)
    providers = [p.name for p in node_connect(node).placement.resource_providers()]
    return NodeReport(node=node.node, controller=node.controller, providers=providers)


def node_waiting(ctx: AgentContext, report: NodeReport) -> list[str]:
    from .steps_node import reported

    return [] if reported(report.providers, report.node) else \
        [f"nova-compute of {report.node}: no resource provider in Placement"]


def node_health(report: NodeReport) -> list[str]:
    from .steps_node import reported

    listed = "listed" if reported(report.providers, report.node) else "not listed"
    return [f"  resource provider {report.node:<17} {listed} in Placement (asked as this node's user)"]


# A node's instances are created and reached through its controller: no hints here.
NODE = RoleStatus(describe=node_line, ask=node_report, waiting=node_waiting, health=node_health,
                  hints=lambda ctx: [])
