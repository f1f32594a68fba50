"""enrol.CloudOps on the running cloud: what removing a node asks of the controller
(docs/scale-out.md, "Removal"), each call idempotent (gone already is no error).

- Nova, as the admin (openstacksdk): the instances whose compute host is the node, every
  project (deleted first when forced); its nova-compute service (Nova then drops its compute node and its resource
  provider, and refuses while instances live there: remove-node asks first).
- Placement: a provider of the node's name left behind.
- Neutron: the node's agents (its OVN controller and metadata agents).
- OVN southbound, with ``ovn-sbctl``: the node's ``Chassis`` (with its encapsulations) and
  ``Chassis_Private`` rows, named by the node's name (its ``system-id``).
- The node's RabbitMQ and Keystone users (issuer.ControllerIssuer), its addresses on the
  allow-list and, once no node is left, the node-facing listeners (listeners.ControllerAccess);
  the join service's unit once no invitation can be redeemed.
"""

from __future__ import annotations

from typing import Callable

from ..agent.system import stretched
from .allowlist import Check, Run
from .issuer import ControllerIssuer

SBCTL = "ovn-sbctl"
# Seconds (before the site's timeouts.scale) for a forced removal's instances to be deleted:
# Nova deletes on the node, or in its database alone when the node's service is down.
DELETE_WAIT = 300


def _host_is(name: str, host: str | None) -> bool:
    """Nova and Placement may name a host by its FQDN; the node's name is its first label."""
    return bool(host) and (host == name or host.split(".")[0] == name)


class ControllerCloud:
    """``conn``: called when the cloud is first needed, an openstacksdk connection as the
    admin; ``run``: commands on the controller (ovn-sbctl, systemctl)."""

    def __init__(self, *, conn: Callable[[], object], run: Run, check: Check, issuer: ControllerIssuer, access,
                 join_units: tuple[str, ...]):
        self._conn, self._connected = conn, None
        self.run, self.check, self.issuer, self.access, self.join_units = run, check, issuer, access, join_units

    @property
    def conn(self):
        if self._connected is None:
            self._connected = self._conn()
        return self._connected

    def instances_on(self, host: str) -> list[str]:
        return sorted(s.name or s.id for s in self.conn.compute.servers(all_projects=True)
                      if _host_is(host, getattr(s, "compute_host", None)))

    def delete_instances_on(self, host: str) -> None:
        servers = [s for s in self.conn.compute.servers(all_projects=True)
                   if _host_is(host, getattr(s, "compute_host", None))]
        for server in servers:
            self.conn.compute.delete_server(server, ignore_missing=True)
        for server in servers:
            self.conn.compute.wait_for_delete(server, interval=2, wait=stretched(DELETE_WAIT))

    def delete_compute_service(self, host: str) -> None:
        for service in list(self.conn.compute.services()):
            if service.binary == "nova-compute" and _host_is(host, service.host):
                self.conn.compute.delete_service(service, ignore_missing=True)

    def delete_resource_provider(self, host: str) -> None:
        for provider in list(self.conn.placement.resource_providers()):
            if _host_is(host, provider.name):
                self.conn.placement.delete_resource_provider(provider, ignore_missing=True)

    def delete_network_agents(self, host: str) -> None:
        for agent in list(self.conn.network.agents()):
            if _host_is(host, agent.host):
                self.conn.network.delete_agent(agent, ignore_missing=True)

    def delete_chassis(self, host: str) -> None:
        self.run([SBCTL, "--if-exists", "chassis-del", host], None)
        self.run([SBCTL, "--if-exists", "destroy", "Chassis_Private", host], None)

    def delete_rabbitmq_user(self, user: str) -> None:
        self.issuer.delete_rabbitmq_user(user)

    def delete_keystone_user(self, user: str) -> None:
        self.issuer.delete_keystone_user(user)

    def forget_certificate(self, host: str) -> None:
        self.access.forget(host)

    def close_node_listeners(self) -> None:
        """Only where a join opened them: cancelling an invitation touches nothing else."""
        if self.access.opened():
            self.access.close()

    def stop_join_service(self) -> None:
        """Stopped where it runs, and no longer started at boot (it also does both by itself
        once nothing is left to do); nothing where neither holds."""
        if any(self.check(["systemctl", verb, "--quiet", unit]) for unit in self.join_units
               for verb in ("is-active", "is-enabled")):
            self.run(["systemctl", "disable", "--now", *self.join_units], None)
