"""`appliance add-node`, `appliance join` and `appliance remove-node`: the command-line side
of enrol.py (where the inputs come from, what is printed). Each returns the exit code; a
refusal is an ApplianceError that appliance.cli prints as one line (exit 2), a first-boot
step that fails after a join a StepFailed (exit 1).

The join token is a secret: `add-node` prints it on stdout (or writes it 0600 with --out),
and `join` reads it from stdin or --token-file, never from its command line, which every
local user can read in /proc and which the shell keeps in its history.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from pathlib import Path
from typing import Callable

from ..agent.context import AgentContext, Paths
from ..agent.journal import Journal
from ..agent.lock import RunLock
from ..agent.steps_host import preflight
from ..errors import ApplianceError
from ..files import atomic_write
from ..profiles import Profile
from . import enrol
from .allowlist import AllowList, guards
from .bundle import NodeBundle
from .ca import CertificateAuthority, controller_ca, tls_paths
from .errors import ClusterError
from .issuer import ControllerIssuer, Keystone, RabbitMQ
from .joinclient import join_controller
from .listeners import SOUTHBOUND, ControllerAccess, Rebind, Rendered, SouthboundTLS
from .names import check_node_name
from .node import NodeFiles
from .nodeconf import NodeConfig
from .registry import NodeRegistry
from .token import utc

Say = Callable[[str], None]
# Seconds between two looks at a node the join service waits for (settle.py).
WAIT_POLL = 10.0


def registry_of(paths: Paths) -> NodeRegistry:
    return NodeRegistry(paths.state_dir / "cluster")


def _controller(ctx: AgentContext) -> None:
    """add-node, remove-node and the join service are a controller's; a node says whose."""
    if ctx.role != Profile.CONTROLLER:
        raise ClusterError("role", f"this machine is a {ctx.role} node, not a controller: nodes are added and "
                                   "removed on the controller of its cloud")


def add_node(paths: Paths, name: str, *, expires: str, out: Path | None, say: Say) -> int:
    check_node_name(name)  # what needs no state is refused first
    lifetime = enrol.parse_lifetime(expires)
    ctx = AgentContext.load(paths)
    _controller(ctx)
    enrol.require_role(ctx.profile)
    if not paths.done_marker.exists():
        raise ClusterError("role", "first boot has not completed on this appliance; add nodes once it has "
                                   "(appliance status)")
    facts = ctx.facts
    token = enrol.add_node(name, profile=ctx.profile, registry=registry_of(paths), controller=facts.hostname,
                           host=facts.management_ip, ca_of=lambda: _ready_ca(ctx, paths),
                           now=int(time.time()), lifetime=lifetime)
    start_join_service(ctx)
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


def start_join_service(ctx: AgentContext) -> None:
    """Enable and start the join service's units (profile data): enabled, a controller
    rebooted with an invitation outstanding serves it again. They exit once no invitation can
    be redeemed and no node is left to wait for, and disable themselves then (join_service);
    running already is no error (it sees the new invitation on its next look)."""
    from ..agent.system import systemctl

    systemctl("enable", "--now", *ctx.profile.service(enrol.JOIN_SERVICE).units)


def _nothing_to_do(ctx: AgentContext, registry: NodeRegistry, say: Say) -> int:
    """The join service's exit once no invitation can be redeemed and no node is joining: its
    units no longer start at boot (best effort: a failure leaves a start that exits at once)."""
    from ..agent.system import systemctl

    say("join service: no invitation to redeem and no node to wait for; stopped")
    systemctl("disable", *ctx.profile.service(enrol.JOIN_SERVICE).units, check=False)
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
    (logged, the password on stdin only), Keystone as the admin when first needed, the
    node-facing listeners and their allow-list (listeners.py)."""
    from ..agent.steps_openstack import connect
    from ..agent.system import run

    return ControllerIssuer(rabbitmq=RabbitMQ(lambda argv, stdin: run(argv, stdin=stdin, timeout=120).stdout),
                            keystone=lambda: Keystone(connect(ctx)), access=controller_access(ctx))


def controller_access(ctx: AgentContext) -> ControllerAccess:
    """listeners.ControllerAccess with this controller's pieces: iptables and ovn-sbctl
    through the agent's runner, its CA, its rendered files and systemctl."""
    import subprocess

    from ..agent.steps_host import write_rendered
    from ..agent.system import run, systemctl
    from ..render import render_files
    from .joinserver import ensure_server_certificate, southbound_files

    def runner(argv: list[str], stdin: str | None) -> str:
        return run(argv, stdin=stdin, timeout=120).stdout

    def check(argv: list[str]) -> bool:
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60).returncode == 0
        except OSError:
            return False

    paths, profile, facts = ctx.paths, ctx.profile, ctx.facts
    tls = tls_paths(paths.config_dir, paths.state_dir)
    key, chain = southbound_files(tls)
    openers = {}
    for svc, port in profile.node_ports():
        if (svc, port.nodes) == SOUTHBOUND:
            openers[SOUTHBOUND] = SouthboundTLS(
                run=runner, address=facts.management_ip, port=port.port, key=str(key), certificate=str(chain),
                ca_certificate=str(tls.ca_cert),
                ensure_certificate=lambda: ensure_server_certificate(
                    controller_ca(tls), tls, facts.hostname,
                    facts.management_ip, files=(key, chain), what="the southbound database's"))
        elif port.nodes == "tcp":
            openers[(svc, "tcp")] = _rebind(ctx, svc, render_files, write_rendered, systemctl)
    return ControllerAccess(profile, AllowList(paths.state_dir / "cluster" / "allowed.json", guards(profile),
                                               run=runner, check=check), openers)


