"""ML2/Linux bridge (bookworm-zed, xenial-newton): Neutron's L3, DHCP, metadata and Linux
bridge agents; no Open vSwitch."""

from __future__ import annotations

from ...render import HostFacts
from .. import dhcp
from ..context import AgentContext
from ..external import HostBridge, LinuxBridge
from ..runner import Step
from ..steps_openstack import connect
from ..system import log

# Neutron schedules a network on a DHCP agent when its subnet is made, and never again by
# itself. Its DHCP scheduler keeps only agents on hosts that the mechanism driver can bind the
# network's segment on (DhcpFilter._filter_agents_with_network_access, then ML2's
# filter_hosts_with_segment_access), which for Linux bridge takes the host's Linux bridge agent
# to have reported. A network made before both had reported stayed without DHCP until the dhcp
# step's recovery, six minutes later.
AGENTS_BEFORE_NETWORKS = ("neutron-linuxbridge-agent", "neutron-dhcp-agent")


def choose_datapath() -> str:
    return ""


def host_bridge(facts: HostFacts) -> HostBridge:
    return LinuxBridge()


def chassis_steps(ctx: AgentContext) -> list[Step]:
    return []


def dhcp_servers(ctx: AgentContext) -> None:
    """Every network with DHCP has its dnsmasq; if Neutron's agent gave up on one, the network
    is scheduled on the agent again (up to dhcp.RESCHEDULES times), then the agent restarted
    (dhcp.py)."""
    conn = connect(ctx)
    recoveries = dhcp.first_boot_recoveries(conn)
    used = dhcp.ensure_served(lambda: dhcp.dhcp_networks(conn) | dhcp.known_networks(), dhcp.dnsmasq_runs,
                              recoveries, log, gave_up=dhcp.agent_given_up, wait_s=dhcp.restart_after_s())
    if used:
        log(f"DHCP servers running after {' then '.join(r.doing for r in recoveries[:used])}")


def final_steps(ctx: AgentContext) -> list[Step]:
    # Neutron's DHCP agent gives a network's set-up 300 s and never retries: on a slow
    # machine the tenant network was left without DHCP.
    return [Step("dhcp", "every network with DHCP has its DHCP server", lambda: dhcp_servers(ctx))]
