"""Release profiles: everything release-specific, as data.

A profile is a YAML file in the repository's ``profiles/`` named after the profile (the
build host's catalogue, ``pipeline.profiles``), complete or written as a delta of another
(``appliance.profile_delta``); the image carries the one it was built with, resolved, as
``/usr/share/appliance/profile.yaml``. It names the
distribution, the mirrors, and every service of the appliance the same way (packages,
systemd units, databases, service user, catalog entry, listening ports, config files and
the overlay template that renders each). Adding a release means writing one of these files
plus the templates that truly differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .profile_delta import FILE_KEYS, resolve_profile_file
from .role_checks import CONTROLLER, check_roles
from .schema import from_mapping

if TYPE_CHECKING:
    from .site import SiteConfig


@dataclass(frozen=True)
class Distro:
    family: str  # debian | ubuntu
    release: str  # bookworm, xenial, ...
    dib_element: str  # debian-minimal, ubuntu-minimal
    mirror: str
    security_mirror: str = ""
    components: tuple[str, ...] = ("main",)
    # Extra apt sources as full one-line "deb ..." entries (e.g. a cloud archive).
    extra_repositories: tuple[str, ...] = ()
    # Packages that only exist to make the others installable (keyrings and the like).
    base_packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Identity:
    """How Keystone is reached, which differs between releases."""

    public_port: int
    admin_port: int
    api_version: str = "v3"
    # keystonemiddleware's name for the public URL: auth_uri (old) or www_authenticate_uri.
    authtoken_uri_option: str = "www_authenticate_uri"


@dataclass(frozen=True)
class ConfigFile:
    path: str  # absolute path on the appliance
    template: str  # relative to overlays/
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    # Values for a template shared by several files (one uwsgi template serves every API).
    vars: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def mode_bits(self) -> int:
        return int(self.mode, 8)

    @property
    def holds_secrets(self) -> bool:
        return not self.mode_bits & 0o077


@dataclass(frozen=True)
class Endpoint:
    """A Keystone catalog entry; ``url`` may use {host}."""

    type: str
    name: str
    description: str
    url: str


@dataclass(frozen=True)
class Port:
    port: int
    # Which address the service must listen on: management, any or loopback.
    bind: str = "management"
    protocol: str = "tcp"
    # Whether compute nodes reach this port: "" (no), "tcp" or "tls". Only a loopback port
    # says so; it then listens on the management address too, over that transport, while the
    # controller has nodes, and on loopback alone otherwise (docs/scale-out.md, "Listeners").
    nodes: str = ""

    NODE_TRANSPORTS = ("", "tcp", "tls")

    def scope(self, *, has_members: bool = False) -> str:
        """The widest address class this port may listen on: its ``bind``, or the
        management address too once the controller has members and the nodes reach it."""
        return "management" if self.nodes and has_members else self.bind


@dataclass(frozen=True)
class Service:
    name: str
    packages: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    db_user: str = ""
    # Keystone user the service authenticates as (created in project "service").
    service_user: str = ""
    endpoint: Endpoint | None = None
    ports: tuple[Port, ...] = ()
    files: tuple[ConfigFile, ...] = ()
    # A site config section with an ``enabled`` flag (``dashboard``) that turns this service
    # off on one appliance: installed in the image, but no file rendered, no unit started.
    switch: str = ""
    # Names of secrets this service needs beyond database and Keystone passwords, generated
    # per appliance like every other (appliance.credentials).
    secrets: tuple[str, ...] = ()
    # Started by an `appliance` command while it is needed (the join service: by add-node,
    # while an invitation can be redeemed), never by first boot: its units are not among
    # ``Profile.units()`` and its ports are closed while it does not run.
    on_demand: bool = False


@dataclass(frozen=True)
class RoleService:
    """What a role runs of one of the profile's services; None keeps all of that kind."""

    name: str
    units: tuple[str, ...] | None = None
    # Paths of the service's files this role writes.
    files: tuple[str, ...] | None = None
    # Port numbers of the service's declared ports this role listens on.
    ports: tuple[int, ...] | None = None
    # Path -> template: a kept file rendered from another template in this role.
    templates: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Role:
    """A role other than the controller's, as a subset of the profile's services (see
    ``Profile.for_role``). The controller's role is the whole profile: the single-node
    appliance is a controller that is its own compute host."""

    description: str
    services: tuple[RoleService, ...]
    # The first-boot steps a machine of this role runs, by name (agent/steps.py's
    # catalogue), in an order that works one by one: a role's steps are data, like its
    # services, so no code asks which role it is in.
    steps: tuple[str, ...] = ()


@dataclass(frozen=True)
class RpcGate:
    """Units that start only once the RPC servers consume their queues.

    An RPC call sent before its queue is declared is dropped by RabbitMQ, and the caller
    waits out its whole timeout (60 s, then a back-off) before asking again.
    """

    queues: tuple[str, ...]
    units: tuple[str, ...]