def _rebind(ctx: AgentContext, service: str, render_files, write_rendered, systemctl) -> Rebind:
    specs = {spec.path for spec in ctx.profile.service(service).files}

    def rendered(members: bool):
        return [f for f in render_files(ctx.profile, ctx.site, ctx.facts, ctx.secrets, members=members)
                if f.spec.path in specs]

    def render(members: bool) -> list[Rendered]:
        def on_disk(path: str) -> str | None:
            try:
                return Path(path).read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
        return [Rendered(f.spec.path, f.content, on_disk(f.spec.path), f.spec.vars.get("unit", ""))
                for f in rendered(members)]

    def write(paths: list[str], members: bool) -> None:
        write_rendered([f for f in rendered(members) if f.spec.path in paths])

    return Rebind(service=service, render=render, write=write, restart=lambda units: systemctl("restart", *units),
                  units=tuple(ctx.profile.service(service).units))


def join_service(paths: Paths, *, say: Say) -> int:
    """`appliance join-service`, what appliance-join.service runs on the controller: answer
    joins on the management address while an invitation can be redeemed (joinserver.serve),
    and wait for each node it let in until its nova-compute is up, then map it into the cell
    and record it joined (settle.py); exit when neither is left. The port is open only
    while an invitation can be redeemed. Refused in one line while the cloud side of a join
    is not whole (``ControllerIssuer.ready``)."""
    import logging

    from ..agent.system import log
    from . import joinserver as js
    from .joinservice import Controller

    ctx = AgentContext.load(paths)
    _controller(ctx)
    enrol.require_role(ctx.profile)
    port = enrol.join_port(ctx.profile)
    facts = ctx.facts  # refused in one line before first boot made them
    registry = registry_of(paths)
    # At boot, before asking RabbitMQ and Keystone anything: a controller with nothing
    # outstanding is done at once.
    if not registry.has_pending(int(time.time())) and not any(n.state == "joining" for n in registry.nodes().values()):
        return _nothing_to_do(ctx, registry, say)
    issuer = controller_issuer(ctx)
    issuer.ready()
    settle = _settle(ctx, registry, say)
    tls = tls_paths(paths.config_dir, paths.state_dir)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the unit's journal
    while settle(int(time.time())):
        if not registry.has_pending(int(time.time())):
            time.sleep(WAIT_POLL)  # a node let in, whose nova-compute is not up yet
            continue
        ca = controller_ca(tls)
        issued = js.ensure_server_certificate(ca, tls, facts.hostname, facts.management_ip)
        if issued:
            log(issued)
        controller = Controller(hostname=facts.hostname, management_ip=facts.management_ip, region=ctx.site.region,
                                keystone_url=ctx.keystone_url(), metadata_secret=ctx.secrets["metadata_secret"])
        server = js.JoinServer((facts.management_ip, port), context=js.server_context(*js.server_files(tls)),
                               answer=js.controller_answer(registry=registry, ca=ca, issuer=issuer,
                                                           controller=controller))
        say(f"join service: listening on {facts.management_ip}:{port} while an invitation can be redeemed")

        def serving() -> bool:
            now = int(time.time())
            settle(now)
            return registry.has_pending(now)

        js.serve(server, keep_going=serving)
        say("join service: no invitation left to redeem; the port is closed")
    return _nothing_to_do(ctx, registry, say)


def _settle(ctx: AgentContext, registry: NodeRegistry, say: Say):
    """settle.Settle on this controller: Nova's service list as the admin, host discovery as
    the nova user (as first boot's services-up step)."""
    from ..agent.steps_openstack import connect
    from ..agent.system import run
    from .settle import DISCOVER, Settle

    conn = []

    def compute_up(name: str) -> bool:
        if not conn:
            conn.append(connect(ctx))
        return any(s.binary == "nova-compute" and s.host == name and s.state == "up" and s.status == "enabled"
                   for s in conn[0].compute.services())

    return Settle(registry, compute_up=compute_up, discover=lambda: run(DISCOVER, user="nova", timeout=300), say=say)


