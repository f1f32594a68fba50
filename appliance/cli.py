"""The `appliance` command (``python3 -m appliance``): what an operator and the appliance's own
units run on the appliance.

  appliance run [--again]          first boot (or resume it); `--again` re-checks every step
  appliance status [--brief]       each first-boot step and whether every service is up
  appliance image import FILE      a cloud disk image as an LXC image in Glance
  appliance selftest api|lifecycle|nodes|rabbitmq-node
                                   the checks `invoke smoke` runs here; JSON lines on stdout
  appliance measure memory|instances|burst
                                   what `invoke bench` measures here; JSON lines on stdout
  appliance add-node NAME          invite a compute node: prints its single-use join token
  appliance join [--token-file F]  join a controller's cloud (token on stdin or in F), then
                                   first boot as a compute node
  appliance remove-node NAME       remove a node (or cancel its invitation)
  appliance join-service           the join service (its unit runs it; add-node starts that)
  appliance external-network|dhcp|overlay-endpoint  boot-time units' commands
  appliance migrate-image          build time, in the image chroot

Exit codes: 0 done, 1 a step or check failed, 2 bad input or state (one line on stderr).
A machine that joined (or whose site config says join) runs its role's first-boot steps.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .agent.context import AgentContext, Paths
from .agent.journal import Journal
from .agent.lock import RunLock
from .agent.runner import StepFailed, run_steps
from .agent.status import print_status
from .agent.steps import first_boot_steps
from .agent.steps_host import preflight
from .agent.system import LOG_PATH
from .errors import ApplianceError


def say(line: str) -> None:
    print(line, flush=True)


def _command(subparsers, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand whose one line of text is both its entry in the parent's help and its own."""
    return subparsers.add_parser(name, help=text, description=text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="appliance", description="The appliance's first-boot agent.")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run (or resume) first boot; the default command")
    run.add_argument("--again", action="store_true",
                     help="re-check every step even though first boot completed (each converges)")
    status = sub.add_parser("status", help="each first-boot step, and whether every service is up")
    status.add_argument("--brief", action="store_true", help="one summary line (for the login MOTD)")
    status.add_argument("--no-api", action="store_true", help="do not ask the OpenStack APIs")
    sub.add_parser("external-network", help="set up the external network's host side (bridge, NAT); run at every boot")
    sub.add_parser("overlay-endpoint", help="put the Geneve endpoint back on its Open vSwitch bridge (userspace "
                                            "datapath); run at every boot")
    sub.add_parser("dhcp", help="wait until every network the DHCP agent served has its DHCP server, restarting "
                                "the agent if Neutron gave up; run at every boot")
    migrate = sub.add_parser("migrate-image", help="(build time, in the image chroot) migrate the image's databases")
    migrate.add_argument("--profile", default=str(Paths().profile), help="the profile YAML installed in the image")
    image = sub.add_parser("image", help="Glance images for LXC instances")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    importing = image_sub.add_parser("import", help="convert a cloud disk image (qcow2 or raw, MBR or GPT) to an LXC "
                                                    "root filesystem image and upload it")
    importing.add_argument("file", type=Path)
    importing.add_argument("--name", help="Glance name (default: the file name without .qcow2/.img/.raw)")
    selftest = _command(sub, "selftest", "checks run on the appliance, one JSON line each (`invoke smoke` runs them)")
    suites = selftest.add_subparsers(dest="suite", required=True)
    api = _command(suites, "api", "the reference workflow: instances with user-data reached over SSH, floating IPs, "
                                  "security groups, escape probes; creates and deletes two servers")
    api.add_argument("--outbound-probe", metavar="HOST:PORT",
                     help="a TCP service that answers with the source address it saw: checks outbound NAT")
    lifecycle = _command(suites, "lifecycle", "every server action a project member may call, on one server it "
                                              "creates and deletes: works or is refused at once")
    lifecycle.add_argument("--via", metavar="SERVER",
                           help="reach the server through this instance on this host (for one on a compute node)")
    nodes = _command(suites, "nodes", "on a controller whose compute nodes joined: one server per host, spread by "
                                      "the scheduler, reached over the tenant network and a floating IP")
    nodes.add_argument("--outbound-probe", metavar="HOST:PORT",
                       help="a TCP service that answers with the source address it saw: checks outbound NAT")
    nodes.add_argument("--keep", action="store_true", help="leave the servers running (the caller deletes them)")
    _command(suites, "rabbitmq-node", "where an Erlang node started as RabbitMQ starts its one-off nodes listens")
    measure = _command(sub, "measure", "what `invoke bench` measures on the appliance, one JSON line each")
    kinds = measure.add_subparsers(dest="measurement", required=True)
    _command(kinds, "memory", "the appliance's processes: summed RSS and PSS")
    runs = _command(kinds, "instances", "RUNS times: create -> ACTIVE, -> SSH banner, -> ping, delete -> gone")
    runs.add_argument("runs", type=int)
    burst = _command(kinds, "burst", "COUNT instances of the 128 MB flavor in one request: all ACTIVE, failures, "
                                     "peak memory")
    burst.add_argument("count", type=int)
    burst.add_argument("--keep", action="store_true", help="leave them running (the caller deletes them)")
    burst.add_argument("--wait", type=float, default=900.0, metavar="S",
                       help="seconds to wait for all to settle (default 900)")
    _cluster_commands(sub)
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    args = parser.parse_args(argv)
    if args.command in ("add-node", "join", "remove-node", "join-service"):
        return _cluster(args)
    if args.command == "selftest":
        return _selftest(args)
    if args.command == "measure":
        return _measure(args)
    if args.command == "migrate-image":
        return _migrate_image(Path(args.profile))
    paths = Paths.from_environment()
    try:
        ctx = AgentContext.load(paths)
        journal = Journal.load(paths.journal)
        if args.command in ("external-network", "dhcp", "image"):
            _ = ctx.site  # read and checked once: its timeouts.scale bounds every wait
        if args.command == "external-network":
            from .agent.steps_host import external_network_at_boot

            return external_network_at_boot(ctx)
        if args.command == "overlay-endpoint":
            from .agent.netbackend.tunnel import place_endpoint

            facts = ctx.facts
            place_endpoint(datapath=facts.datapath, overlay_ip=facts.overlay_ip, management_ip=facts.management_ip,
                           say=say)
            return 0
        if args.command == "dhcp":
            from .agent.dhcp import ensure_served_at_boot

            ensure_served_at_boot(say)
            return 0
        if args.command == "image":
            return _image_import(ctx, args.file, args.name)
        if args.command == "status":
            return print_status(ctx, journal, brief=args.brief, ask_api=not args.no_api)
        again = getattr(args, "again", False)
        with RunLock(paths.lock, "appliance run" + (" --again" if again else "")):
            journal = Journal.load(paths.journal)  # as the previous holder left it
            if journal.completed_at and not again:
                say("[firstboot] first boot completed earlier; nothing to do")
                return 0
            # Every check of the input before any step changes anything.
            preflight(ctx)
            # The site config preflight took from a seed volume may say join: the steps are
            # those of the role the machine runs now.
            ctx = AgentContext.load(paths)
            journal.begin_run(os.getpid(), "run --again" if again else "run")
            run_steps(first_boot_steps(ctx), journal, say,
                      log_hint=f"{LOG_PATH} and journalctl -u appliance-firstboot", rerun_all=again)
        paths.done_marker.touch()
        return 0
    except StepFailed as exc:
        print(f"[firstboot] {exc}", file=sys.stderr)
        return 1
    except ApplianceError as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 2


