"""The host side of the external network, converged at every boot and by first boot.

Mode ``host``: a bridge (``external.bridge``) that holds the external gateway address, mapped
to the flat physical network ``external``; the appliance reaches every floating IP through
it, and forwards and masquerades what the tenant routers send out of the external range
through the management (uplink) interface. Mode ``provider``: the operator's LAN interface
is brought up and given to the network backend. Mode ``none``: whatever an earlier mode set
up here is removed.

What kind of bridge that is belongs to the network backend (``netbackend``): a Linux bridge
the Linux bridge agent maps, or an Open vSwitch bridge OVN maps; ``HostBridge`` is the seam.

Kernel state (links, addresses, netfilter rules) is lost at a reboot, so
``appliance-external-network.service`` runs this at every boot, before the agents.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Protocol

from ..errors import ApplianceError
from ..site import SiteConfig
from .system import run

# Marks the NAT rules this module owns, so it can find and converge them.
RULE_COMMENT = "appliance-external"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def nat_rule(cidr: str, uplink: str) -> list[str]:
    """The POSTROUTING rule (iptables-save words, without ``-A CHAIN``): only what comes from
    the external range and leaves through the uplink is masqueraded."""
    return ["-s", cidr, "-o", uplink, "-m", "comment", "--comment", RULE_COMMENT, "-j", "MASQUERADE"]


def owned_rules(saved: str) -> list[list[str]]:
    """Our rules in ``iptables -t nat -S POSTROUTING`` output, as word lists without ``-A POSTROUTING``."""
    rules = []
    for line in saved.splitlines():
        words = line.split()
        if words[:2] == ["-A", "POSTROUTING"] and RULE_COMMENT in words:
            rules.append([w.strip('"') for w in words[2:]])
    return rules


def interface_of(address: str, links: list[dict]) -> str:
    """The interface holding ``address`` in ``ip -json addr`` output."""
    for link in links:
        for info in link.get("addr_info", []):
            if info.get("local") == address:
                return link["ifname"]
    raise ApplianceError(f"no interface holds the management address {address}")


def interface_of_or_none(address: str, links: list[dict]) -> str | None:
    try:
        return interface_of(address, links)
    except ApplianceError:
        return None


def _ip_json(*args: str) -> list[dict]:
    return json.loads(subprocess.run(["ip", "-json", *args], capture_output=True, text=True).stdout or "[]")


def _converge_nat(want: list[list[str]]) -> None:
    have = owned_rules(run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout)
    for rule in list(have):
        if rule not in want or have.count(rule) > 1:
            run(["iptables", "-t", "nat", "-D", "POSTROUTING", *rule])
            have.remove(rule)
    for rule in want:
        if rule not in have:
            run(["iptables", "-t", "nat", "-A", "POSTROUTING", *rule])


def set_address(device: str, address: str) -> None:
    """``device`` holds exactly the IPv4 ``address`` (address/prefix) and is up."""
    have = {f"{a['local']}/{a['prefixlen']}" for link in _ip_json("addr", "show", "dev", device)
            for a in link.get("addr_info", []) if a.get("family") == "inet"}
    for stale in have - {address}:
        run(["ip", "addr", "del", stale, "dev", device])
    if address not in have:
        run(["ip", "addr", "add", address, "dev", device])
    run(["ip", "link", "set", device, "up"])


class HostBridge(Protocol):
    """The external bridge as a network backend makes it."""

    def ensure(self, name: str, address: str) -> None:
        """Bridge ``name`` exists, holds ``address`` (address/prefix) and is up."""

    def attach_uplink(self, name: str, interface: str) -> None:
        """Provider mode: ``interface`` (up) carries the physical network ``external``."""

    def remove(self, name: str) -> None:
        """No bridge ``name`` (nothing to do when there is none)."""


class LinuxBridge:
    """A kernel bridge, mapped by the Linux bridge agent (physical_interface_mappings), which
    also enslaves a provider interface itself."""

    def ensure(self, name: str, address: str) -> None:
        if not _ip_json("link", "show", "dev", name):
            run(["ip", "link", "add", "name", name, "type", "bridge"])
        set_address(name, address)

    def attach_uplink(self, name: str, interface: str) -> None:
        run(["ip", "link", "set", interface, "up"])

    def remove(self, name: str) -> None:
        if _ip_json("link", "show", "dev", name):
            run(["ip", "link", "del", name])


def converge(site: SiteConfig, management_ip: str, bridge: HostBridge) -> str:
    """Bring the host side to what ``site.external`` asks; returns a one-line summary."""
    ext = site.external
    links = _ip_json("addr")
    if ext.mode == "host":
        uplink = interface_of(management_ip, links)
        prefix = ext.cidr.split("/")[1]
        bridge.ensure(ext.bridge, f"{ext.gateway_ip()}/{prefix}")
        IP_FORWARD.write_text("1\n")
        _converge_nat([nat_rule(ext.cidr, uplink)])
        return f"bridge {ext.bridge} {ext.gateway_ip()}/{prefix}, NAT of {ext.cidr} out of {uplink}"
    _converge_nat([])
    if ext.mode == "provider":
        if not any(link["ifname"] == ext.interface for link in links):
            raise ApplianceError(f"external.interface {ext.interface} does not exist on this host")
        if interface_of_or_none(management_ip, links) == ext.interface:
            raise ApplianceError(f"external.interface {ext.interface} holds the management address {management_ip}; "
                                 "the external network needs an interface of its own")
        bridge.attach_uplink(ext.bridge, ext.interface)
        return f"provider interface {ext.interface} up, no NAT"
    bridge.remove(ext.bridge)
    return "no external network"
