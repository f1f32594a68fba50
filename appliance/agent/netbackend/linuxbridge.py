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

# A network made while the DHCP agent was still starting was left without DHCP until the
# dhcp step's recovery (6 minutes on bookworm-zed).
AGENTS_BEFORE_NETWORKS = ("neutron-dhcp-agent",)


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
