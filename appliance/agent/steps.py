"""The first-boot steps, in an order that works one by one. Each is idempotent; the journal
skips finished ones. A step's ``after`` names what it really waits for, so the daemons that
start slowly (Open vSwitch and OVN, RabbitMQ, MariaDB then Keystone) start side by side, and
the API calls after the servers run beside the wait for nova-compute and the agents.

Which steps a machine runs is its role's data: a controller runs the whole list below; a
role of the profile (``roles.<role>.steps``, carried as ``Profile.steps`` by
roles.profile_for_role) names its steps, in its order, from this list and steps_node's."""

from __future__ import annotations

from ..errors import ApplianceError
from . import steps_cloud as cloud
from . import steps_dashboard as dashboard
from . import steps_host as host
from . import steps_infra as infra
from . import steps_node as node
from . import steps_openstack as openstack
from .context import AgentContext
from .netbackend import backend_of
from .runner import EVERY_EARLIER, Step


def first_boot_steps(ctx: AgentContext) -> list[Step]:
    """The steps of this machine's role (``ctx.profile.steps``), or a controller's.
    ApplianceError naming a step the role lists and no list here has."""
    steps = controller_steps(ctx)
    chosen = ctx.profile.steps
    if chosen is None:
        return steps
    catalogue = {step.name: step for step in [*steps, *node.node_steps(ctx)]}
    unknown = [name for name in chosen if name not in catalogue]
    if unknown:
        raise ApplianceError(f"profile {ctx.profile.name}: no first-boot step {unknown[0]!r} (a role names steps "
                             f"of: {', '.join(catalogue)})")
    return [catalogue[name] for name in chosen]


def controller_steps(ctx: AgentContext) -> list[Step]:
    def bind(func):
        return lambda: func(ctx)

    backend = backend_of(ctx.profile)
    return [
        Step("host", "site config, host name and management address", bind(host.host_identity),
             still_done=lambda: ctx.paths.facts.exists()),
        Step("secrets", "generate this appliance's secrets", bind(host.generate_secrets),
             still_done=lambda: ctx.paths.secrets.exists()),
        # Before Apache first starts (with the servers): it refuses to start without them.
        Step("certificates", "the appliance CA and the dashboard's HTTPS certificate", bind(dashboard.certificates),
             still_done=bind(dashboard.certificates_done)),
        Step("configs", "render the configuration files", bind(host.write_configs)),
        *backend.chassis_steps(ctx),
        # Before the agents start: the Linux bridge agent exits if a mapped bridge is missing.
        Step("external-network", "external network, host side (bridge, forwarding, NAT)",
             bind(host.external_network)),
        # It reads /etc/passwd and /etc/group and writes /etc/subuid and /etc/subgid, which
        # no rendered file is: it needs the host step only (a node's role names it too).
        Step("instance-ids", "reserve the instances' uid/gid range", bind(host.reserve_instance_ids),
             after=("host",)),
        Step("mariadb", "secure MariaDB", bind(infra.secure_mariadb), after=("configs",)),
        Step("databases", "service databases and users", bind(infra.service_databases),
             still_done=bind(infra.databases_exist)),
        Step("rabbitmq", "epmd on its declared address, RabbitMQ user for OpenStack", bind(infra.rabbitmq),
             after=("configs",)),
        Step("memcached", "memcached on its declared address", bind(infra.memcached), after=("configs",)),
        Step("keystone", "Keystone schema, keys and bootstrap", bind(openstack.keystone),
             after=("databases", "memcached")),
        # Before any server starts: nova-conductor and nova-scheduler exit at start-up when
        # their service user cannot authenticate yet.
        Step("identity", "projects, users, roles, services and endpoints", bind(openstack.identity_resources),
             still_done=bind(openstack.catalog_complete)),
        Step("migrations", "Glance, Placement, Nova and Neutron schemas", bind(openstack.schema_migrations),
             after=("databases",)),
        # The servers load (tens of seconds of CPU) while the next steps wait and work.
        Step("services", "start the OpenStack servers", bind(openstack.start_servers), after=EVERY_EARLIER),
        Step("agents", "start nova-compute and the agents once their RPC servers listen",
             bind(openstack.start_gated), after=("services",)),
        Step("apis", "wait for every API to answer", bind(openstack.apis_answer), after=("services",)),
        Step("agents-alive", "wait until Neutron reports alive the agents networks need",
             lambda: openstack.network_agents_alive(ctx, backend.AGENTS_BEFORE_NETWORKS), after=("agents", "apis")),
        Step("image", "upload the LXC root filesystem image", bind(cloud.upload_image), after=("apis",)),
        # One API step at a time beside the upload: in a 2-vCPU TCG guest, four steps
        # authenticating at once once found Keystone closing their connections unanswered.
        Step("flavors", "flavors", bind(cloud.flavors), after=("apis",)),
        Step("quotas", "the tenant project's quotas, sized from this host", bind(cloud.tenant_quotas)),
        Step("keypair", "keypair for admin and lxc", bind(cloud.keypairs)),
        Step("security-rules", "ICMP and SSH in the default security groups", bind(cloud.security_rules)),
        Step("network", "tenant network, subnet and router", bind(cloud.tenant_network),
             still_done=bind(cloud.network_exists), after=("security-rules", "agents-alive")),
        Step("external", "external network, its subnet and the router's gateway", bind(cloud.external_network)),
        Step("services-up", "wait for services and agents, discover the compute host",
             bind(openstack.services_report_up), after=EVERY_EARLIER),
        *backend.final_steps(ctx),
    ]
