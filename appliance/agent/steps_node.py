"""A compute node's first-boot steps: what a machine that joined a controller's cloud runs.

Which of them a machine runs, and in which order, is its role's data (a profile's
``roles.<role>.steps``, carried as ``Profile.steps``; agent/steps.py picks them by name),
as with the controller's steps. Everything here works from the join bundle the node keeps
(cluster/node.py: node.yaml and its TLS files under /etc/appliance) and the node's own
facts; a node holds no secret of the controller's and never asks its databases.

Sources: ovn-controller(8) for the chassis' ``external_ids``, and ovn-controller.c's
``update_ssl_config``, which takes its key, certificate and CA from the local Open_vSwitch
database's SSL table (``ovs-vsctl set-ssl``, ovs-vsctl(8)); Placement's policy reference
(``admin_or_service_api``: a user with role ``service`` lists resource providers) and Nova's
(``os-services`` is an admin's), for what a node's own user can see of its nova-compute.
"""

from __future__ import annotations

import grp
import time

from ..cluster.node import NodeFiles, share_with_agent
from ..cluster.nodeconf import NodeConfig, chassis_settings, chassis_ssl
from ..errors import ApplianceError
from ..render import render_files
from .context import AgentContext
from .netbackend import ovn, tunnel
from .runner import Step
from .steps_host import write_rendered
from .steps_openstack import API_TIMEOUT, CONNECT_RETRIES, INFRA_SERVICES
from .system import enable_and_start, log, run, stretched, wait_for

# The OVN metadata agent's group (Debian's neutron-common makes user and group neutron and
# runs the agent as that user): it reads the node's TLS copies through it.
AGENT_GROUP = "neutron"
# Project of the node's Keystone user (the join gives it role "service" there).
SERVICE_PROJECT = "service"
# Chassis settings a controller's chassis has and a node's must not: a gateway's (SNAT and
# floating IPs stay on the controller) and a mapping to an external bridge it has not.
NOT_ON_A_NODE = ("ovn-cms-options", "ovn-bridge-mappings")


def node_files(ctx: AgentContext) -> NodeFiles:
    return NodeFiles(config_dir=ctx.paths.config_dir)


def node_config(ctx: AgentContext) -> NodeConfig:
    """What the join left in node.yaml; ApplianceError (one line, never a value) otherwise."""
    return NodeConfig.load(node_files(ctx))


def join_bundle(ctx: AgentContext, *, group_of=lambda name: grp.getgrnam(name).gr_gid,
                share=share_with_agent, redeem=None) -> None:
    """The join's bundle is whole (node.yaml and the node's key, certificate and CA), and the
    OVN metadata agent has its group-readable copies of the TLS files (node.share_with_agent).
    With no bundle yet and a site config that joins (``join:``, an unattended first boot),
    its token is redeemed here first (``redeem_site_token``; `appliance join` redeems before
    the steps run)."""
    files = node_files(ctx)
    if not files.credentials.exists() and ctx.site.join is not None:
        (redeem or redeem_site_token)(ctx, files)
    node = NodeConfig.load(files)
    for path in (files.key, files.certificate, files.ca):
        if not path.is_file():
            raise ApplianceError(f"{path} is missing; the join writes it (appliance join with a new token from "
                                 f"appliance add-node {node.node} on {node.controller})")
    share(files, group_of(AGENT_GROUP))
    log(f"node {node.node} of {node.controller} ({node.controller_ip}); TLS copies for the metadata agent in "
        f"{files.agent_dir}")


def redeem_site_token(ctx: AgentContext, files: NodeFiles) -> None:
    """Join with the site config's token (checked for expiry first) from this host's overlay
    address; the node's key and bundle land in ``files`` (joinclient.join_controller).
    ClusterError of the controller's refusal, one line, never the token."""
    from ..cluster.joinclient import join_controller
    from ..cluster.token import check_not_expired
    from ..site_checks import join_token

    token = join_token(ctx.site, str(ctx.paths.site), ctx.paths.site.parent)
    check_not_expired(token, time.time())
    join_controller(token, files=files, overlay_ip=ctx.facts.overlay_ip)
    log(f"joined the cloud of {token.host} as node {token.name}")


def node_configs(ctx: AgentContext) -> None:
    """The role's files, rendered from the bundle and the facts alone (no secrets file)."""
    write_rendered(render_files(ctx.profile, ctx.site, ctx.facts, {}, node=node_config(ctx)))


