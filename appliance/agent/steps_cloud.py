"""Cloud resources: the LXC image, flavors, keypair, security rules, network and router."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import ApplianceError
from ..profiles import TenantQuota
from ..site_checks import read_public_key_file
from .context import AgentContext
from .steps_openstack import connect
from .system import log, run, stretched

# The ML2 flat physical network the external network lives on (see linuxbridge_agent.ini).
EXTERNAL_PHYSNET = "external"
IMAGE_PROPERTIES = {"hypervisor_type": "lxc", "os_command_line": "/sbin/init"}
RULES = ({"protocol": "icmp"}, {"protocol": "tcp", "port_range_min": 22, "port_range_max": 22})


def staged_image(ctx: AgentContext) -> Path:
    for name in ("lxc-rootfs.img.zst", "lxc-rootfs.img"):
        path = ctx.paths.images / name
        if path.is_file():
            return path
    raise ApplianceError(f"no LXC rootfs image staged in {ctx.paths.images}")


def upload_image(ctx: AgentContext) -> None:
    conn = connect(ctx)
    name = ctx.site.image_name
    for image in conn.image.images(name=name):
        if image.status == "active":
            return
        # A half-uploaded image from an interrupted run: start over.
        log(f"deleting image {image.id} left in state {image.status}")
        conn.image.delete_image(image)
    source = staged_image(ctx)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        raw = source
        if source.suffix == ".zst":
            raw = Path(tmp) / "lxc-rootfs.img"
            run(["zstd", "-q", "-d", str(source), "-o", str(raw)])
        conn.image.create_image(name=name, filename=str(raw), disk_format="raw", container_format="bare",
                                visibility="public", wait=True, timeout=stretched(600), **IMAGE_PROPERTIES)


def flavors(ctx: AgentContext) -> None:
    conn = connect(ctx)
    for flavor in ctx.site.flavors:
        if conn.compute.find_flavor(flavor.name, ignore_missing=True):
            continue
        flavor_id = None if str(flavor.id) == "auto" else str(flavor.id)
        conn.compute.create_flavor(name=flavor.name, id=flavor_id, vcpus=flavor.vcpus, ram=flavor.ram_mb,
                                   disk=flavor.disk_gb, is_public=True)


def public_key(ctx: AgentContext) -> str:
    site = ctx.site
    if site.ssh_public_key:
        return site.ssh_public_key.strip()
    if site.ssh_public_key_file:
        return read_public_key_file(site, str(ctx.paths.site), ctx.paths.site.parent)
    private = ctx.paths.private_key
    if not private.exists():
        private.parent.mkdir(parents=True, exist_ok=True)
        private.with_suffix(".pub").unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{site.keypair_name}@appliance", "-f", str(private)])
    return private.with_suffix(".pub").read_text(encoding="utf-8").strip()


def keypairs(ctx: AgentContext) -> None:
    """The keypair belongs to a user: create it for admin (as the reference did) and lxc."""
    key = public_key(ctx)
    for user, project in (("admin", "admin"), ("lxc", "lxc")):
        conn = connect(ctx, user, project)
        existing = conn.compute.find_keypair(ctx.site.keypair_name, ignore_missing=True)
        if existing and existing.public_key.strip() == key:
            continue
        if existing:
            conn.compute.delete_keypair(existing)
        conn.compute.create_keypair(name=ctx.site.keypair_name, public_key=key)


def security_rules(ctx: AgentContext) -> None:
    for user, project in (("admin", "admin"), ("lxc", "lxc")):
        conn = connect(ctx, user, project)
        project_id = conn.current_project_id
        # Listing creates the project's default group if it does not exist yet.
        groups = list(conn.network.security_groups(name="default", project_id=project_id))
        if not groups:
            raise ApplianceError(f"project {project} has no default security group")
        group = groups[0]
        have = {(r.protocol, r.port_range_min, r.port_range_max) for r in conn.network.security_group_rules(
            security_group_id=group.id, direction="ingress", ether_type="IPv4")}
        for rule in RULES:
            key = (rule["protocol"], rule.get("port_range_min"), rule.get("port_range_max"))
            if key not in have:
                conn.network.create_security_group_rule(security_group_id=group.id, direction="ingress",
                                                        ether_type="IPv4", remote_ip_prefix="0.0.0.0/0", **rule)


def tenant_network(ctx: AgentContext) -> None:
    """The reference's `nat` network: VXLAN, shared so the lxc project can use it."""
    site = ctx.site
    net_cfg = site.network
    admin = connect(ctx)
    network = admin.network.find_network(net_cfg.name)
    # Without an external network the reference's layout: `nat` itself is marked external.
    external = not site.external.enabled
    if network is None:
        network = admin.network.create_network(name=net_cfg.name, is_shared=True, is_router_external=external)
    elif network.is_router_external != external:
        network = admin.network.update_network(network, is_router_external=external)
    subnet = admin.network.find_subnet(net_cfg.name, network_id=network.id)
    if subnet is None:
        pool = site.allocation_pool()
        subnet = admin.network.create_subnet(
            name=net_cfg.name, network_id=network.id, ip_version=4, cidr=net_cfg.cidr, gateway_ip=site.gateway(),
            dns_nameservers=list(net_cfg.dns_servers), allocation_pools=[{"start": pool.start, "end": pool.end}],
            is_dhcp_enabled=True)
    lxc = connect(ctx, "lxc", "lxc")
    router = lxc.network.find_router(net_cfg.router)
    if router is None:
        router = lxc.network.create_router(name=net_cfg.router)
    ports = admin.network.ports(device_id=router.id, network_id=network.id)
    if not any(ip.get("subnet_id") == subnet.id for port in ports for ip in port.fixed_ips):
        admin.network.add_interface_to_router(router, subnet_id=subnet.id)


