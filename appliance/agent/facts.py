"""Host facts the site config may leave open: host name and management address; and how
slow the machine is (emulated or not)."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
from pathlib import Path

from ..errors import ApplianceError
from ..render import HostFacts
from ..site import SiteConfig
from .system import patience

DEFAULT_HOSTNAME = "controller"


def detect_hostname() -> str:
    name = socket.gethostname().split(".")[0].lower()
    return DEFAULT_HOSTNAME if name in ("", "localhost", "debian", "(none)") else name


def _ip_json(*args: str) -> list[dict]:
    out = subprocess.run(["ip", "-json", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out or "[]")


def pick_management_address(routes: list[dict], addresses: list[dict], interface: str | None) -> tuple[str, str]:
    """Choose (interface, IPv4) from `ip -json route` and `ip -json addr` output.

    The named interface wins; else the default route's; else the first interface with a
    global IPv4 address (an appliance without an uplink has no default route).
    """
    if interface is None:
        for route in routes:
            if route.get("dst") == "default" and route.get("dev"):
                interface = route["dev"]
                break
    candidates = []
    for link in addresses:
        if link.get("ifname") == "lo" or (interface and link.get("ifname") != interface):
            continue
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet" and addr.get("scope") == "global":
                ip = ipaddress.IPv4Address(addr["local"])
                if not ip.is_link_local:
                    candidates.append((link["ifname"], str(ip)))
    if not candidates:
        where = f"on interface {interface}" if interface else "on any interface"
        raise ApplianceError(f"no IPv4 address {where}; set management_ip in /etc/appliance/appliance.yaml")
    return candidates[0]


def address_network(addresses: list[dict], ip: str) -> tuple[str, ipaddress.IPv4Interface] | None:
    """(interface, address/prefix) of the interface holding IPv4 ``ip``, from `ip -json addr`."""
    for link in addresses:
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet" and addr.get("local") == ip:
                return link["ifname"], ipaddress.IPv4Interface(f"{ip}/{addr.get('prefixlen', 32)}")
    return None


def management_network(site: SiteConfig) -> tuple[str, ipaddress.IPv4Interface] | None:
    """The management address with its prefix as configured on this host, or None when the
    host does not hold it (yet)."""
    addresses = _ip_json("addr")
    ip = site.management_ip or pick_management_address(_ip_json("route"), addresses, site.management_interface)[1]
    return address_network(addresses, ip)


def detect_facts(site: SiteConfig, *, hostname: str | None = None) -> HostFacts:
    """This host's facts; ``hostname``: the name a join gave it (it wins over the site's)."""
    hostname = hostname or site.hostname or detect_hostname()
    if site.management_ip:
        return HostFacts.from_site(site, hostname=hostname, patience=patience())
    _, ip = pick_management_address(_ip_json("route"), _ip_json("addr"), site.management_interface)
    return HostFacts.from_site(site, hostname=hostname, management_ip=ip, patience=patience())


def save_facts(facts: HostFacts, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(facts.__dict__, indent=2), encoding="utf-8")


def load_facts(path: Path) -> HostFacts | None:
    try:
        return HostFacts(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