def join(paths: Paths, *, token_arg: str | None, token_file: Path | None, say: Say,
         redeem: Callable[..., NodeBundle] = join_controller, first_boot: Callable[..., None] | None = None,
         check_host: Callable[[AgentContext], None] | None = None,
         overlay_ip: Callable[[AgentContext, str], str] | None = None) -> int:
    """`appliance join`: redeem the token at the controller's join service (joinclient: the
    CA pinned before the secret leaves), then run this machine's first boot in the role a
    join gives (its steps are the role's data). Refused in one line, before anything is sent,
    where this machine is not a fresh one: it joined already, its first boot began (as a
    controller: the image's first-boot unit runs at boot unless its site config joins), or
    its site config joins with a token of its own. The keyword functions are the pieces that
    touch the host and the network (the defaults), replaced by tests."""
    if token_arg is not None:
        raise ApplianceError("join: the token is a secret and does not go on the command line (every local user "
                             "can read it there, and the shell keeps it): give it on stdin or with --token-file; "
                             "this one is in your shell history now, so issue a new one with appliance add-node")
    token = enrol.read_token(token_file=token_file, stdin_text=_stdin_token)
    ctx = AgentContext.load(paths)
    files = NodeFiles(config_dir=paths.config_dir)
    if files.credentials.exists():
        node = NodeConfig.load(files)
        raise ClusterError("used", f"this machine joined already, as node {node.node} of {node.controller}'s cloud; "
                                   "`appliance run` resumes its first boot")
    if ctx.role != Profile.CONTROLLER:  # not joined, so its site config says join
        _own_token(paths)
    enrol.check_joinable(token, profile=ctx.profile, first_boot_done=paths.done_marker.exists(), now=time.time())
    with RunLock(paths.lock, "appliance join"):
        journal = Journal.load(paths.journal)
        if journal.steps:
            raise ClusterError("role", f"first boot began on this machine (step {next(iter(journal.steps))}) as the "
                                       "controller of a cloud of its own; a node joins from a fresh first boot (a "
                                       "new machine, or this image written anew, with join in its site config)")
        (check_host or preflight)(ctx)
        if ctx.site.join is not None:  # a seed volume's site config, taken by preflight
            _own_token(paths)
        address = (overlay_ip or _overlay_ip)(ctx, token.name)
        bundle = redeem(token, files=files, overlay_ip=address)
        say(f"joined the cloud of {bundle.controller} ({token.host}) as node {token.name}; its first boot follows")
        (first_boot or _first_boot)(AgentContext.load(paths), journal, say)
    paths.done_marker.touch()
    return 0


def _own_token(paths: Paths) -> None:
    raise ClusterError("role", f"{paths.site} joins with a token of its own (join:); its first boot redeems that one "
                               "(appliance run); give one token, not two")


def _overlay_ip(ctx: AgentContext, name: str) -> str:
    """This host's Geneve endpoint as its host step will record it (site or detected)."""
    from ..agent.facts import detect_facts

    return detect_facts(ctx.site, hostname=name).overlay_ip


def _first_boot(ctx: AgentContext, journal: Journal, say: Say) -> None:
    from ..agent.runner import run_steps
    from ..agent.steps import first_boot_steps
    from ..agent.system import LOG_PATH

    journal.begin_run(os.getpid(), "join")
    run_steps(first_boot_steps(ctx), journal, say, log_hint=f"{LOG_PATH}; `appliance run` resumes it")


def remove_node(paths: Paths, name: str, *, force: bool, say: Say) -> int:
    check_node_name(name)
    ctx = AgentContext.load(paths)
    _controller(ctx)
    enrol.require_role(ctx.profile)
    registry = registry_of(paths)
    registry.get(name)  # an unknown node is refused before anything of the cloud is asked
    enrol.remove_node(name, registry=registry, cloud=controller_cloud(ctx), force=force,
                      now=int(time.time()), say=say)
    return 0


def controller_cloud(ctx: AgentContext):
    """cloudops.ControllerCloud on this controller: the admin's connection when first needed,
    commands through the agent's runner."""
    import subprocess

    from ..agent.steps_openstack import connect
    from ..agent.system import run
    from .cloudops import ControllerCloud

    def check(argv: list[str]) -> bool:
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60).returncode == 0
        except OSError:
            return False

    issuer = controller_issuer(ctx)
    return ControllerCloud(conn=lambda: connect(ctx), run=lambda argv, stdin: run(argv, stdin=stdin, timeout=120).stdout,
                           check=check, issuer=issuer, access=issuer.access,
                           join_units=tuple(ctx.profile.service(enrol.JOIN_SERVICE).units))


def _stdin_token() -> str:
    """One token from stdin: asked for without echo on a terminal, else read (bounded)."""
    if sys.stdin.isatty():
        return getpass.getpass("join token (not shown): ")
    return sys.stdin.read(enrol.TOKEN_INPUT_LIMIT + 1)
