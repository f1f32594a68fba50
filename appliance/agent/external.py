"""The host side of the external network, converged at every boot and by first boot.

Mode ``host``: a Linux bridge (``external.bridge``) that holds the external gateway address,
mapped by the Linux bridge agent to the flat physical network ``external``; the appliance
reaches every floating IP through it, and forwards and masquerades what the tenant routers
send out of the external range through the management (uplink) interface. Mode
``provider``: the operator's LAN interface is brought up and left to the agent. Mode
``none``: whatever an earlier mode set up here is removed.

Kernel state (links, addresses, netfilter rules) is lost at a reboot, so
``appliance-external-network.service`` runs this at every boot, before the agents.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..errors import ApplianceError
from ..site import SiteConfig
from .system import log, run

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


def _ensure_bridge(name: str, address: str) -> None:
    if not _ip_json("link", "show", "dev", name):
        run(["ip", "link", "add", "name", name, "type", "bridge"])
    have = {f"{a['local']}/{a['prefixlen']}" for link in _ip_json("addr", "show", "dev", name)
            for a in link.get("addr_info", []) if a.get("family") == "inet"}
    for stale in have - {address}:
        run(["ip", "addr", "del", stale, "dev", name])
    if address not in have:
        run(["ip", "addr", "add", address, "dev", name])
    run(["ip", "link", "set", name, "up"])


def _remove_bridge(name: str) -> None:
    if _ip_json("link", "show", "dev", name):
        run(["ip", "link", "del", name])


def converge(site: SiteConfig, management_ip: str) -> str:
    """Bring the host side to what ``site.external`` asks; returns a one-line summary."""
    ext = site.external
    links = _ip_json("addr")
    if ext.mode == "host":
        uplink = interface_of(management_ip, links)
        prefix = ext.cidr.split("/")[1]
        _ensure_bridge(ext.bridge, f"{ext.gateway_ip()}/{prefix}")
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
        run(["ip", "link", "set", ext.interface, "up"])
        return f"provider interface {ext.interface} up, no NAT"
    _remove_bridge(ext.bridge)
    return "no external network"


def converge_from_state(ctx) -> int:
    """`appliance external-network` (the boot unit): converge from the recorded facts;
    before first boot has recorded them there is nothing to do yet."""
    facts_path = ctx.paths.facts
    if not facts_path.exists():
        print("appliance: external network: host facts not recorded yet (first boot has not run); nothing to do")
        return 0
    summary = converge(ctx.site, ctx.facts.management_ip)
    log(f"external network: {summary}")
    print(f"appliance: external network: {summary}")
    return 0