def _cluster_commands(sub) -> None:
    add = _command(sub, "add-node", "on the controller: invite a compute node NAME; prints its single-use, expiring "
                                    "join token")
    add.add_argument("name")
    add.add_argument("--expires", default="1h", metavar="DURATION", help="how long the token is valid: 5m to 1d "
                                                                        "(default 1h)")
    add.add_argument("--out", type=Path, metavar="FILE", help="write the token to FILE (0600) instead of stdout")
    join = _command(sub, "join", "on a new machine: join the controller's cloud as a compute node; the token comes "
                                 "on stdin (asked for without echo on a terminal) or from --token-file")
    # Accepted only to refuse it with the reason: a token on the command line is readable
    # by every local user (/proc/PID/cmdline) and kept in the shell's history.
    join.add_argument("token", nargs="?", help=argparse.SUPPRESS)
    join.add_argument("--token-file", type=Path, metavar="FILE", help="a file holding the token")
    remove = _command(sub, "remove-node", "on the controller: remove node NAME and everything of it (refused while "
                                          "instances live there), or cancel its invitation")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true", help="remove it even though instances live there (they are lost)")
    _command(sub, "join-service", "on the controller, run by appliance-join.service (which add-node starts): answer "
                                  "joins while an invitation can be redeemed")


def _cluster(args) -> int:
    from .cluster import commands

    paths = Paths.from_environment()
    try:
        if args.command == "add-node":
            return commands.add_node(paths, args.name, expires=args.expires, out=args.out, say=say)
        if args.command == "join":
            return commands.join(paths, token_arg=args.token, token_file=args.token_file, say=say)
        if args.command == "join-service":
            return commands.join_service(paths, say=say)
        return commands.remove_node(paths, args.name, force=args.force, say=say)
    except StepFailed as exc:
        print(f"[firstboot] {exc}", file=sys.stderr)
        return 1
    except ApplianceError as exc:
        print(f"appliance {args.command}: {exc}", file=sys.stderr)
        return 2


def _selftest(args) -> int:
    if args.suite == "api":
        from .selftest import api_workflow

        return api_workflow.main(args.outbound_probe) or 0
    if args.suite == "nodes":
        from .selftest import nodes

        return nodes.main(args.outbound_probe, keep=args.keep)
    if args.suite == "rabbitmq-node":
        from .selftest import rabbitmq_node

        return rabbitmq_node.main()
    from .selftest import lifecycle

    return lifecycle.main(args.via) or 0


def _measure(args) -> int:
    from . import measure

    if args.measurement == "memory":
        measure.emit("memory", **measure.memory())
    elif args.measurement == "instances":
        measure.instances(args.runs)
    else:
        measure.burst(args.count, keep=args.keep, wait=args.wait)
    return 0


def _image_import(ctx: AgentContext, source: Path, name: str | None) -> int:
    from .agent.image_import import import_image
    from .agent.steps_openstack import connect

    import_image(source, name, lambda: connect(ctx), say=say)
    return 0


def _migrate_image(profile_path: Path) -> int:
    from .agent.migrations import migrate_at_build
    from .profiles import parse_profile
    from .schema import load_yaml_mapping

    try:
        migrate_at_build(parse_profile(load_yaml_mapping(profile_path), str(profile_path)), say=say)
        return 0
    except ApplianceError as exc:
        print(f"appliance: migrate-image: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