@dataclass(frozen=True)
class IdMap:
    """The host ids an instance's ids 0..count-1 map to (Nova's ``[libvirt] uid_maps`` and
    ``gid_maps``, both ``0:host_start:count``): root in an instance is ``host_start`` on
    the appliance. The range is reserved for root in /etc/subuid and /etc/subgid."""

    host_start: int
    # At least 65536, so that every id a distribution uses (nobody is 65534) is mapped.
    count: int = 65536

    # Ids at or above this never appear in an image's /etc/passwd (Debian's system and
    # user ranges end at 59999 and 65534); the kernel's largest id is 2**32 - 2.
    MIN_START = 65536
    MAX_END = 2**32 - 1


@dataclass(frozen=True)
class TenantQuota:
    """How first boot sizes the compute quotas of the tenant project from the host:
    RAM = host RAM - ``reserved_ram_mb`` (in 256 MB steps), cores = CPUs x ``vcpus_per_cpu``,
    instances = cores (no instance has less than one vCPU)."""

    project: str = "lxc"
    # What the appliance's own services need (idle about 3.5 GiB RSS, see README "Sizing").
    reserved_ram_mb: int = 4096
    # Nova's own CPU overcommit for the placement inventory is far higher; this keeps one
    # tenant's containers from taking every CPU many times over.
    vcpus_per_cpu: int = 4
    # The RAM quota on a host smaller than the reserve (a 4 GiB VM is what an operator tries
    # first): two instances of the default 1024 MB flavor. An LXC flavor's RAM is a cgroup
    # limit, not an allocation: an idle Debian instance uses tens of MB.
    min_ram_mb: int = 2048


@dataclass(frozen=True)
class Network:
    """The ML2 mechanism of the tenant networks (one module per backend in
    ``appliance.agent.netbackend``) and the Neutron agents (their ``binary`` in the agent list)
    that must report alive before first boot ends."""

    backend: str = "linuxbridge"
    agents: tuple[str, ...] = ()
    # The network namespace on the appliance that has an address on a tenant network
    # ({network_id}): the DHCP agent's with Linux bridge, the OVN metadata agent's with OVN
    # (made once an instance of that network runs here). Instances are reached from it.
    tenant_namespace: str = "qdhcp-{network_id}"
    # Whether the site's provider_interface (a flat "provider" network on a host interface)
    # is offered; where it is not, a LAN reaches instances through external.mode provider.
    provider_interface: bool = True

    BACKENDS = ("linuxbridge", "ovn")

    def namespace(self, network_id: str) -> str:
        return self.tenant_namespace.format(network_id=network_id)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    distro: Distro
    openstack_release: str
    identity: Identity
    services: tuple[Service, ...]
    # Free-form values for templates (worker counts, option variants).
    settings: dict[str, Any] = field(default_factory=dict)
    rpc_gate: RpcGate | None = None
    network: Network = field(default_factory=Network)
    # User-namespaced instances; None runs an instance's root as the appliance's root.
    instance_id_map: IdMap | None = None
    # Compute quotas of the tenant project; None leaves Nova's defaults.
    tenant_quota: TenantQuota | None = None
    # Defaults for top-level site config fields that depend on the release (the name of the
    # guest image the build ships); a site file's own value wins. Checked as site fields.
    site_defaults: dict[str, Any] = field(default_factory=dict)
    # Roles other than "controller" (the whole profile), by name: what a node that joins
    # this appliance's cloud runs (docs/scale-out.md). Empty: this profile cannot scale out.
    roles: dict[str, Role] = field(default_factory=dict)
    # The first-boot steps, by name; None: a controller's (agent/steps.py). Set by
    # roles.profile_for_role from a role's ``steps``.
    steps: tuple[str, ...] | None = None

    CONTROLLER = CONTROLLER

    def role_names(self) -> list[str]:
        return [self.CONTROLLER, *self.roles]

    def node_ports(self) -> list[tuple[str, Port]]:
        """(service, port) of every port compute nodes reach once the controller has nodes."""
        return [(svc.name, port) for svc in self.services for port in svc.ports if port.nodes]

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def has_service(self, name: str) -> bool:
        return any(svc.name == name for svc in self.services)

    def packages(self) -> list[str]:
        """Every package of the appliance, in service order, without repeats."""
        seen: dict[str, None] = dict.fromkeys(self.distro.base_packages)
        for svc in self.services:
            seen.update(dict.fromkeys(svc.packages))
        return list(seen)

    def files(self) -> list[ConfigFile]:
        return [f for svc in self.services for f in svc.files]

    def units(self) -> list[str]:
        """The units first boot starts and status and the smoke expect up: not on-demand ones."""
        return [u for svc in self.services if not svc.on_demand for u in svc.units]

    def endpoints(self) -> list[Endpoint]:
        return [svc.endpoint for svc in self.services if svc.endpoint]

    def active(self, site: "SiteConfig") -> "Profile":
        """This profile without the services the site switches off (a service's ``switch``
        names a site section whose ``enabled`` is false): what one appliance runs, renders,
        starts and checks."""
        off = [svc for svc in self.services if svc.switch and not site.switched_on(svc.switch)]
        if not off:
            return self
        return dataclasses.replace(self, services=tuple(svc for svc in self.services if svc not in off))


