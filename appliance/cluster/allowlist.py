"""The controller's allow-list in front of its node-facing ports (docs/scale-out.md,
"Listeners", "Revocation").

Which ports it guards is profile data: every declared port with ``nodes:`` (trixie-epoxy:
the OVN southbound database 6642 and Nova's metadata API 8775), ``Profile.node_ports``.
Whom it lets through: loopback, and the addresses of the nodes that joined (each node's TCP
peer address at its join and its Geneve endpoint), kept in ``allowed.json`` beside the node
registry (0600, rewritten whole). Everyone else's packets to a guarded port are dropped,
so removing a node's address revokes what its certificate and credentials would still
open: OVSDB's TLS has no revocation list.

The rules are an iptables chain (``CHAIN``) that INPUT jumps to, loaded whole and at once
with ``iptables-restore --noflush`` (a user chain it declares is flushed and refilled, the
rest of the table untouched); iptables is in the image (Debian's, over nf_tables),
nftables' own tool is not. The chain exists from the first join until the listeners close
(``close``: no jump, no chain).

Geneve (UDP 6081) is not guarded here: on the userspace datapath of a container Open vSwitch
reads the tunnel's packets before netfilter sees them, and OVN makes a tunnel port only for
the chassis it knows, so a removed node's chassis (deleted with it) has none.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ApplianceError
from ..files import atomic_write
from ..profiles import Profile

CHAIN = "appliance-nodes"
RESTORE = ["iptables-restore", "--noflush"]
JUMP = ["INPUT", "-j", CHAIN]

# (argv, stdin or None) -> stdout; raises ApplianceError when the command fails.
Run = Callable[[list[str], "str | None"], str]
# argv -> whether it exited 0 (a question, not a change).
Check = Callable[[list[str]], bool]


@dataclass(frozen=True, order=True)
class Guard:
    protocol: str
    port: int


def guards(profile: Profile) -> tuple[Guard, ...]:
    """The ports the allow-list fronts: the profile's ``nodes:`` ports, sorted, each once."""
    return tuple(sorted({Guard(port.protocol, port.port) for _svc, port in profile.node_ports()}))


def check_address(address: str) -> str:
    """One unicast IPv4 address another host has (what a rule may name), as text."""
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        raise ApplianceError(f"allow-list: {address!r} is not an IPv4 address") from None
    if parsed.is_unspecified or parsed.is_loopback or parsed.is_multicast or parsed.is_link_local:
        raise ApplianceError(f"allow-list: {address} is not a unicast address of another host")
    return str(parsed)


def ruleset(guarded: tuple[Guard, ...], addresses: list[str]) -> str:
    """``iptables-restore --noflush`` input for CHAIN: loopback and ``addresses`` return to
    INPUT, anything else to a guarded port is dropped. No guard: an empty chain."""
    if not guarded:
        return f"*filter\n:{CHAIN} - [0:0]\nCOMMIT\n"
    lines = ["*filter", f":{CHAIN} - [0:0]", f"-A {CHAIN} -i lo -j RETURN"]
    lines += [f"-A {CHAIN} -s {address}/32 -j RETURN"
              for address in sorted(set(map(check_address, addresses)), key=ipaddress.IPv4Address)]
    for protocol in sorted({g.protocol for g in guarded}):
        ports = ",".join(str(g.port) for g in guarded if g.protocol == protocol)
        lines.append(f"-A {CHAIN} -p {protocol} -m multiport --dports {ports} -j DROP")
    return "\n".join(lines + ["COMMIT", ""])


class AllowList:
    """The allowed addresses by node (``path``) and the chain that enforces them."""

    def __init__(self, path: Path, guarded: tuple[Guard, ...], *, run: Run, check: Check):
        self.path, self.guarded, self.run, self.check = Path(path), guarded, run, check

    def entries(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            raise ApplianceError(f"{self.path} is damaged: not JSON (the node addresses of the allow-list); "
                                 "appliance remove-node and add-node rebuild it") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ApplianceError(f"{self.path} is damaged: expected node names with their addresses")
        return data

    def allow(self, node: str, addresses: list[str]) -> None:
        """Let ``node``'s ``addresses`` through (replacing what it had), then enforce."""
        entries = self.entries()
        entries[node] = sorted({check_address(a) for a in addresses}, key=ipaddress.IPv4Address)
        self._save(entries)
        self.enforce(entries)

    def forget(self, node: str) -> None:
        """Take ``node`` off (gone already is no error). The chain stays, guarding for
        loopback alone once no node is left, until ``close``: the listeners close first."""
        entries = self.entries()
        entries.pop(node, None)
        self._save(entries)
        self.enforce(entries)

    def enforce(self, entries: dict[str, list[str]] | None = None) -> None:
        """Load the chain from ``entries`` (default: the file) and make INPUT jump to it."""
        entries = self.entries() if entries is None else entries
        self.run(RESTORE, ruleset(self.guarded, [a for addresses in entries.values() for a in addresses]))
        if not self.check(["iptables", "-C", *JUMP]):
            self.run(["iptables", "-I", JUMP[0], "1", *JUMP[1:]], None)

    def exists(self) -> bool:
        """Whether a join made the list (and its chain) and no ``close`` removed it since."""
        return self.path.exists()

    def close(self) -> None:
        """No node: no jump, no chain, no file (each gone already is no error)."""
        while self.check(["iptables", "-C", *JUMP]):
            self.run(["iptables", "-D", *JUMP], None)
        if self.check(["iptables", "-n", "-L", CHAIN]):
            self.run(["iptables", "-F", CHAIN], None)
            self.run(["iptables", "-X", CHAIN], None)
        self.path.unlink(missing_ok=True)

    def _save(self, entries: dict[str, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path, json.dumps(entries, indent=2, sort_keys=True) + "\n", mode=0o600)
