"""Removing a node from the running cloud (cloudops.ControllerCloud) over a fake cloud."""

from types import SimpleNamespace as NS

import pytest

from appliance.cluster import enrol
from appliance.cluster.cloudops import ControllerCloud
from appliance.cluster.registry import NodeRegistry

NOW = 1_800_000_000


class Proxy:
    """One openstacksdk proxy: lists what it holds, records deletions."""

    def __init__(self, log, kind, items):
        self.log, self.kind, self.items = log, kind, list(items)

    def _delete(self, item, ignore_missing=False):
        assert ignore_missing
        self.items.remove(item)
        self.log.append(f"delete {self.kind} {item.id}")


class Compute(Proxy):
    def __init__(self, log, servers, services):
        super().__init__(log, "service", services)
        self._servers = servers

    def servers(self, all_projects=False):
        assert all_projects
        return list(self._servers)

    def services(self):
        return list(self.items)

    delete_service = Proxy._delete

    def delete_server(self, server, ignore_missing=False):
        assert ignore_missing
        self._servers.remove(server)
        self.log.append(f"delete server {server.id}")

    def wait_for_delete(self, server, interval=2, wait=120):
        assert server not in self._servers
        self.log.append(f"gone server {server.id}")


class Placement(Proxy):
    def resource_providers(self):
        return list(self.items)

    delete_resource_provider = Proxy._delete


class Network(Proxy):
    def agents(self):
        return list(self.items)

    delete_agent = Proxy._delete


class Access:
    def __init__(self, log, opened=True):
        self.log, self._opened = log, opened

    def forget(self, node):
        self.log.append(f"forget {node}")

    def opened(self):
        return self._opened

    def close(self):
        self.log.append("close listeners")
        self._opened = False


class Issuer:
    def __init__(self, log):
        self.log = log

    def delete_rabbitmq_user(self, user):
        self.log.append(f"rabbitmq -{user}")

    def delete_keystone_user(self, user):
        self.log.append(f"keystone -{user}")


def _cloud(log, servers=(), running=True, opened=True):
    conn = NS(compute=Compute(log, servers, [NS(id="s1", binary="nova-compute", host="c1"),
                                             NS(id="s2", binary="nova-compute", host="node1"),
                                             NS(id="s3", binary="nova-conductor", host="c1")]),
              placement=Placement(log, "provider", [NS(id="p1", name="c1"), NS(id="p2", name="node1.example")]),
              network=Network(log, "agent", [NS(id="a1", host="c1"), NS(id="a2", host="node1"),
                                             NS(id="a3", host="node1")]))
    return ControllerCloud(conn=lambda: conn, run=lambda argv, stdin: log.append(" ".join(argv)),
                           check=lambda argv: running, issuer=Issuer(log), access=Access(log, opened),
                           join_units=("appliance-join",))


def _joined(tmp_path, name="node1"):
    registry = NodeRegistry(tmp_path / "cluster")
    _, secret = registry.invite(name, controller="c1", now=NOW, lifetime=3600)
    registry.redeem(name, secret, now=NOW, address="10.254.0.11")
    registry.mark_joined(name)
    return registry


def test_removing_a_joined_node_removes_each_of_its_parts_then_closes(tmp_path):
    log = []
    registry = _joined(tmp_path)
    enrol.remove_node("node1", registry=registry, cloud=_cloud(log), force=False, now=NOW, say=log.append)
    assert log == ["forget node1", "delete service s2", "delete provider p2", "delete agent a2", "delete agent a3",
                   "ovn-sbctl --if-exists chassis-del node1", "ovn-sbctl --if-exists destroy Chassis_Private node1",
                   "rabbitmq -node-node1", "keystone -node-node1",
                   "node node1 removed: compute service, resource provider, network agents, chassis, RabbitMQ and "
                   "Keystone user node-node1, certificate",
                   "close listeners", "systemctl disable --now appliance-join"]
    assert not registry.has_nodes()


def test_a_node_with_instances_is_kept_unless_forced(tmp_path):
    from appliance.cluster.errors import ClusterError

    log = []
    registry = _joined(tmp_path)
    servers = [NS(id="i1", name="web", compute_host="node1"), NS(id="i2", name="db", compute_host="c1"),
               NS(id="i3", name="", compute_host="node1.example")]
    with pytest.raises(ClusterError, match=r"node node1 still hosts 2 instance\(s\): i3, web"):
        enrol.remove_node("node1", registry=registry, cloud=_cloud(log, servers), force=False, now=NOW,
                          say=log.append)
    assert log == [] and registry.get("node1").state == "joined"
    enrol.remove_node("node1", registry=registry, cloud=_cloud(log, servers), force=True, now=NOW, say=log.append)
    assert not registry.has_nodes()
    # Its instances first (Nova refuses to delete a service hosting any), then its service.
    assert log[:6] == ["delete server i1", "delete server i3", "gone server i1", "gone server i3",
                       "node node1: 2 instance(s) deleted (--force)", "forget node1"], log
    assert [s.id for s in servers] == ["i2"]


def test_cancelling_an_invitation_touches_nothing_that_was_not_opened(tmp_path):
    log = []
    registry = NodeRegistry(tmp_path / "cluster")
    registry.invite("node1", controller="c1", now=NOW, lifetime=3600)
    enrol.remove_node("node1", registry=registry, cloud=_cloud(log, running=False, opened=False), force=False,
                      now=NOW, say=log.append)
    assert log == ["invitation of node node1 (valid until 2027-01-15 09:00:00 UTC) cancelled; its token is void"]
