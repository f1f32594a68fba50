"""The controller's record of its nodes: who is invited, who is joining, who joined.

One JSON file, ``<state_dir>/cluster/nodes.json`` (0600 in a 0700 directory), changed only
under an flock of ``nodes.lock`` beside it and rewritten whole with ``files.atomic_write``, so
a reader never sees half a file and two `appliance add-node` runs cannot both take one name.
Shape::

    {"version": 1, "nodes": {"<name>": {"state": "invited" | "joining" | "joined",
        "secret_sha256": "<hex>" (invited only), "invited_at": <s>, "expires_at": <s>,
        "redeemed_at": <s> | null, "address": "<IPv4>" | null}}}

Times are whole Unix seconds (UTC). A token is redeemed once: ``redeem`` moves the node from
``invited`` to ``joining`` before anything is handed out, so a second use of the same token is
refused even if the first join failed half-way (`appliance remove-node` then cleans up and
`appliance add-node` invites again). No secret is stored, only its SHA-256 (token.py).
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

from ..errors import ApplianceError
from ..files import atomic_write
from .errors import ClusterError
from .names import check_node_name
from .token import new_secret, secret_digest, secret_matches, utc

VERSION = 1
STATES = ("invited", "joining", "joined")


@dataclass(frozen=True)
class Node:
    name: str
    state: str
    invited_at: int
    expires_at: int
    secret_sha256: str = ""
    redeemed_at: int | None = None
    address: str | None = None

    def __repr__(self) -> str:  # the digest is not a secret, but it has no place in a log either
        return f"Node({self.name!r}, {self.state}, expires_at={self.expires_at}, address={self.address!r})"


class NodeRegistry:
    """The node file under ``directory`` (normally /var/lib/appliance/cluster)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / "nodes.json"
        self.lock_path = self.directory / "nodes.lock"

    # -- reading -------------------------------------------------------------------------

    def nodes(self) -> dict[str, Node]:
        """Every node by name (empty when the file does not exist yet)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
            nodes = {name: Node(name=name, **fields) for name, fields in data["nodes"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ApplianceError(f"{self.path} is damaged ({exc}); it lists the nodes of this cloud: restore it "
                                 "from a backup rather than delete it") from None
        for node in nodes.values():
            if node.state not in STATES:
                raise ApplianceError(f"{self.path} is damaged (node {node.name!r} in unknown state {node.state!r})")
        return nodes

    def get(self, name: str) -> Node:
        """The node ``name``; ClusterError(kind="unknown") when there is none."""
        node = self.nodes().get(check_node_name(name))
        if node is None:
            raise ClusterError("unknown", f"no node {name!r} on this controller (appliance add-node {name} invites it)")
        return node

    def has_nodes(self) -> bool:
        """Whether any node is recorded at all (invited, joining or joined)."""
        return bool(self.nodes())

    def has_members(self) -> bool:
        """Whether a node redeemed its token (joining or joined): the controller's
        node-facing listeners (ports with ``nodes:``) are open exactly while this holds
        (docs/scale-out.md, "Listeners")."""
        return any(node.state != "invited" for node in self.nodes().values())

    def has_pending(self, now: int) -> bool:
        """Whether an invitation can still be redeemed: the join service listens exactly
        while this holds."""
        return any(node.state == "invited" and now < node.expires_at for node in self.nodes().values())

    # -- changing ------------------------------------------------------------------------

    def check_free(self, name: str, *, controller: str, now: int) -> None:
        """Refuse what ``invite`` would refuse, without changing anything: a command checks
        the name before it does slower work (the CA), and ``invite`` checks again under the
        lock."""
        check_node_name(name)
        _check_free(self.nodes(), name, controller, now)

    def invite(self, name: str, *, controller: str, now: int, lifetime: int) -> tuple[Node, str]:
        """Invite ``name`` for ``lifetime`` seconds from ``now``: returns the node and the
        token's secret (shown once, stored only as its digest).

        Refused (ClusterError): a bad name ("name"); the controller's own host name, a node
        that is joining or joined, or an invitation still pending ("clash"). An expired
        invitation of that name is replaced."""
        check_node_name(name)
        with self._locked() as nodes:
            _check_free(nodes, name, controller, now)
            secret = new_secret()
            node = Node(name=name, state="invited", invited_at=now, expires_at=now + lifetime,
                        secret_sha256=secret_digest(secret))
            nodes[name] = node
        return node, secret

    def redeem(self, name: str, secret: str, *, now: int, address: str) -> Node:
        """Take the invitation of ``name`` with ``secret`` from a node at ``address``: the
        node becomes ``joining`` and the token can never be used again.

        Refused (ClusterError): "unknown", "used" (joining or joined already), "expired",
        "mismatch" (not the secret of the pending invitation)."""
        with self._locked() as nodes:
            node = nodes.get(check_node_name(name))
            if node is None:
                raise ClusterError("unknown", f"no node {name!r} is invited on this controller "
                                              f"(appliance add-node {name} on the controller invites it)")
            if node.state != "invited":
                raise ClusterError("used", f"the join token for node {name!r} was already used (at "
                                           f"{utc(node.redeemed_at or node.invited_at)}); a token joins once: on the "
                                           f"controller, appliance remove-node {name}, then appliance add-node {name}")
            if now >= node.expires_at:
                raise ClusterError("expired", f"the invitation of node {name!r} expired at {utc(node.expires_at)}; "
                                              f"issue a new one on the controller: appliance add-node {name}")
            if not secret_matches(secret, node.secret_sha256):
                raise ClusterError("mismatch", f"the join token for node {name!r} is not the one of its pending "
                                               "invitation (an older token, or altered)")
            node = replace(node, state="joining", secret_sha256="", redeemed_at=now, address=address)
            nodes[name] = node
        return node

    def mark_joined(self, name: str) -> Node:
        """A joining node whose compute service reported up."""
        with self._locked() as nodes:
            node = nodes.get(name)
            if node is None or node.state != "joining":
                raise ClusterError("unknown", f"no node {name!r} is joining")
            node = nodes[name] = replace(node, state="joined")
        return node

    def remove(self, name: str) -> Node:
        """Forget ``name``; returns what was recorded, so the caller knows what to clean up.
        ClusterError(kind="unknown") when there is no such node."""
        with self._locked() as nodes:
            node = nodes.pop(check_node_name(name), None)
            if node is None:
                raise ClusterError("unknown", f"no node {name!r} on this controller")
        return node

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Node]]:
        """The nodes, for changing in place; written back (atomically, 0600) when the block
        ends without an exception. Holds an flock for the whole read-modify-write."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            nodes = self.nodes()
            yield nodes
            data = {"version": VERSION, "nodes": {n: _fields(node) for n, node in sorted(nodes.items())}}
            atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)
        finally:
            os.close(fd)  # closing drops the lock


def _check_free(nodes: dict[str, Node], name: str, controller: str, now: int) -> None:
    if name == controller:
        raise ClusterError("clash", f"node name {name!r} is taken: it is this controller's own host name")
    old = nodes.get(name)
    if old is not None and old.state != "invited":
        raise ClusterError("clash", f"node name {name!r} is taken: that node is {old.state} "
                                    f"(appliance remove-node {name} first)")
    if old is not None and now < old.expires_at:
        raise ClusterError("clash", f"node {name!r} is already invited until {utc(old.expires_at)} "
                                    f"(appliance remove-node {name} cancels that invitation)")


def _fields(node: Node) -> dict:
    fields = asdict(node)
    del fields["name"]
    return fields
