"""OpenStack steps: Keystone, the identity resources, schema migrations, services."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import migrations
from .context import AgentContext
from .steps_dashboard import keep_switched_off
from .steps_infra import amqp_connection
from .system import enable_and_start, http_answers, run, stretched, wait_for

SERVICE_ROLES = ("admin", "service")


def keystone(ctx: AgentContext) -> None:
    """Keystone's schema, key repositories and bootstrap (admin user, region, endpoints)."""
    if not migrations.migrated_at_build(ctx.profile):
        run(["keystone-manage", "db_sync"], user="keystone")
    setups = [["keystone-manage", f"{kind}_setup", "--keystone-user", "keystone", "--keystone-group", "keystone"]
              for kind in ("fernet", "credential") if not Path(f"/etc/keystone/{kind}-keys/0").exists()]
    # The two key repositories are independent of each other and mostly Python start-up:
    # side by side they take the time of one. bootstrap reads the fernet key repository
    # ("/etc/keystone/fernet-keys/ does not exist" when it runs first), so it comes after.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(run, cmd) for cmd in setups]:
            done.result()
    # bootstrap converges: it creates what is missing and resets the admin password.
    run(["keystone-manage", "bootstrap",
         "--bootstrap-admin-url", ctx.keystone_url(admin=True) + "/",
         "--bootstrap-internal-url", ctx.keystone_url(admin=True) + "/",
         "--bootstrap-public-url", ctx.keystone_url() + "/",
         "--bootstrap-region-id", ctx.site.region],
        env={"OS_BOOTSTRAP_PASSWORD": ctx.secrets["admin_password"]})
    Path("/var/lib/keystone/keystone.db").unlink(missing_ok=True)
    enable_and_start(list(ctx.profile.service("keystone").units))
    wait_for("Keystone API", lambda: http_answers(ctx.keystone_url()), timeout=120)


# Every OpenStack call is bounded: API_TIMEOUT seconds (times patience(): seen under qemu
# TCG, Neutron took over 60 s to set a router's external gateway while its agents were
# busy) for the connection and for each read (keystoneauth's session timeout, which
# openstacksdk sets from api_timeout), so a stuck API fails the step instead of hanging
# the run. Only failures to *connect* are retried (CONNECT_RETRIES, keystoneauth's
# connect_retries): such a request never reached the server, so repeating it is safe for
# every method. Errors after the request was sent are not retried (a POST may have been
# applied); the steps converge when run again.
API_TIMEOUT = 60
CONNECT_RETRIES = 3


def connect(ctx: AgentContext, user: str = "admin", project: str = "admin"):
    import openstack

    password = ctx.secrets[f"{user}_password"]
    return openstack.connect(
        auth_url=ctx.keystone_url(admin=user == "admin"), username=user, password=password,
        project_name=project, user_domain_name="Default", project_domain_name="Default",
        region_name=ctx.site.region, identity_api_version="3", load_yaml_config=False, load_envvars=False,
        api_timeout=stretched(API_TIMEOUT), connect_retries=CONNECT_RETRIES,
    )


def _ensure_project(conn, name: str, description: str):
    return conn.identity.find_project(name, domain_id="default") or conn.identity.create_project(
        name=name, description=description, domain_id="default")


def _ensure_role(conn, name: str):
    return conn.identity.find_role(name) or conn.identity.create_role(name=name)


def _ensure_user(conn, name: str, password: str, project):
    user = conn.identity.find_user(name, domain_id="default")
    if user is None:
        return conn.identity.create_user(name=name, password=password, domain_id="default",
                                         default_project_id=project.id)
    return conn.identity.update_user(user, password=password)


def _grant(conn, project, user, role) -> None:
    conn.identity.assign_project_role_to_user(project, user, role)


def identity_resources(ctx: AgentContext) -> None:
    conn = connect(ctx)
    secrets = ctx.secrets
    service_project = _ensure_project(conn, "service", "Service Project")
    lxc_project = _ensure_project(conn, "lxc", "LXC User Project")
    lxc_user = _ensure_user(conn, "lxc", secrets["lxc_password"], lxc_project)
    for role_name in ("user", "member"):
        _grant(conn, lxc_project, lxc_user, _ensure_role(conn, role_name))
    roles = [_ensure_role(conn, name) for name in SERVICE_ROLES]
    for svc in ctx.profile.services:
        if svc.service_user:
            user = _ensure_user(conn, svc.service_user, secrets[f"{svc.service_user}_password"], service_project)
            for role in roles:
                _grant(conn, service_project, user, role)
    for endpoint in ctx.profile.endpoints():
        _ensure_catalog_entry(conn, endpoint, ctx.controller, ctx.site.region)


def _ensure_catalog_entry(conn, endpoint, host: str, region: str) -> None:
    service = next((s for s in conn.identity.services() if s.type == endpoint.type), None)
    if service is None:
        service = conn.identity.create_service(name=endpoint.name, type=endpoint.type,
                                               description=endpoint.description)
    url = endpoint.url.format(host=host)
    existing = {e.interface: e for e in conn.identity.endpoints(service_id=service.id) if e.region_id == region}
    for interface in ("public", "internal", "admin"):
        current = existing.get(interface)
        if current is None:
            conn.identity.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=region)
        elif current.url != url:
            conn.identity.update_endpoint(current, url=url)


