"""The booted appliance's outside world, made by the harness: an uplink and a LAN of its own.

Both live in network namespaces the harness creates, so nothing the appliance sends reaches
the host's real network:

- ``uplink-<name>``: the far end of the appliance's management interface, its default
  gateway ``UPLINK_GATEWAY``, and a stand-in for a host on the internet at ``INTERNET_PROBE``
  (RFC 5737 TEST-NET-3) that answers each TCP connection with the source address it saw,
  so a test can tell that outbound NAT happened and with which address.
- ``lan-<name>`` (only when asked for): a LAN on a second interface of the appliance
  (``LAN_INTERFACE``), ``LAN_CIDR`` (RFC 5737 TEST-NET-2) with the LAN's router and a client
  at ``LAN_ROUTER``; the appliance's external network in ``provider`` mode is this LAN.

The veth pairs are made inside the container at every boot (container_fixups), and the
harness moves their far ends out here after the container started.

A **node** (a second appliance that joins the first one's cloud) has no uplink of its own:
its management link's far end goes into the controller's uplink namespace, onto a bridge
(``SEGMENT_BRIDGE``) that also holds the controller's link and the gateway address, so the
two share one L2 segment, 10.254.0.0/24, and the same way out (``join_segment``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from appliance.errors import ApplianceError

UPLINK_GATEWAY = "10.254.0.1"
UPLINK_PEER = "mgmt1"  # the far end of the appliance's mgmt0
INTERNET_HOST = "203.0.113.1"
INTERNET_PORT = 8080
INTERNET_PROBE = f"{INTERNET_HOST}:{INTERNET_PORT}"

LAN_INTERFACE = "lan0"
LAN_PEER = "lan0p"
LAN_CIDR = "198.51.100.0/24"
LAN_ROUTER = "198.51.100.1"
LAN_FLOATING_RANGE = ("198.51.100.100", "198.51.100.199")

REPO_ROOT = Path(__file__).resolve().parents[2]
SEGMENT_BRIDGE = "mgmtbr"
OVERLAY_PEER = "ovl1"  # the far end of a container's overlay link ovl0
OVERLAY_BRIDGE = "ovlbr"  # the overlay segment in the controller's uplink namespace (no address)
GATEWAY_CIDR = f"{UPLINK_GATEWAY}/24"


def uplink_netns(name: str) -> str:
    return f"uplink-{name}"


def lan_netns(name: str) -> str:
    return f"lan-{name}"


def lan_site() -> str:
    """A site config whose external network is the harness's LAN (provider mode)."""
    start, end = LAN_FLOATING_RANGE
    return (f"external: {{mode: provider, interface: {LAN_INTERFACE}, cidr: {LAN_CIDR}, gateway: {LAN_ROUTER},\n"
            f"           floating_range: {{start: {start}, end: {end}}}}}\n")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise ApplianceError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def _move_peer(container_netns: str, peer: str, target_netns: str, address: str, timeout: float = 60) -> None:
    """Wait for the container's fixups to make ``peer``, then move it to ``target_netns``."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["ip", "-n", container_netns, "link", "show", peer], capture_output=True).returncode:
        if time.monotonic() > deadline:
            raise ApplianceError(f"{peer} did not appear in {container_netns} within {timeout:.0f} s")
        time.sleep(0.2)
    _ip("-n", container_netns, "link", "set", peer, "netns", target_netns)
    _ip("-n", target_netns, "addr", "add", address, "dev", peer)
    _ip("-n", target_netns, "link", "set", peer, "up")


def _wait_link(netns: str, link: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["ip", "-n", netns, "link", "show", link], capture_output=True).returncode:
        if time.monotonic() > deadline:
            raise ApplianceError(f"{link} did not appear in {netns} within {timeout:.0f} s")
        time.sleep(0.2)


def _bridge_port(container_netns: str, peer: str, uplink: str, port: str, bridge: str, timeout: float = 60) -> None:
    """Move the container's ``peer`` into ``uplink`` as ``port`` of ``bridge`` (made when missing)."""
    if subprocess.run(["ip", "-n", uplink, "link", "show", bridge], capture_output=True).returncode:
        _ip("-n", uplink, "link", "add", bridge, "type", "bridge")
        _ip("-n", uplink, "link", "set", bridge, "up")
    _wait_link(container_netns, peer, timeout)
    if port != peer:
        _ip("-n", container_netns, "link", "set", peer, "name", port)
    _ip("-n", container_netns, "link", "set", port, "netns", uplink)
    _ip("-n", uplink, "link", "set", port, "master", bridge)
    _ip("-n", uplink, "link", "set", port, "up")


