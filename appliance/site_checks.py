"""Checks of a site config beyond types, shared by `invoke render` and the first-boot agent.

Every refusal is a ConfigError: one line naming the file, the dotted field and what was
expected. The checks come in kinds, each applied to every field it concerns:

* patterns (names, host name, interfaces, secrets, SSH key) through ``_pattern``, which
  matches the *whole* value, so a trailing newline ("cloud1\\n") cannot slip through as it
  does with ``re.match`` and ``$``;
* file inputs (the SSH key file) through ``schema.read_text_input``: size-limited, UTF-8,
  regular files only;
* addresses of this host (not unspecified, loopback, multicast, link-local or reserved);
* ranges that must not overlap: the tenant network, the external network, the management
  network (its address, or with the agent its detected prefix) and 169.254.0.0/16;
* lists that must not repeat (DNS servers, flavor ids and names).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Callable, NoReturn

from .cluster.errors import ClusterError
from .cluster.token import JoinToken, parse_token
from .errors import ConfigError
from .schema import read_text_input
from .site import EXTERNAL_MODES, ExternalNetwork, SiteConfig, TenantNetwork

Fail = Callable[[str, str], NoReturn]

# Each pattern is matched with fullmatch: no anchors needed, none can be fooled.
_NAME_TEXT = "a name of letters, digits, '.', '_' or '-'"
PATTERNS: dict[str, tuple[re.Pattern, str]] = {
    "hostname": (re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"),
                 "a lower-case DNS host name"),
    "name": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"), _NAME_TEXT),
    "interface": (re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,14}"),
                  "a network interface name (at most 15 characters)"),
    "ssh_key": (re.compile(r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?"),
                "one OpenSSH public key line such as 'ssh-ed25519 AAAA... comment'"),
    # Secrets end up inside URLs (mysql+pymysql://user:secret@host) and oslo.config files,
    # where '$' interpolates and '@', ':' or '/' would need quoting; this alphabet needs none.
    "secret": (re.compile(r"[A-Za-z0-9._~-]{8,128}"),
               "8 to 128 characters of letters, digits, '.', '_', '~' or '-'"),
}

# Neutron refuses a subnet with more DNS servers than its max_dns_nameservers option
# (neutron/conf/common.py, default 5); the appliance leaves that option at its default.
MAX_DNS_SERVERS = 5
# timeouts.scale: below 1 would cut bounds measured on hardware; above 20 no wait ends in
# a useful time.
TIMEOUT_SCALE = (1.0, 20.0)
# The metadata service's address 169.254.169.254 lives here (Nova metadata, RFC 3927).
LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
SSH_KEY_FILE_LIMIT = 16 * 1024
# A join token is about 280 characters; a token file is that and a newline.
TOKEN_FILE_LIMIT = 4096
# What only the controller's site config may say: with `join`, the node takes the cloud's
# networks, flavors, images, keys and secrets from the controller it joins.
CONTROLLER_ONLY = ("provider_interface", "region", "network", "external", "flavors", "keypair_name",
                   "ssh_public_key", "ssh_public_key_file", "image_name", "secrets")
# Ranges no tenant or external network can use (RFC 1122 "this network", loopback, RFC 5771
# multicast, RFC 1112 reserved incl. the limited broadcast).
_NOT_UNICAST = tuple((ipaddress.IPv4Network(n), w) for n, w in (
    ("0.0.0.0/8", "this network"), ("127.0.0.0/8", "loopback"), ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved")))

SiteNetworks = dict[str, ipaddress.IPv4Network]


def _pattern(kind: str, value: str, field: str, fail: Fail, *, show: bool = True) -> None:
    regex, expected = PATTERNS[kind]
    if not isinstance(value, str) or not regex.fullmatch(value):
        fail(field, f"expected {expected}" + (f", got {value!r}" if show else ""))


def validate_site(site: SiteConfig, source: str, *, secret_names: set[str] | None = None,
                  base_dir: Path | None = None) -> None:
    """Semantic checks beyond types; raise ConfigError naming the first bad field."""

    def fail(fieldname: str, problem: str) -> NoReturn:
        raise ConfigError(source, fieldname, problem)

    if site.hostname is not None:
        _pattern("hostname", site.hostname, "hostname", fail)
    for name in ("management_interface", "provider_interface"):
        if getattr(site, name) is not None:
            _pattern("interface", getattr(site, name), name, fail)
    for name in ("management_ip", "overlay_ip"):
        if getattr(site, name) is not None:
            host_address(getattr(site, name), name, fail)
    for name in ("region", "keypair_name", "image_name"):
        _pattern("name", getattr(site, name), name, fail)
    _check_network(site, fail)
    _check_external(site, fail)
    _check_overlaps(site, fail)
    _check_flavors(site, fail)
    if not TIMEOUT_SCALE[0] <= site.timeouts.scale <= TIMEOUT_SCALE[1]:
        fail("timeouts.scale", f"expected a number from {TIMEOUT_SCALE[0]:g} to {TIMEOUT_SCALE[1]:g}, "
                               f"got {site.timeouts.scale:g}")
    if site.ssh_public_key is not None and site.ssh_public_key_file is not None:
        fail("ssh_public_key_file", "give either ssh_public_key or ssh_public_key_file, not both")
    if site.ssh_public_key is not None:
        _pattern("ssh_key", site.ssh_public_key.strip(), "ssh_public_key", fail, show=False)
    if site.ssh_public_key_file is not None:
        read_public_key_file(site, source, base_dir)
    for i, key in enumerate(site.root_authorized_keys):
        _pattern("ssh_key", key.strip() if isinstance(key, str) else key, f"root_authorized_keys[{i}]", fail,
                 show=False)
    for name, value in site.secrets.items():
        if secret_names is not None and name not in secret_names:
            fail(f"secrets.{name}", f"unknown secret (known: {', '.join(sorted(secret_names))})")
        _pattern("secret", value, f"secrets.{name}", fail, show=False)  # never echo a secret
    if site.join is not None:
        token = join_token(site, source, base_dir)
        if site.hostname is not None and site.hostname != token.name:
            fail("hostname", f"{site.hostname!r} is not the join token's node name {token.name!r}; "
                             "leave hostname out or give the token's")


def join_token(site: SiteConfig, source: str, base_dir: Path | None) -> JoinToken:
    """The join token of ``site.join``, parsed (ConfigError naming ``join.token`` or
    ``join.token_file``; never the token's text). Its expiry is the join's business, not the
    site check's: a site file stays valid on a build host after its token has expired."""
    join = site.join
    if (join.token is None) == (join.token_file is None):
        raise ConfigError(source, "join", "give either token or token_file")
    if join.token is not None:
        field, text = "join.token", join.token
    else:
        field = "join.token_file"
        path = Path(join.token_file).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        text = read_text_input(path, source, field, limit=TOKEN_FILE_LIMIT)
    try:
        return parse_token(text)
    except ClusterError as exc:
        raise ConfigError(source, field, str(exc)) from None


def read_public_key_file(site: SiteConfig, source: str, base_dir: Path | None) -> str:
    """The key in ``ssh_public_key_file`` (relative to the site file), checked."""
    path = Path(site.ssh_public_key_file).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    key = read_text_input(path, source, "ssh_public_key_file", limit=SSH_KEY_FILE_LIMIT).strip()

    def fail(fieldname: str, problem: str) -> NoReturn:
        raise ConfigError(source, fieldname, f"{path}: {problem}")

    _pattern("ssh_key", key, "ssh_public_key_file", fail, show=False)
    return key


def ipv4(value: str, name: str, fail: Fail) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        fail(name, f"expected an IPv4 address, got {value!r}")


def host_address(value: str, name: str, fail: Fail) -> ipaddress.IPv4Address:
    """An address this host can own and others reach: services listen on it."""
    address = ipv4(value, name, fail)
    for test, word in (("is_unspecified", "the unspecified (wildcard) address"), ("is_loopback", "a loopback address"),
                       ("is_multicast", "a multicast address"), ("is_link_local", "a link-local address"),
                       ("is_reserved", "a reserved address")):
        if getattr(address, test):
            fail(name, f"expected a unicast address of this host, got {value} ({word})")
    return address


def _cidr(value: str, name: str, example: str, fail: Fail) -> ipaddress.IPv4Network:
    try:
        cidr = ipaddress.IPv4Network(value, strict=True)
    except (ValueError, TypeError) as exc:
        fail(name, f"expected an IPv4 network like {example}, got {value!r} ({exc})")
    if cidr.num_addresses < 8:
        fail(name, f"{value} is too small; expected a prefix of /29 or shorter")
    for reserved, word in _NOT_UNICAST:
        if cidr.overlaps(reserved):
            fail(name, f"{value} overlaps {reserved} ({word}); expected a unicast range")
    if cidr.overlaps(LINK_LOCAL):
        fail(name, f"{value} overlaps 169.254.0.0/16 (the metadata service's link-local range)")
    return cidr


def _host_in(cidr: ipaddress.IPv4Network, value: str, name: str, range_name: str, fail: Fail) -> ipaddress.IPv4Address:
    address = ipv4(value, name, fail)
    if address not in cidr or address in (cidr.network_address, cidr.broadcast_address):
        fail(name, f"{value} is not a host address of {range_name} {cidr}")
    return address


def _check_range(cidr: ipaddress.IPv4Network, start_s: str, end_s: str, gateway_s: str, where: str,
                 range_name: str, fail: Fail) -> None:
    start = _host_in(cidr, start_s, f"{where}.start", range_name, fail)
    end = _host_in(cidr, end_s, f"{where}.end", range_name, fail)
    if start > end:
        fail(where, f"start {start} comes after end {end}")
    gateway = ipaddress.IPv4Address(gateway_s)
    if start <= gateway <= end:
        fail(where, f"the range {start}-{end} contains the gateway {gateway}")


def _check_network(site: SiteConfig, fail: Fail) -> None:
    net = site.network
    _pattern("name", net.name, "network.name", fail)
    _pattern("name", net.router, "network.router", fail)
    cidr = _cidr(net.cidr, "network.cidr", "192.168.0.0/24", fail)
    if net.gateway is not None:
        _host_in(cidr, net.gateway, "network.gateway", "network.cidr", fail)
    if len(net.dns_servers) > MAX_DNS_SERVERS:
        fail("network.dns_servers", f"{len(net.dns_servers)} servers; Neutron accepts at most {MAX_DNS_SERVERS}")
    seen: set[ipaddress.IPv4Address] = set()
    for i, server in enumerate(net.dns_servers):
        address = ipv4(server, f"network.dns_servers[{i}]", fail)
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            fail(f"network.dns_servers[{i}]", f"{server} is not a DNS server address an instance can reach")
        if address in seen:
            fail(f"network.dns_servers[{i}]", f"{server} is listed twice")
        seen.add(address)
    if net.allocation_pool is not None:
        _check_range(cidr, net.allocation_pool.start, net.allocation_pool.end, site.gateway(),
                     "network.allocation_pool", "network.cidr", fail)


def _check_external(site: SiteConfig, fail: Fail) -> None:
    ext = site.external
    if ext.mode not in EXTERNAL_MODES:
        fail("external.mode", f"expected one of {', '.join(EXTERNAL_MODES)}, got {ext.mode!r}")
    if not ext.enabled:
        return
    _pattern("name", ext.name, "external.name", fail)
    if ext.name == site.network.name:
        fail("external.name", f"{ext.name!r} is already the tenant network's name")
    _pattern("interface", ext.bridge, "external.bridge", fail)
    if ext.mode == "provider" and ext.interface is None:
        fail("external.interface", "provider mode needs the physical interface on the LAN")
    if ext.interface is not None:
        if ext.mode != "provider":
            fail("external.interface", f"only provider mode uses an interface (mode is {ext.mode})")
        _pattern("interface", ext.interface, "external.interface", fail)
        if ext.interface in (site.management_interface, site.provider_interface):
            fail("external.interface", f"{ext.interface} is already the management or provider interface; "
                 "give the external network an interface of its own")
    cidr = _cidr(ext.cidr, "external.cidr", "10.20.20.0/24", fail)
    if ext.gateway is not None:
        _host_in(cidr, ext.gateway, "external.gateway", "external.cidr", fail)
    if ext.floating_range is not None:
        _check_range(cidr, ext.floating_range.start, ext.floating_range.end, ext.gateway_ip(),
                     "external.floating_range", "external.cidr", fail)


def _check_overlaps(site: SiteConfig, fail: Fail) -> None:
    """Tenant and external ranges against each other and against this host's own addresses."""
    ranges = site_networks(site)
    if "external.cidr" in ranges and ranges["external.cidr"].overlaps(ranges["network.cidr"]):
        if site.external.cidr == ExternalNetwork().cidr and site.network.cidr != TenantNetwork().cidr:
            # The operator moved the tenant range onto the external default: name their field.
            fail("network.cidr", f"{site.network.cidr} overlaps external.cidr {site.external.cidr} (its default); "
                                 "pick another tenant range or set external.cidr")
        fail("external.cidr", f"{site.external.cidr} overlaps the tenant network.cidr {site.network.cidr}")
    for name in ("management_ip", "overlay_ip"):
        value = getattr(site, name)
        if value is None:
            continue
        for field, cidr in ranges.items():
            if ipaddress.IPv4Address(value) in cidr:
                fail(field, f"{cidr} contains {name} {value}; the appliance's own address must lie outside it")


def site_networks(site: SiteConfig) -> SiteNetworks:
    """The ranges the site asks Neutron to create, by field (only once they are valid)."""
    ranges = {"network.cidr": ipaddress.IPv4Network(site.network.cidr)}
    if site.external.enabled:
        ranges["external.cidr"] = ipaddress.IPv4Network(site.external.cidr)
    return ranges


def check_management_network(site: SiteConfig, source: str, interface: str,
                             network: ipaddress.IPv4Interface) -> None:
    """The agent's check of the management network as detected (address with prefix, e.g.
    10.254.0.10/24 on eth0) against the tenant and external ranges: an overlap would route
    one of them over the wrong interface."""
    for field, cidr in site_networks(site).items():
        if cidr.overlaps(network.network):
            raise ConfigError(source, field, f"{cidr} overlaps the management network {network.network} "
                              f"({network.ip} on {interface})")


def _check_flavors(site: SiteConfig, fail: Fail) -> None:
    if not site.flavors:
        fail("flavors", "expected at least one flavor")
    names: set[str] = set()
    ids: set[str] = set()
    for i, flavor in enumerate(site.flavors):
        where = f"flavors[{i}]"
        _pattern("name", flavor.name, f"{where}.name", fail)
        if flavor.name in names:
            fail(f"{where}.name", f"duplicate flavor name {flavor.name!r}")
        names.add(flavor.name)
        for attr, low in (("vcpus", 1), ("ram_mb", 64), ("disk_gb", 1)):
            if getattr(flavor, attr) < low:
                fail(f"{where}.{attr}", f"expected a whole number of at least {low}, got {getattr(flavor, attr)}")
        flavor_id = str(flavor.id)
        regex, _ = PATTERNS["name"]
        if not regex.fullmatch(flavor_id):
            fail(f"{where}.id", f"expected 'auto' or an id of letters, digits, '.', '_' or '-', got {flavor.id!r}")
        if flavor_id != "auto":
            if flavor_id in ids:
                fail(f"{where}.id", f"duplicate flavor id {flavor_id!r}")
            ids.add(flavor_id)
