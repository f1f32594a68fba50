"""The site config (``appliance.yaml``): what an operator may set about one appliance.

Every field has a default, so an empty file (or none at all) is a valid site. The same model
is used by ``invoke render`` on the build host and by the first-boot agent on the appliance.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .schema import from_mapping, load_yaml_mapping

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")
_SSH_KEY = re.compile(r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( .*)?$")
# Secrets end up inside URLs (mysql+pymysql://user:secret@host) and oslo.config files,
# where '$' interpolates and '@', ':' or '/' would need quoting; this alphabet needs none.
_SECRET = re.compile(r"^[A-Za-z0-9._~-]{8,128}$")


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
    secrets: dict[str, str] = field(default_factory=dict)

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


def load_site(path: Path | None, *, secret_names: set[str] | None = None) -> SiteConfig:
    """Read and validate a site config; ``None`` means all defaults."""
    if path is None:
        return SiteConfig()
    data = load_yaml_mapping(path)
    site = from_mapping(SiteConfig, data, str(path))
    validate_site(site, str(path), secret_names=secret_names, base_dir=path.parent)
    return site


def validate_site(site: SiteConfig, source: str, *, secret_names: set[str] | None = None,
                  base_dir: Path | None = None) -> None:
    """Semantic checks beyond types; raise ConfigError naming the first bad field."""

    def fail(fieldname: str, problem: str) -> None:
        raise ConfigError(source, fieldname, problem)

    if site.hostname is not None and not _HOSTNAME.match(site.hostname):
        fail("hostname", f"expected a lower-case DNS host name, got {site.hostname!r}")
    for name in ("management_interface", "provider_interface"):
        value = getattr(site, name)
        if value is not None and not _INTERFACE.match(value):
            fail(name, f"expected a network interface name (at most 15 characters), got {value!r}")
    for name in ("management_ip", "overlay_ip"):
        value = getattr(site, name)
        if value is not None:
            _ipv4(value, name, fail)
    if not _NAME.match(site.region):
        fail("region", f"expected a name of letters, digits, '.', '_' or '-', got {site.region!r}")
    _check_network(site, fail)
    _check_external(site, fail)
    _check_flavors(site, fail)
    if not _NAME.match(site.keypair_name):
        fail("keypair_name", f"expected a name of letters, digits, '.', '_' or '-', got {site.keypair_name!r}")
    if not _NAME.match(site.image_name):
        fail("image_name", f"expected a name of letters, digits, '.', '_' or '-', got {site.image_name!r}")
    if site.ssh_public_key is not None and site.ssh_public_key_file is not None:
        fail("ssh_public_key_file", "give either ssh_public_key or ssh_public_key_file, not both")
    if site.ssh_public_key is not None:
        _check_ssh_key(site.ssh_public_key.strip(), "ssh_public_key", fail)
    if site.ssh_public_key_file is not None:
        read_public_key_file(site, source, base_dir)
    for name, value in site.secrets.items():
        if secret_names is not None and name not in secret_names:
            fail(f"secrets.{name}", f"unknown secret (known: {', '.join(sorted(secret_names))})")
        if not _SECRET.match(value):
            fail(f"secrets.{name}", "expected 8 to 128 characters of letters, digits, '.', '_', '~' or '-'")


def read_public_key_file(site: SiteConfig, source: str, base_dir: Path | None) -> str:
    path = Path(site.ssh_public_key_file).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(source, "ssh_public_key_file", f"cannot read {path}: {exc.strerror}") from None

    def fail(fieldname: str, problem: str) -> None:
        raise ConfigError(source, fieldname, f"{path}: {problem}")

    _check_ssh_key(key, "ssh_public_key_file", fail)
    return key


def _check_ssh_key(key: str, name: str, fail) -> None:
    if "\n" in key or not _SSH_KEY.match(key):
        fail(name, "expected one OpenSSH public key line such as 'ssh-ed25519 AAAA... comment'")


def _ipv4(value: str, name: str, fail) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        fail(name, f"expected an IPv4 address, got {value!r}")


def _check_network(site: SiteConfig, fail) -> None:
    net = site.network
    if not _NAME.match(net.name):
        fail("network.name", f"expected a name of letters, digits, '.', '_' or '-', got {net.name!r}")
    if not _NAME.match(net.router):
        fail("network.router", f"expected a name of letters, digits, '.', '_' or '-', got {net.router!r}")
    try:
        cidr = ipaddress.IPv4Network(net.cidr, strict=True)
    except ValueError as exc:
        fail("network.cidr", f"expected an IPv4 network like 192.168.0.0/24, got {net.cidr!r} ({exc})")
    if cidr.num_addresses < 8:
        fail("network.cidr", f"{net.cidr} is too small; expected a prefix of /29 or shorter")
    if net.gateway is not None:
        gateway = _ipv4(net.gateway, "network.gateway", fail)
        if gateway not in cidr or gateway in (cidr.network_address, cidr.broadcast_address):
            fail("network.gateway", f"{net.gateway} is not a host address of network.cidr {net.cidr}")
    for i, server in enumerate(net.dns_servers):
        _ipv4(server, f"network.dns_servers[{i}]", fail)
    if net.allocation_pool is not None:
        start = _ipv4(net.allocation_pool.start, "network.allocation_pool.start", fail)
        end = _ipv4(net.allocation_pool.end, "network.allocation_pool.end", fail)
        for name, addr in (("start", start), ("end", end)):
            if addr not in cidr or addr in (cidr.network_address, cidr.broadcast_address):
                fail(f"network.allocation_pool.{name}", f"{addr} is not a host address of network.cidr {net.cidr}")
        if start > end:
            fail("network.allocation_pool", f"start {start} comes after end {end}")
        gateway = ipaddress.IPv4Address(site.gateway())
        if start <= gateway <= end:
            fail("network.allocation_pool", f"the range {start}-{end} contains the gateway {gateway}")


def _check_external(site: SiteConfig, fail) -> None:
    ext = site.external
    if ext.mode not in EXTERNAL_MODES:
        fail("external.mode", f"expected one of {', '.join(EXTERNAL_MODES)}, got {ext.mode!r}")
    if not ext.enabled:
        return
    if not _NAME.match(ext.name):
        fail("external.name", f"expected a name of letters, digits, '.', '_' or '-', got {ext.name!r}")
    if ext.name == site.network.name:
        fail("external.name", f"{ext.name!r} is already the tenant network's name")
    if not _INTERFACE.match(ext.bridge):
        fail("external.bridge", f"expected a bridge name of at most 15 characters, got {ext.bridge!r}")
    if ext.mode == "provider" and ext.interface is None:
        fail("external.interface", "provider mode needs the physical interface on the LAN")
    if ext.interface is not None:
        if ext.mode != "provider":
            fail("external.interface", f"only provider mode uses an interface (mode is {ext.mode})")
        if not _INTERFACE.match(ext.interface):
            fail("external.interface", f"expected a network interface name (at most 15 characters), got {ext.interface!r}")
        if ext.interface in (site.management_interface, site.provider_interface):
            fail("external.interface", f"{ext.interface} is already the management or provider interface; "
                 "give the external network an interface of its own")
    try:
        cidr = ipaddress.IPv4Network(ext.cidr, strict=True)
    except ValueError as exc:
        fail("external.cidr", f"expected an IPv4 network like 10.20.20.0/24, got {ext.cidr!r} ({exc})")
    if cidr.num_addresses < 8:
        fail("external.cidr", f"{ext.cidr} is too small; expected a prefix of /29 or shorter")
    link_local = ipaddress.IPv4Network("169.254.0.0/16")
    if cidr.overlaps(link_local):
        fail("external.cidr", f"{ext.cidr} overlaps 169.254.0.0/16 (the metadata service's link-local range)")
    tenant = ipaddress.IPv4Network(site.network.cidr)
    if cidr.overlaps(tenant):
        fail("external.cidr", f"{ext.cidr} overlaps the tenant network.cidr {site.network.cidr}")
    for name in ("management_ip", "overlay_ip"):
        address = getattr(site, name)
        if address is not None and ipaddress.IPv4Address(address) in cidr:
            fail("external.cidr", f"{ext.cidr} contains {name} {address}")
    if ext.gateway is not None:
        gateway = _ipv4(ext.gateway, "external.gateway", fail)
        if gateway not in cidr or gateway in (cidr.network_address, cidr.broadcast_address):
            fail("external.gateway", f"{ext.gateway} is not a host address of external.cidr {ext.cidr}")
    if ext.floating_range is not None:
        start = _ipv4(ext.floating_range.start, "external.floating_range.start", fail)
        end = _ipv4(ext.floating_range.end, "external.floating_range.end", fail)
        for name, addr in (("start", start), ("end", end)):
            if addr not in cidr or addr in (cidr.network_address, cidr.broadcast_address):
                fail(f"external.floating_range.{name}", f"{addr} is not a host address of external.cidr {ext.cidr}")
        if start > end:
            fail("external.floating_range", f"start {start} comes after end {end}")
        gateway = ipaddress.IPv4Address(ext.gateway_ip())
        if start <= gateway <= end:
            fail("external.floating_range", f"the range {start}-{end} contains the gateway {gateway}")


def _check_flavors(site: SiteConfig, fail) -> None:
    if not site.flavors:
        fail("flavors", "expected at least one flavor")
    names: set[str] = set()
    for i, flavor in enumerate(site.flavors):
        where = f"flavors[{i}]"
        if not _NAME.match(flavor.name):
            fail(f"{where}.name", f"expected a name of letters, digits, '.', '_' or '-', got {flavor.name!r}")
        if flavor.name in names:
            fail(f"{where}.name", f"duplicate flavor {flavor.name!r}")
        names.add(flavor.name)
        for attr, low in (("vcpus", 1), ("ram_mb", 64), ("disk_gb", 1)):
            if getattr(flavor, attr) < low:
                fail(f"{where}.{attr}", f"expected a whole number of at least {low}, got {getattr(flavor, attr)}")
        if not _NAME.match(str(flavor.id)):
            fail(f"{where}.id", f"expected 'auto' or an id of letters, digits, '.', '_' or '-', got {flavor.id!r}")