def chassis_commands(settings: dict[str, str], ssl: tuple[str, str, str]) -> list[list[str]]:
    """The ``ovs-vsctl`` commands that make this node a chassis: OVSDB's loopback manager
    (os-vif's and the metadata agent's way in, as on the controller), the TLS files
    ovn-controller presents to the southbound database, its ``external_ids``, and none of a
    gateway's. ``--no-wait``: ovs-vswitchd starts after them."""
    return [
        ["ovs-vsctl", "--no-wait", "set-manager", ovn.OVSDB_MANAGER],
        ["ovs-vsctl", "--no-wait", "set-ssl", *ssl],
        ["ovs-vsctl", "--no-wait", "set", "open_vswitch", ".",
         *(f"external_ids:{key}={value}" for key, value in settings.items())],
        # Removing a key that is not there is no error: the step converges either way.
        ["ovs-vsctl", "--no-wait", "remove", "open_vswitch", ".", "external_ids", *NOT_ON_A_NODE],
    ]


def node_chassis(ctx: AgentContext, *, command=run, start=enable_and_start, place_endpoint=None) -> None:
    """OVSDB, this chassis' settings and TLS, then the switch and ovn-controller. No OVN
    central database or northd: those are the controller's."""
    node, facts = node_config(ctx), ctx.facts
    place_endpoint = place_endpoint or tunnel.place_endpoint
    settings = chassis_settings(node, overlay_ip=facts.overlay_ip, datapath=facts.datapath)
    start(ovn.DATABASE_UNITS)
    for argv in chassis_commands(settings, chassis_ssl(node)):
        command(argv)
    start(ovn.SWITCH_UNITS)
    place_endpoint(datapath=facts.datapath, overlay_ip=facts.overlay_ip, management_ip=facts.management_ip,
                   at_boot=True)
    start(ovn.CONTROLLER_UNITS)
    log(f"chassis {node.node}: southbound {node.southbound}, geneve on {facts.overlay_ip}")


def node_units(ctx: AgentContext) -> list[str]:
    """The role's units the chassis step does not start (libvirt, nova-compute, the OVN
    metadata agent): those of every service but the infrastructure ones."""
    return [u for svc in ctx.active_profile.services if svc.name not in INFRA_SERVICES and not svc.on_demand
            for u in svc.units]


def node_services(ctx: AgentContext, *, start=enable_and_start) -> None:
    """Start them all at once. No RPC gate: the controller's nova-conductor consumed its
    queue long before a node could join (its first boot had finished)."""
    start(node_units(ctx))


def node_connect(node: NodeConfig):
    """openstacksdk as the node's own user (role "service" in project "service"), bounded
    like every API call of the agent (steps_openstack.connect)."""
    import openstack

    return openstack.connect(
        auth_url=node.keystone_url, username=node.keystone_user, password=node.keystone_password,
        project_name=SERVICE_PROJECT, user_domain_name="Default", project_domain_name="Default",
        region_name=node.region, identity_api_version="3", load_yaml_config=False, load_envvars=False,
        api_timeout=stretched(API_TIMEOUT), connect_retries=CONNECT_RETRIES)


def reported(providers: list[str], node: str) -> bool:
    """Whether Placement lists a resource provider of host ``node`` (its name, or its name
    with a domain: the libvirt driver names it after the host name)."""
    return any(name.split(".")[0] == node for name in providers)


def node_reports_up(ctx: AgentContext, *, connect=node_connect) -> None:
    """Wait until this node's nova-compute has reported itself to the cloud. Nova's service
    list is an admin's, which a node is not; its resource provider in Placement is what a
    service user sees, and nova-compute makes it only once it reached nova-conductor over
    RPC (its compute node record) and Placement with the node's user: the node's side of
    the join works. The controller's side (its service up, the host mapped into the cell)
    is the controller's to wait for."""
    node = node_config(ctx)
    conn = connect(node)
    wait_for(f"nova-compute of {node.node} in Placement",
             lambda: reported([p.name for p in conn.placement.resource_providers()], node.node),
             timeout=300, interval=2)


def node_steps(ctx: AgentContext) -> list[Step]:
    """The steps only a node runs. A role names them with the controller's it shares
    (``host``, ``instance-ids``: agent/steps.py); each waits for what it names in ``after``,
    else for the step its role lists before it."""
    def bind(func):
        return lambda: func(ctx)

    return [
        Step("bundle", "the join bundle, and the metadata agent's copies of its TLS files", bind(join_bundle)),
        Step("node-configs", "render the node's files from its join bundle", bind(node_configs)),
        Step("node-chassis", "Open vSwitch and ovn-controller: this chassis, over TLS", bind(node_chassis),
             after=("node-configs",)),
        Step("node-services", "start libvirt, nova-compute and the OVN metadata agent", bind(node_services),
             after=("node-chassis", "instance-ids")),
        Step("node-up", "wait until this node's nova-compute reports to the cloud", bind(node_reports_up)),
    ]
