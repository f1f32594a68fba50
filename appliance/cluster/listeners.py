"""The controller's node-facing listeners and their allow-list: issuer.NodeAccess for real
(docs/scale-out.md, "Listeners").

A profile's ``nodes:`` ports (profile data) listen on loopback alone until a node joins;
``allow`` then, in this order:

1. puts the node's addresses on the allow-list (allowlist.py), so a port is guarded before
   it opens wider;
2. opens each ``nodes:`` port on the management address, by its transport:

   - ``tls``, the OVN southbound database: the join's CA signs a server certificate for
     the controller (``ovnsb.key`` 0600 beside the CA's key, ``ovnsb.crt``), and
     ``ovn-sbctl set-ssl`` with it and ``set-connection role=ovn-controller
     pssl:<port>:<management address>`` add a TLS remote with OVN's RBAC (ovn-ctl starts the
     southbound ovsdb-server with ``--remote=db:OVN_Southbound,SB_Global,connections`` and its
     TLS files from the ``SSL`` table); the loopback TCP remote of /etc/default/ovn-central
     stays for northd, Neutron and the controller's own chassis;
   - ``tcp``, a server whose address is in its rendered files (Nova's metadata API under
     uWSGI): the service's files rendered again with members (``listen_addresses``: loopback
     and the management address), those that changed written, and their units restarted.

``ready`` refuses, in one line and before an invitation is recorded, a controller where
that cannot be done: no ``nodes:`` port, a port of a transport nothing here opens, a tool
missing. Each step is idempotent: a join retried converges.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Callable, Protocol

from ..errors import ApplianceError
from ..profiles import Profile
from .allowlist import AllowList, Run

SOUTHBOUND = ("ovn", "tls")
SBCTL = "ovn-sbctl"


class Opener(Protocol):
    tools: tuple[str, ...]

    def open(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SouthboundTLS:
    """The southbound database's TLS remote for the nodes' chassis."""

    run: Run
    address: str
    port: int
    key: str
    certificate: str
    ca_certificate: str
    ensure_certificate: Callable[[], object]
    tools: tuple[str, ...] = (SBCTL,)

    def commands(self) -> list[list[str]]:
        return [[SBCTL, "set-ssl", self.key, self.certificate, self.ca_certificate],
                [SBCTL, "set-connection", "role=ovn-controller", f"pssl:{self.port}:{self.address}"]]

    def open(self) -> None:
        self.ensure_certificate()
        for argv in self.commands():
            self.run(argv, None)

    def close(self) -> None:
        self.run([SBCTL, "del-connection"], None)
        self.run([SBCTL, "del-ssl"], None)


@dataclass(frozen=True)
class Rendered:
    """One file as rendered and as it is on disk (None: missing)."""

    path: str
    content: str
    on_disk: str | None
    unit: str  # the unit that reads it ("" : every unit of its service)


def to_restart(files: list[Rendered], service_units: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(paths to write, units to restart) for a service whose files were rendered again:
    the files that changed, and the units that read them (a file naming no unit: all of the
    service's), each once, in the service's order."""
    changed = [f for f in files if f.content != f.on_disk]
    wanted = {u for f in changed for u in ((f.unit,) if f.unit else service_units)}
    return [f.path for f in changed], [u for u in service_units if u in wanted]


@dataclass(frozen=True)
class Rebind:
    """A service whose listening address is in its files: rendered again with or without
    members, written where it changed, its units restarted."""

    service: str
    render: Callable[[bool], list[Rendered]]  # members -> the service's files
    write: Callable[[list[str], bool], None]  # (paths, members) -> written
    restart: Callable[[list[str]], None]
    units: tuple[str, ...]
    tools: tuple[str, ...] = ()

    def _converge(self, members: bool) -> None:
        paths, units = to_restart(self.render(members), self.units)
        if paths:
            self.write(paths, members)
        if units:
            self.restart(units)

    def open(self) -> None:
        self._converge(True)

    def close(self) -> None:
        self._converge(False)


def opener_problems(profile: Profile, openers: dict[tuple[str, str], Opener],
                    have_tool: Callable[[str], object] | None = None) -> list[str]:
    """What keeps this controller from opening its ``nodes:`` ports, one phrase each
    (``have_tool``: default, the PATH)."""
    have_tool = have_tool or shutil.which
    ports = profile.node_ports()
    if not ports:
        return [f"profile {profile.name} declares no port the nodes reach"]
    problems = [f"nothing here opens {svc}'s port {port.port} over {port.nodes}"
                for svc, port in ports if (svc, port.nodes) not in openers]
    tools = ["iptables", "iptables-restore", *(t for o in openers.values() for t in o.tools)]
    problems += [f"{tool} is not installed" for tool in dict.fromkeys(tools) if not have_tool(tool)]
    return problems


class ControllerAccess:
    """issuer.NodeAccess on a controller: ``openers`` by (service, transport)."""

    def __init__(self, profile: Profile, allow_list: AllowList, openers: dict[tuple[str, str], Opener],
                 have_tool: Callable[[str], object] | None = None):
        self.profile, self.allow_list, self.openers, self.have_tool = profile, allow_list, openers, have_tool

    def _used(self) -> list[Opener]:
        return list(dict.fromkeys(self.openers[(svc, port.nodes)] for svc, port in self.profile.node_ports()))

    def ready(self) -> None:
        problems = opener_problems(self.profile, self.openers, self.have_tool)
        if problems:
            raise ApplianceError("this controller cannot let a node in: " + "; ".join(problems))

    def allow(self, node: str, address: str, overlay_ip: str) -> None:
        self.ready()
        self.allow_list.allow(node, [address, overlay_ip])
        for opener in self._used():
            opener.open()

    def forget(self, node: str) -> None:
        """Take ``node`` off the allow-list; the listeners stay (``close`` closes them)."""
        self.allow_list.forget(node)

    def opened(self) -> bool:
        """Whether a join opened the listeners and nothing closed them since."""
        return self.allow_list.exists()

    def close(self) -> None:
        """Back to loopback alone, then no chain: once no node is joining or joined."""
        for opener in self._used():
            opener.close()
        self.allow_list.close()
