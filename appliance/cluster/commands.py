"""`appliance add-node`, `appliance join` and `appliance remove-node`: the command-line side
of enrol.py (where the inputs come from, what is printed). Each returns the exit code; a
refusal is an ApplianceError that appliance.cli prints as one line (exit 2).

The join token is a secret: `add-node` prints it on stdout (or writes it 0600 with --out),
and `join` reads it from stdin or --token-file, never from its command line, which every
local user can read in /proc and which the shell keeps in its history.
"""

from __future__ import annotations

import getpass
import sys
import time
from pathlib import Path
from typing import Callable

from ..agent.context import AgentContext, Paths
from ..errors import ApplianceError
from ..files import atomic_write
from . import enrol
from .ca import CertificateAuthority, controller_ca, tls_paths
from .errors import ClusterError
from .issuer import ControllerIssuer, Keystone, NotWiredAccess, RabbitMQ
from .names import check_node_name
from .registry import NodeRegistry
from .token import utc

Say = Callable[[str], None]


def registry_of(paths: Paths) -> NodeRegistry:
    return NodeRegistry(paths.state_dir / "cluster")


def add_node(paths: Paths, name: str, *, expires: str, out: Path | None, say: Say) -> int:
    check_node_name(name)  # what needs no state is refused first
    lifetime = enrol.parse_lifetime(expires)
    ctx = AgentContext.load(paths)
    enrol.require_role(ctx.profile)
    if not paths.done_marker.exists():
        raise ClusterError("role", "first boot has not completed on this appliance; add nodes once it has "
                                   "(appliance status)")
    facts = ctx.facts
    token = enrol.add_node(name, profile=ctx.profile, registry=registry_of(paths), controller=facts.hostname,
                           host=facts.management_ip, ca_of=lambda: _ready_ca(ctx, paths),
                           now=int(time.time()), lifetime=lifetime)
    if out is not None:
        atomic_write(out, token.text() + "\n", mode=0o600)
        where = f"written to {out} (0600)"
    else:
        print(token.text(), flush=True)
        where = "printed above"
    print(f"join token for node {name} {where}: single use, valid until {utc(token.expires)}; on the new machine: "
          "appliance join --token-file FILE (or the token on its stdin, or join.token in its site config)",
          file=sys.stderr)
    return 0


def _ready_ca(ctx: AgentContext, paths: Paths) -> CertificateAuthority:
    """The appliance CA, once this controller can also let a node in: an invitation that no
    join could complete would only mislead, so none is recorded until the cloud side of a
    join is whole (``ControllerIssuer.ready``: the node-facing listeners are not yet)."""
    ca = controller_ca(tls_paths(paths.config_dir, paths.state_dir))
    controller_issuer(ctx).ready()
    return ca


def controller_issuer(ctx: AgentContext) -> ControllerIssuer:
    """The cloud side of a join on this controller: rabbitmqctl through the agent's runner
    (logged, the password on stdin only), Keystone as the admin when first needed."""
    from ..agent.steps_openstack import connect
    from ..agent.system import run

    return ControllerIssuer(rabbitmq=RabbitMQ(lambda argv, stdin: run(argv, stdin=stdin, timeout=120).stdout),
                            keystone=lambda: Keystone(connect(ctx)), access=NotWiredAccess())


def join_service(paths: Paths, *, say: Say) -> int:
    """`appliance join-service`, what appliance-join.service runs on the controller: answer
    joins on the management address while an invitation can be redeemed. Refused in one line
    while the cloud side of a join is not whole (``ControllerIssuer.ready``); add-node does
    not start it before then."""
    ctx = AgentContext.load(paths)
    enrol.require_role(ctx.profile)
    enrol.join_port(ctx.profile)
    controller_issuer(ctx).ready()
    return 0


def join(paths: Paths, *, token_arg: str | None, token_file: Path | None, say: Say) -> int:
    if token_arg is not None:
        raise ApplianceError("join: the token is a secret and does not go on the command line (every local user "
                             "can read it there, and the shell keeps it): give it on stdin or with --token-file; "
                             "this one is in your shell history now, so issue a new one with appliance add-node")
    token = enrol.read_token(token_file=token_file, stdin_text=_stdin_token)
    ctx = AgentContext.load(paths)
    enrol.check_joinable(token, profile=ctx.profile, first_boot_done=paths.done_marker.exists(), now=time.time())
    raise ApplianceError(f"not yet implemented: redeeming the token at the controller's join service "
                         f"({token.endpoint}) and the compute role's first boot; docs/scale-out.md, \"Join flow\"")


def remove_node(paths: Paths, name: str, *, force: bool, say: Say) -> int:
    check_node_name(name)
    ctx = AgentContext.load(paths)
    enrol.require_role(ctx.profile)
    enrol.remove_node(name, registry=registry_of(paths), cloud=enrol.NotWiredCloud(), force=force,
                      now=int(time.time()), say=say)
    return 0


def _stdin_token() -> str:
    """One token from stdin: asked for without echo on a terminal, else read (bounded)."""
    if sys.stdin.isatty():
        return getpass.getpass("join token (not shown): ")
    return sys.stdin.read(enrol.TOKEN_INPUT_LIMIT + 1)