def load_profile_file(path: Path) -> Profile:
    """Read and check one profile file, its base profiles applied; ConfigError names the file
    and the field."""
    return parse_profile(resolve_profile_file(path, check=parse_profile), str(path))


def parse_profile(data: dict, source: str) -> Profile:
    """Check a complete (resolved) profile mapping."""
    for key in FILE_KEYS:
        if key in data:
            raise ConfigError(source, key, "only a profile file may say this: this mapping must be a resolved "
                                           "profile (load the file with load_profile_file)")
    profile = from_mapping(Profile, data, source)
    _check_profile(profile, source)
    return profile


def _check_profile(profile: Profile, source: str) -> None:
    from .site import SiteConfig

    defaults = from_mapping(SiteConfig, dict(profile.site_defaults), source, prefix="site_defaults")
    names = [svc.name for svc in profile.services]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(source, f"services[{i}].name", f"duplicate service {name!r}")
    paths: set[str] = set()
    for i, svc in enumerate(profile.services):
        if svc.databases and not svc.db_user:
            raise ConfigError(source, f"services[{i}].db_user", "required when databases are listed")
        for j, cfg in enumerate(svc.files):
            where = f"services[{i}].files[{j}]"
            if not cfg.path.startswith("/"):
                raise ConfigError(source, f"{where}.path", f"expected an absolute path, got {cfg.path!r}")
            if cfg.path in paths:
                raise ConfigError(source, f"{where}.path", f"{cfg.path} is written by two services")
            paths.add(cfg.path)
            try:
                cfg.mode_bits
            except ValueError:
                raise ConfigError(source, f"{where}.mode", f"expected an octal mode like '0640', got {cfg.mode!r}") from None
        if svc.switch:
            try:
                defaults.switched_on(svc.switch)
            except KeyError:
                raise ConfigError(source, f"services[{i}].switch",
                                  f"expected a site config section with an enabled flag, got {svc.switch!r}") from None
        for j, port in enumerate(svc.ports):
            if port.bind not in ("management", "any", "loopback"):
                raise ConfigError(source, f"services[{i}].ports[{j}].bind", "expected management, any or loopback")
            if port.nodes not in Port.NODE_TRANSPORTS:
                raise ConfigError(source, f"services[{i}].ports[{j}].nodes", "expected tcp, tls or nothing")
            if port.nodes and port.bind != "loopback":
                raise ConfigError(source, f"services[{i}].ports[{j}].nodes",
                                  f"only a loopback port opens to the nodes (this one is bound to {port.bind} already)")
    if profile.network.backend not in Network.BACKENDS:
        raise ConfigError(source, "network.backend",
                          f"expected one of {', '.join(Network.BACKENDS)}, got {profile.network.backend!r}")
    idmap = profile.instance_id_map
    if idmap is not None:
        if idmap.host_start < IdMap.MIN_START:
            raise ConfigError(source, "instance_id_map.host_start",
                              f"expected at least {IdMap.MIN_START} (above every id an image uses), "
                              f"got {idmap.host_start}")
        if idmap.count < 65536:
            raise ConfigError(source, "instance_id_map.count", f"expected at least 65536, got {idmap.count}")
        if idmap.host_start + idmap.count > IdMap.MAX_END:
            raise ConfigError(source, "instance_id_map.count", f"expected host_start + count <= {IdMap.MAX_END}")
    quota = profile.tenant_quota
    if quota is not None:
        if quota.reserved_ram_mb < 0:
            raise ConfigError(source, "tenant_quota.reserved_ram_mb",
                              f"expected 0 or more, got {quota.reserved_ram_mb}")
        if quota.vcpus_per_cpu < 1:
            raise ConfigError(source, "tenant_quota.vcpus_per_cpu", f"expected 1 or more, got {quota.vcpus_per_cpu}")
        if quota.min_ram_mb < 0:
            raise ConfigError(source, "tenant_quota.min_ram_mb", f"expected 0 or more, got {quota.min_ram_mb}")
    check_roles(profile, source)
    if profile.rpc_gate:
        units = set(profile.units())
        for j, unit in enumerate(profile.rpc_gate.units):
            if unit not in units:
                raise ConfigError(source, f"rpc_gate.units[{j}]", f"{unit} is not a unit of any service")
