"""The site config (``appliance.yaml``): what an operator may set about one appliance.

Every field has a default, so an empty file (or none at all) is a valid site. The same model
is used by ``invoke render`` on the build host and by the first-boot agent on the appliance;
``appliance.sitefile.load_site`` is the one way to read it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AllocationPool:
    start: str
    end: str


@dataclass(frozen=True)
class TenantNetwork:
    """The VXLAN network instances attach to (the reference's ``nat``)."""

    name: str = "nat"
    cidr: str = "192.168.0.0/24"
    gateway: str | None = None  # default: the first host address of cidr
    dns_servers: tuple[str, ...] = ()  # the appliance has no uplink by default: none
    allocation_pool: AllocationPool | None = None  # default: every host address after the gateway
    router: str = "router"


EXTERNAL_MODES = ("host", "provider", "none")


@dataclass(frozen=True)
class ExternalNetwork:
    """The external network floating IPs come from, and the tenant router's gateway.

    ``mode``: ``host`` (default) puts it on a bridge the appliance owns (``bridge``), holding
    the gateway address, with outbound NAT through the management interface; ``provider`` maps
    it to a physical ``interface`` on the operator's LAN (its ``cidr``, ``gateway`` and
    ``floating_range`` are the LAN's); ``none`` creates no external network.
    """

    mode: str = "host"
    name: str = "external"
    cidr: str = "10.20.20.0/24"
    gateway: str | None = None  # default: the first host address of cidr
    floating_range: AllocationPool | None = None  # default: every host address after the gateway
    interface: str | None = None  # provider mode: the physical interface on the LAN
    bridge: str = "br-external"  # host mode: the bridge the appliance creates (≤ 15 characters)

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def gateway_ip(self) -> str:
        return self.gateway or str(next(ipaddress.ip_network(self.cidr).hosts()))

    def floating_pool(self) -> AllocationPool:
        if self.floating_range:
            return self.floating_range
        return _pool_after(self.cidr, self.gateway_ip())


@dataclass(frozen=True)
class Flavor:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    id: str | int = "auto"  # Nova flavor ids are strings; the reference used 0


DEFAULT_FLAVORS = (Flavor(name="lxc.medium", id="0", vcpus=1, ram_mb=1024, disk_gb=5),)


@dataclass(frozen=True)
class Timeouts:
    # Every bound the agent and the smoke wait for is this many times what a server needs:
    # the one setting for hosts much slower than hardware (a VM without hardware
    # virtualisation). The VM harness sets it when qemu runs without KVM.
    scale: float = 1.0


@dataclass(frozen=True)
class Dashboard:
    """The web dashboard (Horizon over HTTPS on the management address); on by default."""

    enabled: bool = True


@dataclass(frozen=True)
class JoinConfig:
    """Join an existing appliance's cloud as a compute node at first boot (docs/scale-out.md):
    the token `appliance add-node NAME` printed on the controller, given here (``token``) or
    in a file beside the site file (``token_file``), not both. It is a secret: the site file
    is copied 0600, and the token is single-use and expires."""

    token: str | None = None
    token_file: str | None = None


@dataclass(frozen=True)
class SiteConfig:
    hostname: str | None = None  # default: detected on the appliance
    management_interface: str | None = None  # default: the interface of the default route
    management_ip: str | None = None  # default: the address of management_interface
    # VXLAN tunnel endpoint and Nova's my_ip; default: management_ip.
    overlay_ip: str | None = None
    # Physical interface mapped to the flat "provider" network; none: VXLAN only.
    provider_interface: str | None = None
    region: str = "RegionOne"
    network: TenantNetwork = field(default_factory=TenantNetwork)
    external: ExternalNetwork = field(default_factory=ExternalNetwork)
    flavors: tuple[Flavor, ...] = DEFAULT_FLAVORS
    keypair_name: str = "lxckey"
    ssh_public_key: str | None = None  # the key itself
    ssh_public_key_file: str | None = None  # or a file holding it
    image_name: str = "lxc_debian_12"
    # OpenSSH public key lines allowed to log in to the appliance as root (written to
    # /root/.ssh/authorized_keys at first boot; how an operator reaches a VM or server
    # that has no password login). None: no key, console login only.
    root_authorized_keys: tuple[str, ...] = ()
    secrets: dict[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    dashboard: Dashboard = field(default_factory=Dashboard)
    join: JoinConfig | None = None

    def switched_on(self, switch: str) -> bool:
        """Whether the site section ``switch`` (a profile service's ``switch``, such as
        ``dashboard``) is enabled; a name that is no such section is a KeyError."""
        section = getattr(self, switch, None)
        if not isinstance(getattr(section, "enabled", None), bool):
            raise KeyError(switch)
        return section.enabled

    def gateway(self) -> str:
        if self.network.gateway:
            return self.network.gateway
        return str(next(ipaddress.ip_network(self.network.cidr).hosts()))

    def allocation_pool(self) -> AllocationPool:
        if self.network.allocation_pool:
            return self.network.allocation_pool
        return _pool_after(self.network.cidr, self.gateway())


def _pool_after(cidr: str, gateway_ip: str) -> AllocationPool:
    net = ipaddress.ip_network(cidr)
    gateway = ipaddress.ip_address(gateway_ip)
    first, last = net.network_address + 1, net.broadcast_address - 1
    # The addresses above the gateway, unless the gateway is the last host address.
    start, end = (gateway + 1, last) if gateway < last else (first, gateway - 1)
    return AllocationPool(start=str(start), end=str(end))
