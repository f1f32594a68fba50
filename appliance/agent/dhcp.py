"""Every network with DHCP has its DHCP server (dnsmasq) running, or the DHCP agent is made
to set it up again.

Neutron's DHCP agent gives the set-up of a network's DHCP server 300 s, a bound written in its
code (``Dnsmasq.enable`` in neutron/agent/linux/dhcp.py, Zed), and when that passes it logs
"Failed to start DHCP process for network …" and never tries again: the network has no DHCP
server and its instances get no address. A set-up starts the agent's privsep daemons one
after the other, so on a host slow enough (or loaded enough by first boot's other services)
it can miss that bound. The check reads the pid file Neutron writes for each network's
dnsmasq (``dhcp_confs``, default /var/lib/neutron/dhcp/NETWORK_ID/pid).

Recoveries, each tried once, in order, as soon as the agent's log says it gave up on a network
still without a server (or when the long wait passes without a word):

* at first boot, the network is scheduled on its DHCP agent again (Neutron's API: removed from
  the agent, added back; the agent disables it and sets it up again with a fresh 300 s), up to
  RESCHEDULES times. The agent keeps running with the privsep daemons it already started,
  which the set-ups spend most of their time on, so each one gets further;
* a restart of neutron-dhcp-agent, which sets every network up again from nothing (and so
  starts its privsep daemons again). At every boot, when the APIs may still be loading, this
  is the only recovery.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from ..errors import ApplianceError

DHCP_STATE = Path("/var/lib/neutron/dhcp")
# Neutron's own bound for one set-up, and a margin for the agent to notice the network.
NEUTRON_BOUND_S = 300
WAIT_S = NEUTRON_BOUND_S + 60
AGENT_LOG = Path("/var/log/neutron/neutron-dhcp-agent.log")
LOG_HINT = str(AGENT_LOG)
# Neutron's error when a set-up outlasts its bound (Dnsmasq.enable, Zed and later).
GIVE_UP = "Failed to start DHCP process for network "
_GIVE_UP_NETWORK = re.compile(re.escape(GIVE_UP) + r"(?P<network>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
# A give-up of the running agent is recent: the last MiB of its log holds it.
LOG_TAIL_BYTES = 1 << 20


def dnsmasq_runs(network_id: str, state: Path = DHCP_STATE, proc: Path = Path("/proc")) -> bool:
    """True when the network's pid file names a live dnsmasq process."""
    try:
        pid = int((state / network_id / "pid").read_text().strip())
        return (proc / str(pid) / "comm").read_text().strip() == "dnsmasq"
    except (OSError, ValueError):
        return False


def known_networks(state: Path = DHCP_STATE) -> set[str]:
    """The networks the DHCP agent set up before: its per-network directories, which it makes
    before anything else of a set-up and removes when it drops the network."""
    try:
        return {entry.name for entry in state.iterdir() if entry.is_dir()}
    except FileNotFoundError:
        return set()


def dhcp_networks(conn) -> set[str]:
    """IDs of the networks that have at least one subnet with DHCP enabled (openstacksdk)."""
    return {subnet.network_id for subnet in conn.network.subnets() if subnet.is_dhcp_enabled}


def given_up(log_text: str, pid: int | None) -> Counter[str]:
    """How many times the agent process ``pid`` logged it gave up on each network (GIVE_UP,
    then the network's UUID, then — oslo.log appends the exception of an error logged while
    one is handled — ": neutron.common.utils.WaitTimeout: Timed out after 300 seconds"), read
    from oslo.log lines "DATE TIME PID LEVEL LOGGER [...] MESSAGE" (its default
    logging_context_format_string). Lines of earlier agent processes do not count."""
    gave_up: Counter[str] = Counter()
    if not pid:
        return gave_up
    for line in log_text.splitlines():
        fields = line.split(maxsplit=3)
        if len(fields) == 4 and fields[2] == str(pid) and (found := _GIVE_UP_NETWORK.search(fields[3])):
            gave_up[found["network"]] += 1
    return gave_up


def agent_given_up(log: Path = AGENT_LOG) -> Counter[str]:
    """given_up() for the running neutron-dhcp-agent (its systemd MainPID) and its log's tail."""
    from .system import unit_main_pid

    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - LOG_TAIL_BYTES))
            text = handle.read().decode(errors="replace")
    except OSError:
        return Counter()
    return given_up(text, unit_main_pid("neutron-dhcp-agent"))


class Recovery(NamedTuple):
    """One way of making the DHCP agent set networks up again: ``doing`` names it in the
    progress line ("restarting neutron-dhcp-agent"); ``apply`` takes the IDs of the networks
    still without a server."""
    doing: str
    apply: Callable[[list[str]], None]