def network_exists(ctx: AgentContext) -> bool:
    try:
        return connect(ctx).network.find_network(ctx.site.network.name) is not None
    except Exception:
        return False


def external_network(ctx: AgentContext) -> None:
    """The external network floating IPs come from: flat on the physical network
    ``external`` (the host's bridge, or the LAN interface), no DHCP, a subnet whose pool is
    the floating range; and the tenant router's gateway on it, with SNAT."""
    ext = ctx.site.external
    if not ext.enabled:
        return
    admin = connect(ctx)
    network = admin.network.find_network(ext.name)
    if network is None:
        network = admin.network.create_network(
            name=ext.name, is_router_external=True, is_shared=False,
            provider_network_type="flat", provider_physical_network=EXTERNAL_PHYSNET)
    subnet = admin.network.find_subnet(ext.name, network_id=network.id)
    if subnet is None:
        pool = ext.floating_pool()
        subnet = admin.network.create_subnet(
            name=ext.name, network_id=network.id, ip_version=4, cidr=ext.cidr, gateway_ip=ext.gateway_ip(),
            allocation_pools=[{"start": pool.start, "end": pool.end}], is_dhcp_enabled=False)
    lxc = connect(ctx, "lxc", "lxc")
    router = lxc.network.find_router(ctx.site.network.router)
    if router is None:
        raise ApplianceError(f"router {ctx.site.network.router} is missing (the network step makes it)")
    gateway = router.external_gateway_info or {}
    if gateway.get("network_id") != network.id:
        lxc.network.update_router(router, external_gateway_info={"network_id": network.id})


def host_size(meminfo: Path = Path("/proc/meminfo")) -> tuple[int, int]:
    """(RAM in MB from MemTotal, CPUs this process may run on)."""
    import os

    for line in meminfo.read_text(encoding="ascii").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024, len(os.sched_getaffinity(0))
    raise ApplianceError(f"{meminfo}: no MemTotal line")


def quota_for_host(quota: TenantQuota, ram_mb: int, cpus: int) -> dict[str, int]:
    """Nova quota values {instances, cores, ram (MB)} for a host of ``ram_mb`` and ``cpus``.
    At least ``quota.min_ram_mb`` of RAM and one core on any host."""
    ram = max(quota.min_ram_mb, (ram_mb - quota.reserved_ram_mb) // 256 * 256)
    cores = max(1, cpus * quota.vcpus_per_cpu)
    return {"instances": cores, "cores": cores, "ram": ram}


def tenant_quotas(ctx: AgentContext) -> None:
    """Set the tenant project's quotas from the host's size, each only while it still has
    Nova's default value: a quota the operator (or the bench) set stays as it is."""
    quota = ctx.profile.tenant_quota
    if quota is None:
        return
    wanted = quota_for_host(quota, *host_size())
    conn = connect(ctx)
    project = conn.identity.find_project(quota.project, domain_id="default")
    if project is None:
        raise ApplianceError(f"profile tenant_quota.project: no project {quota.project!r}")
    defaults = conn.compute.get(f"/os-quota-sets/{project.id}/defaults").json()["quota_set"]
    current = conn.compute.get(f"/os-quota-sets/{project.id}").json()["quota_set"]
    change = {k: v for k, v in wanted.items() if current[k] != v and current[k] == defaults[k]}
    if change:
        conn.set_compute_quotas(project.id, **change)
        log(f"project {quota.project}: quotas {change}")
