"""The controller's half of a join after the bundle left (settle.py)."""

import pytest

from appliance.cluster.registry import Node, NodeRegistry
from appliance.cluster.settle import JOIN_WAIT, Settle, awaited

NOW = 1_800_000_000


def _node(name, state, redeemed_at=None):
    return Node(name=name, state=state, invited_at=NOW - 100, expires_at=NOW + 3600, redeemed_at=redeemed_at)


AWAITED = [
    ("invited: not yet", {"c2": _node("c2", "invited")}, []),
    ("joining, just redeemed", {"c2": _node("c2", "joining", NOW - 5)}, ["c2"]),
    ("joining, too long ago", {"c2": _node("c2", "joining", NOW - JOIN_WAIT)}, []),
    ("joined already", {"c2": _node("c2", "joined", NOW - 5)}, []),
    ("by name", {"c3": _node("c3", "joining", NOW), "c2": _node("c2", "joining", NOW)}, ["c2", "c3"]),
]


@pytest.mark.parametrize("label,nodes,names", AWAITED, ids=[a[0] for a in AWAITED])
def test_which_nodes_the_controller_waits_for(label, nodes, names):
    assert awaited(nodes, NOW) == names


@pytest.fixture
def registry(tmp_path):
    registry = NodeRegistry(tmp_path / "cluster")
    _, secret = registry.invite("c2", controller="c1", now=NOW, lifetime=3600)
    registry.redeem("c2", secret, now=NOW, address="10.254.0.11")
    return registry


def test_a_node_whose_compute_is_up_is_discovered_then_joined(registry):
    said, discovered, up = [], [], {"c2": False}
    settle = Settle(registry, compute_up=lambda name: up[name], discover=lambda: discovered.append(1),
                    say=said.append)
    assert settle(NOW + 10) is True and discovered == [] and registry.get("c2").state == "joining"
    up["c2"] = True
    assert settle(NOW + 20) is False
    assert discovered == [1] and registry.get("c2").state == "joined"
    assert said == ["node c2: nova-compute is up and its host is mapped into the cell; joined"]


def test_a_pending_invitation_keeps_the_service_and_a_failing_api_is_asked_again(registry):
    registry.invite("c3", controller="c1", now=NOW, lifetime=3600)
    said = []

    def compute_up(name):
        raise ConnectionError("keystone")

    settle = Settle(registry, compute_up=compute_up, discover=lambda: None, say=said.append)
    assert settle(NOW + 10) is True
    assert said == ["node c2: could not yet see its nova-compute up or map its host (ConnectionError: keystone); "
                    "trying again"]
    assert settle(NOW + JOIN_WAIT + 1) is True  # c2 no longer awaited; c3's invitation still pending
    assert settle(NOW + 3600) is False


def test_a_failed_discovery_is_tried_again_and_the_node_stays_joining(registry):
    said, tries = [], []

    def discover():
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("nova-manage exited 1")

    settle = Settle(registry, compute_up=lambda name: True, discover=discover, say=said.append)
    assert settle(NOW + 10) is True and registry.get("c2").state == "joining"
    assert settle(NOW + 20) is False and registry.get("c2").state == "joined" and len(tries) == 2
    assert said[0] == ("node c2: could not yet see its nova-compute up or map its host (RuntimeError: nova-manage "
                       "exited 1); trying again")
