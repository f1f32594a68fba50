"""Every network with DHCP has its DHCP server (dnsmasq) running, or the DHCP agent is made
to set it up again.

Neutron's DHCP agent gives the set-up of a network's DHCP server 300 s, a bound written in its
code (``Dnsmasq.enable`` in neutron/agent/linux/dhcp.py, Zed), and when that passes it logs
"Failed to start DHCP process for network …" and never tries again: the network has no DHCP
server and its instances get no address. On a 2-vCPU TCG VM, first boot's tenant network
missed that bound: the set-up started three privsep daemons one after the other (47, 71 and
67 s) while first boot's services were still loading. Restarting the agent sets every network
up again (then 187 s). The check reads the pid file Neutron writes for each network's dnsmasq
(``dhcp_confs``, default /var/lib/neutron/dhcp/NETWORK_ID/pid).

The agent is restarted as soon as its log says it gave up on a network still without a
server; the long wait is only for an agent that neither serves nor gives up (CI's TCG VM
waited 1440 s for an agent that had given up long before).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ApplianceError

DHCP_STATE = Path("/var/lib/neutron/dhcp")
# Neutron's own bound for one set-up, and a margin for the agent to notice the network.
NEUTRON_BOUND_S = 300
WAIT_S = NEUTRON_BOUND_S + 60
ATTEMPTS = 3  # the agent's own try, then up to two restarts
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


def given_up(log_text: str, pid: int | None) -> set[str]:
    """IDs of the networks the agent process ``pid`` logged it gave up on (GIVE_UP, then the
    network's UUID, then — oslo.log appends the exception of an error logged while one is
    handled — ": neutron.common.utils.WaitTimeout: Timed out after 300 seconds"), read from
    oslo.log lines "DATE TIME PID LEVEL LOGGER [...] MESSAGE" (its default
    logging_context_format_string). Lines of earlier agent processes do not count."""
    if not pid:
        return set()
    gave_up = set()
    for line in log_text.splitlines():
        fields = line.split(maxsplit=3)
        if len(fields) == 4 and fields[2] == str(pid) and (found := _GIVE_UP_NETWORK.search(fields[3])):
            gave_up.add(found["network"])
    return gave_up


def agent_given_up(log: Path = AGENT_LOG) -> set[str]:
    """given_up() for the running neutron-dhcp-agent (its systemd MainPID) and its log's tail."""
    from .system import unit_main_pid

    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - LOG_TAIL_BYTES))
            text = handle.read().decode(errors="replace")
    except OSError:
        return set()
    return given_up(text, unit_main_pid("neutron-dhcp-agent"))


def ensure_served(networks: Callable[[], Iterable[str]], runs: Callable[[str], bool],
                  restart: Callable[[], None], say: Callable[[str], None], *,
                  gave_up: Callable[[], set[str]] = set,
                  wait_s: float = WAIT_S, attempts: int = ATTEMPTS, poll_s: float = 5.0,
                  clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait until ``runs(id)`` holds for every id ``networks()`` gives, restarting the DHCP
    agent as soon as ``gave_up()`` names a network still without a server, or when ``wait_s``
    passes without one; returns the number of restarts. Raises ApplianceError naming the
    networks still without a DHCP server after ``attempts`` waits."""
    missing: list[str] = []
    for attempt in range(1, attempts + 1):
        started = clock()
        deadline = started + wait_s
        while True:
            missing = sorted(n for n in networks() if not runs(n))
            if not missing:
                return attempt - 1
            abandoned = set(missing) & gave_up()
            if abandoned or clock() >= deadline:
                break
            sleep(poll_s)
        if attempt < attempts:
            if abandoned:
                say(f"neutron-dhcp-agent gave up on network {', '.join(sorted(abandoned))} (its log: "
                    f"\"{GIVE_UP.strip()}\", it does not retry) after {clock() - started:.0f} s: restarting it")
            else:
                say(f"no DHCP server for network {', '.join(missing)} after {wait_s:.0f} s: "
                    f"restarting neutron-dhcp-agent")
            restart()
    raise ApplianceError(f"network {', '.join(missing)} has no DHCP server (dnsmasq) after {attempts - 1} restarts "
                         f"of neutron-dhcp-agent; see {LOG_HINT}")


def restart_after_s() -> float:
    """How long to give the agent before restarting it: WAIT_S times the machine's slowness.
    Neutron's 300 s start only when the agent begins a set-up, and an agent that is itself
    still starting under load needs longer to begin: in a TCG VM after a reboot a 360 s wait
    from boot restarted an agent that had not failed yet."""
    from .system import patience

    return WAIT_S * patience()


def restart_agent() -> None:
    from .system import systemctl

    systemctl("restart", "neutron-dhcp-agent")


def ensure_served_at_boot(say: Callable[[str], None]) -> int:
    """At every boot (appliance-dhcp.service): the networks the agent served before have their
    DHCP server again. Local knowledge only: the APIs may still be loading."""
    return ensure_served(known_networks, dnsmasq_runs, restart_agent, say, gave_up=agent_given_up,
                         wait_s=restart_after_s())
