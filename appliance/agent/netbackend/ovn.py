"""ML2/OVN (trixie-epoxy): Open vSwitch with OVN's central databases, northd and this
chassis' ovn-controller; Neutron's OVN metadata agent. No L3, DHCP or Linux bridge agent:
OVN's logical routers, DHCP and ACLs do their work.

Sources: ovn-controller(8) for the ``external_ids`` it reads (ovn-remote, ovn-encap-*,
ovn-bridge-mappings, ovn-bridge-datapath-type, ovn-cms-options); Neutron's OVN driver binds
a port to the chassis whose hostname is Nova's host (mech_driver.py, 2025.1); os-vif and the
metadata agent reach OVSDB at tcp:127.0.0.1:6640 (their default / our template).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ...render import HostFacts
from ..context import AgentContext
from ..external import HostBridge, set_address
from ..runner import Step
from ..system import enable_and_start, log, run
from . import tunnel

MODULE = Path("/sys/module/openvswitch")
# os-vif's and the metadata agent's way into OVSDB; loopback only (declared in the profile).
OVSDB_MANAGER = "ptcp:6640:127.0.0.1"
SOUTHBOUND = "tcp:127.0.0.1:6642"
# The profile's physical network name for the external network (steps_cloud.EXTERNAL_PHYSNET).
EXTERNAL_PHYSNET = "external"
DATABASE_UNITS = ["ovsdb-server"]
SWITCH_UNITS = ["ovs-vswitchd", "openvswitch-switch", "ovs-record-hostname"]
CENTRAL_UNITS = ["ovn-ovsdb-server-nb", "ovn-ovsdb-server-sb", "ovn-northd", "ovn-central"]
CONTROLLER_UNITS = ["ovn-controller", "ovn-host"]


# OVN's northd serves DHCP from the databases: a network needs no agent to exist first.
AGENTS_BEFORE_NETWORKS: tuple[str, ...] = ()


def choose_datapath(module: Path = MODULE, modprobe=lambda: subprocess.run(
        ["modprobe", "openvswitch"], capture_output=True).returncode == 0) -> str:
    """"system" where the kernel's openvswitch module is loaded or loads (a VM, a server),
    "netdev" (Open vSwitch's userspace datapath) where it cannot (a container on a kernel
    without the module)."""
    if module.exists() or (modprobe() and module.exists()):
        return "system"
    return "netdev"


class OvsBridge:
    """The external bridge as an Open vSwitch bridge of the chassis' datapath type (patch
    ports join only bridges of one type), mapped to ``external`` by ovn-bridge-mappings."""

    def __init__(self, datapath: str):
        self.datapath = datapath

    def _bridge(self, name: str) -> None:
        # Without --no-wait ovs-vsctl returns once ovs-vswitchd made the internal port.
        run(["ovs-vsctl", "--may-exist", "add-br", name, "--", "set", "bridge", name,
             f"datapath_type={self.datapath}"])

    def ensure(self, name: str, address: str) -> None:
        self._bridge(name)
        set_address(name, address)

    def attach_uplink(self, name: str, interface: str) -> None:
        self._bridge(name)
        run(["ovs-vsctl", "--may-exist", "add-port", name, interface])
        run(["ip", "link", "set", interface, "up"])
        run(["ip", "link", "set", name, "up"])

    def remove(self, name: str) -> None:
        run(["ovs-vsctl", "--if-exists", "del-br", name])


def host_bridge(facts: HostFacts) -> HostBridge:
    return OvsBridge(facts.datapath)


def chassis_settings(ctx: AgentContext) -> dict[str, str]:
    """The Open_vSwitch table's external_ids this chassis runs with (ovn-controller(8)).
    The chassis is named after the host: Neutron binds ports to the chassis whose hostname
    is Nova's host."""
    facts, ext = ctx.facts, ctx.site.external
    settings = {
        "system-id": facts.hostname,
        "hostname": facts.hostname,
        "ovn-remote": SOUTHBOUND,
        "ovn-encap-type": "geneve",
        "ovn-encap-ip": facts.overlay_ip,
        "ovn-bridge": "br-int",
        "ovn-bridge-datapath-type": facts.datapath,
        # This chassis hosts the routers' gateway ports (SNAT, floating IPs).
        "ovn-cms-options": "enable-chassis-as-gw",
    }
    if ext.enabled:
        settings["ovn-bridge-mappings"] = f"{EXTERNAL_PHYSNET}:{ext.bridge}"
    return settings


def configure_chassis(ctx: AgentContext) -> None:
    """Start OVSDB, point this chassis at the southbound database with its datapath, then
    start the switch, the central databases with northd, and ovn-controller."""
    enable_and_start(DATABASE_UNITS)
    run(["ovs-vsctl", "--no-wait", "set-manager", OVSDB_MANAGER])
    settings = chassis_settings(ctx)
    run(["ovs-vsctl", "--no-wait", "set", "open_vswitch", ".",
         *(f"external_ids:{key}={value}" for key, value in settings.items())])
    if "ovn-bridge-mappings" not in settings:
        run(["ovs-vsctl", "--no-wait", "remove", "open_vswitch", ".", "external_ids", "ovn-bridge-mappings"])
    enable_and_start(SWITCH_UNITS + CENTRAL_UNITS)
    tunnel.place_endpoint(datapath=ctx.facts.datapath, overlay_ip=ctx.facts.overlay_ip,
                          management_ip=ctx.facts.management_ip, at_boot=True)
    enable_and_start(CONTROLLER_UNITS)
    log(f"chassis {settings['system-id']}: datapath {settings['ovn-bridge-datapath-type']}, "
        f"encapsulation geneve on {settings['ovn-encap-ip']}")


def chassis_steps(ctx: AgentContext) -> list[Step]:
    return [Step("chassis", "Open vSwitch and OVN: datapath, databases, this chassis",
                 lambda: configure_chassis(ctx))]


def final_steps(ctx: AgentContext) -> list[Step]:
    return []
