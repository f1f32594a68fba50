"""The Geneve endpoint on Open vSwitch's userspace datapath.

On the kernel datapath ("system") the kernel terminates Geneve on whatever interface holds
the chassis' ``ovn-encap-ip``. On the userspace datapath ("netdev": a container on a kernel
without the openvswitch module) Open vSwitch sends and receives tunnel packets itself, and
only through a bridge of its own that holds the endpoint's address: it routes a tunnel by
the kernel routes of its bridges' internal ports (Open vSwitch's "Userspace Datapath -
Tunneling" documentation: the address on ``br-phy``, the physical port a port of it).
Without that a chassis reaches no other chassis: a single appliance does not notice, a
compute node does.

So where the overlay address (the site's ``overlay_ip``) is on an interface of its own, not
the management interface, the chassis step makes it a port of ``BRIDGE`` and moves the
address onto the bridge, keeping the interface's MAC address. Where the overlay address is
the management address nothing is moved (that would cut the management network whenever
the switch restarts); the step says so, and a second chassis cannot tunnel to this one.
"""

from __future__ import annotations

import ipaddress

from ...errors import ApplianceError

BRIDGE = "br-overlay"
# Puts the address back on BRIDGE at every boot (the profile's file of the ovn service).
BOOT_UNIT = "appliance-overlay-endpoint.service"


def interface_of(addresses: list[dict], ip: str) -> tuple[str, int, str] | None:
    """(interface, prefix length, MAC address) holding ``ip`` in ``ip -j addr show``'s
    answer, or None."""
    for link in addresses:
        for info in link.get("addr_info", []):
            if info.get("family") == "inet" and info.get("local") == ip:
                return link["ifname"], int(info["prefixlen"]), link.get("address", "")
    return None


def endpoint_commands(addresses: list[dict], *, datapath: str, overlay_ip: str,
                      management_ip: str) -> tuple[list[list[str]], str]:
    """(commands, what they do in one phrase) that put ``overlay_ip`` on BRIDGE; no command
    where nothing is to be done. ApplianceError (one line) where the address is on no
    interface."""
    if datapath != "netdev":
        return [], f"geneve on {overlay_ip} (kernel datapath)"
    if overlay_ip == management_ip:
        return [], (f"geneve on {overlay_ip}, the management address: left where it is, so no other chassis "
                    "can tunnel to this one on the userspace datapath (give the site an overlay_ip on an "
                    "interface of its own)")
    found = interface_of(addresses, overlay_ip)
    if found is None:
        raise ApplianceError(f"overlay_ip {overlay_ip} is on no interface of this host")
    interface, prefix, mac = found
    if interface == BRIDGE:
        return [], f"geneve on {overlay_ip}, on {BRIDGE} already"
    cidr = f"{ipaddress.IPv4Address(overlay_ip)}/{prefix}"
    commands = [
        ["ovs-vsctl", "--may-exist", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev",
         "fail_mode=standalone", *([f"other_config:hwaddr={mac}"] if mac else [])],
        ["ovs-vsctl", "--may-exist", "add-port", BRIDGE, interface],
        ["ip", "addr", "del", cidr, "dev", interface],
        ["ip", "addr", "replace", cidr, "dev", BRIDGE],
        ["ip", "link", "set", BRIDGE, "up"],
    ]
    return commands, f"geneve on {overlay_ip}, moved from {interface} onto {BRIDGE} (userspace tunnelling)"


def place_endpoint(*, datapath: str, overlay_ip: str, management_ip: str, command=None, say=None,
                   at_boot: bool = False) -> None:
    """Run endpoint_commands on this host (once the switch runs) and log what was done.
    ``at_boot``: also enable BOOT_UNIT where the endpoint is on the bridge (the chassis steps),
    so a reboot puts the address back there."""
    import json

    from ..system import log, run

    command, say = command or run, say or log
    addresses = json.loads(command(["ip", "-j", "addr", "show"]).stdout or "[]")
    commands, what = endpoint_commands(addresses, datapath=datapath, overlay_ip=overlay_ip,
                                       management_ip=management_ip)
    for argv in commands:
        command(argv)
    if at_boot and datapath == "netdev" and overlay_ip != management_ip:
        command(["systemctl", "enable", BOOT_UNIT])
    say(what)