def ensure_served(networks: Callable[[], Iterable[str]], runs: Callable[[str], bool],
                  recoveries: Sequence[Recovery], say: Callable[[str], None], *,
                  gave_up: Callable[[], Mapping[str, int]] = Counter,
                  wait_s: float = WAIT_S, poll_s: float = 5.0,
                  clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait until ``runs(id)`` holds for every id ``networks()`` gives; apply the next of
    ``recoveries`` as soon as ``gave_up()`` (give-ups per network of the running agent) counts
    a new give-up on a network still without a server, or when ``wait_s`` passes without one.
    A recovery that raises ApplianceError is reported and the next one applied at once.
    Returns the number of recoveries applied. Raises ApplianceError naming the networks still
    without a DHCP server once every recovery had its wait."""
    missing: list[str] = []
    seen: Mapping[str, int] = {}  # give-ups already answered (a rescheduled agent keeps its log)
    unapplied = False  # the last recovery could not be applied: no point waiting on it
    for attempt in range(len(recoveries) + 1):
        started = clock()
        deadline = started + wait_s
        while True:
            missing = sorted(n for n in networks() if not runs(n))
            if not missing:
                return attempt
            counts = gave_up()
            abandoned = {n for n in missing if counts.get(n, 0) > seen.get(n, 0)}
            if abandoned or unapplied or clock() >= deadline:
                break
            sleep(poll_s)
        if attempt == len(recoveries):
            break
        recovery = recoveries[attempt]
        if abandoned:
            say(f"neutron-dhcp-agent gave up on network {', '.join(sorted(abandoned))} (its log: "
                f"\"{GIVE_UP.strip()}\", it does not retry) after {clock() - started:.0f} s: {recovery.doing}")
        elif not unapplied:
            say(f"no DHCP server for network {', '.join(missing)} after {wait_s:.0f} s: {recovery.doing}")
        else:
            say(f"network {', '.join(missing)}: {recovery.doing}")
        try:
            recovery.apply(missing)
            unapplied = False
        except ApplianceError as exc:
            say(f"{recovery.doing} failed: {exc}")
            unapplied = True
        seen = gave_up()
    tried = " then ".join(r.doing for r in recoveries) or "waiting"
    raise ApplianceError(f"network {', '.join(missing)} has no DHCP server (dnsmasq) after {tried}; see {LOG_HINT}")


def restart_after_s() -> float:
    """How long to give an agent that neither serves nor gives up before restarting it: WAIT_S
    times the site's timeouts.scale. Neutron's 300 s start only when the agent begins a
    set-up, and an agent still starting on a slow host needs longer to begin."""
    from .system import patience

    return WAIT_S * patience()


def restart_agent(_missing: list[str] | None = None) -> None:
    from .system import systemctl

    systemctl("restart", "neutron-dhcp-agent")


RESTART = Recovery("restarting neutron-dhcp-agent", restart_agent)


def reschedule(conn, network_ids: list[str]) -> None:
    """Remove each network from the DHCP agents hosting it and add it back (Neutron's
    agent-scheduler API through openstacksdk); a network no agent hosts goes to every alive
    DHCP agent. The agent disables the network, then sets it up again with a fresh bound.

    Agents are passed by ID: openstacksdk 0.101 (bookworm) builds the URL from the object's
    own base path, and the agents ``network_hosting_dhcp_agents`` yields carry the network's
    (/networks/%(network_id)s/dhcp-agents, sent unexpanded: 404). Those calls return without
    checking Neutron's answer, so the result is read back: raises ApplianceError when the
    network is not hosted by the agents afterwards, or when a call fails (openstacksdk's
    SDKException)."""
    from openstack import exceptions

    for network_id in network_ids:
        try:
            agent_ids = [agent.id for agent in conn.network.network_hosting_dhcp_agents(network_id)]
            for agent_id in agent_ids:
                conn.network.remove_dhcp_agent_from_network(agent_id, network_id)
            if not agent_ids:
                agent_ids = [agent.id for agent in conn.network.agents(agent_type="DHCP agent") if agent.is_alive]
            for agent_id in agent_ids:
                # Refused (409) when Neutron's automatic scheduling placed it again first: as wanted.
                conn.network.add_dhcp_agent_to_network(agent_id, network_id)
            hosted = {agent.id for agent in conn.network.network_hosting_dhcp_agents(network_id)}
        except exceptions.SDKException as exc:
            raise ApplianceError(f"network {network_id}: Neutron's API failed while scheduling it again: {exc}") from None
        if not agent_ids or not set(agent_ids) <= hosted:
            raise ApplianceError(f"network {network_id}: not hosted by DHCP agent {', '.join(agent_ids) or '(none alive)'}"
                                 f" after scheduling it again (hosted by: {', '.join(sorted(hosted)) or 'none'})")


# Reschedules before a restart. Each set-up keeps the privsep daemons the ones before it got
# running, so each gets further: one reschedule per daemon a set-up starts (three) lets a
# host that starts each within the bound finish without throwing them away.
RESCHEDULES = 3


def rescheduling(conn) -> Recovery:
    return Recovery("scheduling it on its DHCP agent again", lambda missing: reschedule(conn, missing))


def first_boot_recoveries(conn) -> tuple[Recovery, ...]:
    """RESCHEDULES reschedules (Neutron's API answers by then), then one restart."""
    return (rescheduling(conn),) * RESCHEDULES + (RESTART,)


def ensure_served_at_boot(say: Callable[[str], None]) -> int:
    """At every boot (appliance-dhcp.service): the networks the agent served before have their
    DHCP server again. Local knowledge only: the APIs may still be loading."""
    return ensure_served(known_networks, dnsmasq_runs, (RESTART, RESTART), say, gave_up=agent_given_up,
                         wait_s=restart_after_s())
