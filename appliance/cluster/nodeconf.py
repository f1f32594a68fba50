"""A compute node's own configuration: made from the bundle it received (bundle.py, kept by
node.py) and its own facts, nothing else of the controller's.

``NodeConfig`` is what the compute role's node templates render from (the template
context's ``node``; render.render_files): ``etc/nova/nova.conf.node.j2`` for nova-compute and
``etc/neutron/neutron_ovn_metadata_agent.ini.node.j2`` for the OVN metadata agent, both
declared as the role's ``templates`` in the profile. ``chassis_settings`` and ``chassis_ssl``
are what the node's first boot sets in Open vSwitch with ``ovs-vsctl`` for ovn-controller
(data, not a file: the controller computes its own chassis settings the same way,
agent/netbackend/ovn.py).

What the node dials, and how (docs/scale-out.md, "Listeners"): RabbitMQ, the southbound
database and the metadata API at the controller's management address from the token
(``controller_ip``, which the bundle must repeat), so they work before /etc/hosts names the
controller; Keystone at the bundle's ``keystone_url``, and the services Keystone's catalog
names, by the controller's host name, as the controller itself does.

Errors: ApplianceError (one line naming the file, never a value) for a node.yaml that is
missing or not what node.write_bundle writes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import yaml

from ..errors import ApplianceError
from .bundle import NodeBundle
from .node import NodeFiles

# The controller's ports a node dials, as trixie-epoxy declares them (services rabbitmq, ovn
# and nova; tests/unit/test_nodeconf.py holds them to the profile): AMQP, the OVN southbound
# database (TLS for nodes), Nova's metadata API.
AMQP_PORT = 5672
SOUTHBOUND_PORT = 6642
METADATA_PORT = 8775
# OVN's tunnel type between chassis (ovn-controller(8), external_ids:ovn-encap-type); the
# controller's chassis uses the same.
ENCAP_TYPE = "geneve"
# The integration bridge ovn-controller manages (its default, named as the controller does).
INTEGRATION_BRIDGE = "br-int"
# The bundle's fields a node keeps in node.yaml: all but the certificates, which are files.
KEPT = tuple(f.name for f in fields(NodeBundle) if not f.name.endswith("_pem"))
SECRETS = NodeBundle.SECRETS


@dataclass(frozen=True)
class NodeConfig:
    """The bundle's names, addresses and secrets (``version`` aside), and where the node's
    TLS files are (absolute paths, as strings for the templates): ``key_file`` and the
    certificates for ovn-controller (root), ``agent_*`` the OVN metadata agent's copies
    (node.share_with_agent: it runs as neutron)."""

    node: str
    controller: str
    controller_ip: str
    region: str
    keystone_url: str
    rabbitmq_user: str
    rabbitmq_password: str
    keystone_user: str
    keystone_password: str
    metadata_secret: str
    key_file: str
    certificate_file: str
    ca_file: str
    agent_key_file: str
    agent_certificate_file: str
    agent_ca_file: str

    def __repr__(self) -> str:
        return f"NodeConfig(node={self.node!r}, controller={self.controller!r}, controller_ip={self.controller_ip!r})"

    @classmethod
    def from_bundle(cls, bundle: NodeBundle, files: NodeFiles = NodeFiles()) -> "NodeConfig":
        return cls(**{name: getattr(bundle, name) for name in KEPT if name != "version"}, **tls_files(files))

    @classmethod
    def load(cls, files: NodeFiles = NodeFiles()) -> "NodeConfig":
        """What node.write_bundle kept in ``files.credentials``."""
        where = files.credentials
        try:
            data = yaml.safe_load(where.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ApplianceError(f"{where}: {exc.strerror or 'not readable'}; a node has it once it joined "
                                 "(appliance join)") from None
        except yaml.YAMLError:
            raise ApplianceError(f"{where}: not YAML") from None
        if not isinstance(data, dict) or sorted(map(str, data)) != sorted(KEPT):
            raise ApplianceError(f"{where}: expected exactly the fields {', '.join(KEPT)}")
        if not all(isinstance(data[name], str) for name in KEPT if name != "version"):
            raise ApplianceError(f"{where}: every field but version is text")
        return cls(**{name: data[name] for name in KEPT if name != "version"}, **tls_files(files))

    @property
    def transport_url(self) -> str:
        """oslo.messaging's URL for the node's own RabbitMQ user (the default vhost ``/``).
        The bundle's passwords are of URL-safe characters (bundle._SECRET), so unquoted."""
        return f"rabbit://{self.rabbitmq_user}:{self.rabbitmq_password}@{self.controller_ip}:{AMQP_PORT}/"

    @property
    def southbound(self) -> str:
        """The OVN southbound database over TLS, as ovn-controller and Neutron name a remote."""
        return f"ssl:{self.controller_ip}:{SOUTHBOUND_PORT}"

    @property
    def metadata_port(self) -> int:
        return METADATA_PORT


def tls_files(files: NodeFiles) -> dict[str, str]:
    """NodeConfig's TLS paths for ``files``."""
    return {"key_file": str(files.key), "certificate_file": str(files.certificate), "ca_file": str(files.ca),
            "agent_key_file": str(files.agent_key), "agent_certificate_file": str(files.agent_certificate),
            "agent_ca_file": str(files.agent_ca)}


def preview(name: str, controller_ip: str, *, controller: str = "controller", region: str = "RegionOne",
            files: NodeFiles = NodeFiles()) -> NodeConfig:
    """A node's configuration with obvious placeholders for its secrets, for `invoke render`
    of a site that joins (the real ones exist only once the controller answered the join)."""
    placeholder = {name_: f"PLACEHOLDER-node-{name_}" for name_ in SECRETS}
    user = f"node-{name}"
    return NodeConfig(node=name, controller=controller, controller_ip=controller_ip, region=region,
                      keystone_url=f"http://{controller}:5000/v3", rabbitmq_user=user, keystone_user=user,
                      **tls_files(files), **placeholder)


def chassis_settings(node: NodeConfig, *, overlay_ip: str, datapath: str) -> dict[str, str]:
    """The Open_vSwitch table's ``external_ids`` of this node's chassis (ovn-controller(8)):
    named after the node (the name its certificate carries, which OVN's RBAC compares with
    the chassis it writes; Neutron binds a port to the chassis whose hostname is Nova's
    host), the southbound database over TLS, Geneve from the node's overlay address. Not a
    gateway (no ``ovn-cms-options``: SNAT and floating IPs stay on the controller) and no
    bridge mappings (a node has no external network). ``overlay_ip`` and ``datapath`` are the
    node's facts (render.HostFacts: the Geneve endpoint, and "system" or "netdev" once first
    boot chose one, "" before, when no datapath type is set)."""
    settings = {
        "system-id": node.node,
        "hostname": node.node,
        "ovn-remote": node.southbound,
        "ovn-encap-type": ENCAP_TYPE,
        "ovn-encap-ip": overlay_ip,
        "ovn-bridge": INTEGRATION_BRIDGE,
    }
    if datapath:
        settings["ovn-bridge-datapath-type"] = datapath
    return settings


def chassis_ssl(node: NodeConfig) -> tuple[str, str, str]:
    """(private key, certificate, CA certificate) for ``ovs-vsctl set-ssl``: what ovn-controller
    presents to the southbound database and checks it against."""
    return node.key_file, node.certificate_file, node.ca_file
