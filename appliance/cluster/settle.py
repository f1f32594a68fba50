"""The controller's half of a join, after the bundle left: wait for the node's nova-compute
to report up, map its host into the cell, and record it ``joined`` (docs/scale-out.md,
"Join flow").

The join service does it between requests (``Settle`` as part of what ``joinserver.serve``
asks before each wait), so it keeps running while a node it let in is still ``joining``, for
at most ``JOIN_WAIT`` seconds after that node's redeem; a node slower than that stays
``joining`` (`appliance remove-node` and a new invitation start over). Host discovery is
Nova's ``nova-manage cell_v2 discover_hosts --by-service`` (Nova's cells documentation):
the service record, not a compute node, is what a host needs to be found.
"""

from __future__ import annotations

from typing import Callable

from .registry import Node, NodeRegistry

# Seconds the controller waits for a node's nova-compute after its token was redeemed: a
# node's first boot (chassis, libvirt, nova-compute) takes minutes on a small host.
JOIN_WAIT = 1800
DISCOVER = ["nova-manage", "cell_v2", "discover_hosts", "--by-service"]


def awaited(nodes: dict[str, Node], now: int, wait: int = JOIN_WAIT) -> list[str]:
    """The joining nodes still waited for, by name."""
    return sorted(name for name, node in nodes.items()
                  if node.state == "joining" and node.redeemed_at is not None and now - node.redeemed_at < wait)


class Settle:
    """One look: every awaited node whose compute service is up is discovered and joined.
    Returns whether the join service still has something to do (an invitation to redeem, a
    node to wait for)."""

    def __init__(self, registry: NodeRegistry, *, compute_up: Callable[[str], bool], discover: Callable[[], None],
                 say: Callable[[str], None], wait: int = JOIN_WAIT):
        self.registry, self.compute_up, self.discover, self.say, self.wait = registry, compute_up, discover, say, wait

    def __call__(self, now: int) -> bool:
        for name in awaited(self.registry.nodes(), now, self.wait):
            try:
                if not self.compute_up(name):
                    continue
                self.discover()
            except Exception as exc:  # an API or a command that fails now may not later: try again
                self.say(f"node {name}: could not yet see its nova-compute up or map its host "
                         f"({type(exc).__name__}: {str(exc)[:200]}); trying again")
                continue
            self.registry.mark_joined(name)
            self.say(f"node {name}: nova-compute is up and its host is mapped into the cell; joined")
        return self.registry.has_pending(now) or bool(awaited(self.registry.nodes(), now, self.wait))