def attach(container_netns: str, name: str, *, lan: bool, overlay: bool = False) -> int:
    """Make the uplink (and the LAN) namespaces and start the internet stand-in; returns its
    pid. ``overlay``: the container's overlay link onto OVERLAY_BRIDGE there."""
    uplink = uplink_netns(name)
    subprocess.run(["ip", "netns", "del", uplink], capture_output=True)
    _ip("netns", "add", uplink)
    _ip("-n", uplink, "link", "set", "lo", "up")
    _ip("-n", uplink, "addr", "add", f"{INTERNET_HOST}/32", "dev", "lo")
    _move_peer(container_netns, UPLINK_PEER, uplink, f"{UPLINK_GATEWAY}/24")
    if overlay:
        _bridge_port(container_netns, OVERLAY_PEER, uplink, OVERLAY_PEER, OVERLAY_BRIDGE)
    if lan:
        lan_ns = lan_netns(name)
        subprocess.run(["ip", "netns", "del", lan_ns], capture_output=True)
        _ip("netns", "add", lan_ns)
        _ip("-n", lan_ns, "link", "set", "lo", "up")
        _move_peer(container_netns, LAN_PEER, lan_ns, f"{LAN_ROUTER}/{LAN_CIDR.split('/')[1]}")
        # The LAN stand-in is a wire: what arrives from a physical LAN carries complete
        # checksums, while a veth leaves TCP's to the receiver (TX checksum offload), which
        # Open vSwitch's userspace datapath, reading this veth's peer, does not fill.
        subprocess.run(["ip", "netns", "exec", lan_ns, "ethtool", "--offload", LAN_PEER, "tx", "off"],
                       capture_output=True, check=True)
    responder = subprocess.Popen(
        ["ip", "netns", "exec", uplink, sys.executable, "-m", "pipeline.harness.responder", INTERNET_HOST,
         str(INTERNET_PORT)], cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    return responder.pid


def segment_port(name: str, prefix: str = "mg") -> str:
    """The name of node ``name``'s link in the controller's uplink namespace (``prefix``
    "mg": management, "ov": overlay): unique per node and within Linux's 15 characters,
    whatever the node's name."""
    return prefix + hashlib.sha256(name.encode("utf-8")).hexdigest()[:10]


def bridge_commands(uplink: str, mac: str) -> list[list[str]]:
    """``ip`` commands that turn the controller's uplink namespace ``uplink`` into a bridged
    segment: a bridge with the link's MAC address (so the controller's neighbour entry for
    its gateway stays right), the gateway address moved from the link to the bridge, the
    link a port of it."""
    return [["-n", uplink, "link", "add", SEGMENT_BRIDGE, "address", mac, "type", "bridge"],
            ["-n", uplink, "link", "set", SEGMENT_BRIDGE, "up"],
            ["-n", uplink, "addr", "del", GATEWAY_CIDR, "dev", UPLINK_PEER],
            ["-n", uplink, "addr", "add", GATEWAY_CIDR, "dev", SEGMENT_BRIDGE],
            ["-n", uplink, "link", "set", UPLINK_PEER, "master", SEGMENT_BRIDGE]]


def _link_mac(netns: str, link: str) -> str:
    out = subprocess.run(["ip", "-n", netns, "-j", "link", "show", link], capture_output=True, text=True)
    if out.returncode != 0:
        raise ApplianceError(f"{link} is not in {netns}: is the controller booted? ({out.stderr.strip()})")
    return json.loads(out.stdout)[0]["address"]


def join_segment(container_netns: str, name: str, controller: str, *, overlay: bool = False,
                 timeout: float = 60) -> None:
    """Put node ``name``'s management link on the management segment of the appliance
    ``controller`` (booted first): its far end, renamed (``segment_port``), becomes a port of
    the bridge in the controller's uplink namespace, made on the first node's arrival.
    ``overlay``: its overlay link likewise onto the controller's OVERLAY_BRIDGE."""
    uplink = uplink_netns(controller)
    if subprocess.run(["ip", "-n", uplink, "link", "show", SEGMENT_BRIDGE], capture_output=True).returncode:
        for command in bridge_commands(uplink, _link_mac(uplink, UPLINK_PEER)):
            _ip(*command)
    _bridge_port(container_netns, UPLINK_PEER, uplink, segment_port(name), SEGMENT_BRIDGE, timeout)
    if overlay:
        _bridge_port(container_netns, OVERLAY_PEER, uplink, segment_port(name, "ov"), OVERLAY_BRIDGE, timeout)


def detach(name: str, responder_pid: int) -> None:
    """Stop the internet stand-in and remove the namespaces (their veth ends go with them)."""
    if responder_pid > 0:
        try:
            cmdline = Path(f"/proc/{responder_pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        if b"pipeline.harness.responder" in cmdline:
            subprocess.run(["kill", str(responder_pid)], capture_output=True)
    for netns in (uplink_netns(name), lan_netns(name)):
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