def catalog_complete(ctx: AgentContext) -> bool:
    try:
        conn = connect(ctx)
        types = {s.type for s in conn.identity.services()}
    except Exception:
        return False
    return {e.type for e in ctx.profile.endpoints()} <= types


def schema_migrations(ctx: AgentContext) -> None:
    """Every service's schema: already done when the image was migrated at build time by
    the packages installed now; otherwise (an upgrade, a build without it) run here."""
    if migrations.migrated_at_build(ctx.profile):
        return
    migrations.migrate(ctx.profile, migrations.APPLIANCE_CONFIGS, run_as=lambda service: service)


# Started by their own steps, not with the OpenStack servers.
INFRA_SERVICES = {"host", "mariadb", "rabbitmq", "memcached", "keystone", "client", "external-network", "ovn"}


def _openstack_units(ctx: AgentContext) -> list[str]:
    """Units of the services this site runs (a switched-off dashboard's are not started, nor
    an on-demand service's: `appliance add-node` starts the join service)."""
    return [u for svc in ctx.active_profile.services if svc.name not in INFRA_SERVICES and not svc.on_demand
            for u in svc.units]


def _gated(ctx: AgentContext) -> set[str]:
    return set(ctx.profile.rpc_gate.units) if ctx.profile.rpc_gate else set()


def start_servers(ctx: AgentContext) -> None:
    """Every OpenStack unit but the gated ones; they load while the next steps run."""
    keep_switched_off(ctx)
    gated = _gated(ctx)
    enable_and_start([u for u in _openstack_units(ctx) if u not in gated])


def start_gated(ctx: AgentContext) -> None:
    """The units of the profile's RPC gate, once their servers consume the gate's queues."""
    gated_units = _gated(ctx)
    gated = [u for u in _openstack_units(ctx) if u in gated_units]
    if not gated:
        return
    queues = ctx.profile.rpc_gate.queues
    wait_for(f"RPC servers consuming {', '.join(queues)}", lambda: queues_consumed(ctx, queues), timeout=300, interval=1)
    enable_and_start(gated)


def apis_answer(ctx: AgentContext) -> None:
    for endpoint in ctx.profile.endpoints():
        url = endpoint.url.format(host=ctx.controller)
        wait_for(f"{endpoint.name} API at {url}", lambda: http_answers(url), timeout=300, interval=0.5)


def queues_consumed(ctx: AgentContext, queues: tuple[str, ...]) -> bool:
    """True once every queue exists and has a consumer: a passive queue.declare answers with
    the consumer count (AMQP 0-9-1, queue.declare-ok). Asked over AMQP as the OpenStack user,
    not with rabbitmqctl: each rabbitmqctl call starts an Erlang VM, seconds of CPU on a
    small host and a minute under emulation, taken from the servers this waits for."""
    import amqp

    with amqp_connection(ctx) as conn:
        for queue in queues:
            channel = conn.channel()
            try:
                declared = channel.queue_declare(queue=queue, passive=True)
            except amqp.exceptions.NotFound:  # not declared yet: its server has not started
                return False
            if declared.consumer_count == 0:
                return False
            channel.close()
    return True


def alive_agents(conn) -> set[str]:
    """The binaries of the Neutron agents the API reports alive."""
    return {a.binary for a in conn.network.agents() if a.is_alive}


def network_agents_alive(ctx: AgentContext, needed: tuple[str, ...]) -> None:
    """Wait until Neutron reports alive the agents the tenant network needs: those of
    ``needed`` that the profile runs (the backend's AGENTS_BEFORE_NETWORKS: with Linux
    bridge its own agent and the DHCP agent, with OVN none)."""
    wanted = set(needed) & set(ctx.profile.network.agents)
    if not wanted:
        return
    conn = connect(ctx)
    wait_for(f"Neutron agents ({', '.join(sorted(wanted))})",
             lambda: wanted <= alive_agents(conn), timeout=300, interval=1)


def services_report_up(ctx: AgentContext) -> None:
    conn = connect(ctx)
    hostname = ctx.controller
    wanted_compute = {"nova-conductor", "nova-scheduler", "nova-compute"}
    wanted_agents = set(ctx.profile.network.agents)

    def compute_up() -> bool:
        up = {s.binary for s in conn.compute.services() if s.state == "up" and s.status == "enabled"}
        return wanted_compute <= up

    wait_for("Nova services (conductor, scheduler, compute)", compute_up, timeout=300, interval=2)
    wait_for(f"Neutron agents ({', '.join(sorted(wanted_agents))})", lambda: wanted_agents <= alive_agents(conn),
             timeout=300, interval=2)
    run(["nova-manage", "cell_v2", "discover_hosts", "--verbose"], user="nova")

    def hypervisor_known() -> bool:
        return any(h.name.split(".")[0] == hostname for h in conn.compute.hypervisors())

    wait_for(f"hypervisor {hostname}", hypervisor_known, timeout=120, interval=2)

