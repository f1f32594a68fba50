"""`appliance status`: the first-boot journal and the health of every service."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import ApplianceError, ConfigError
from ..profiles import Profile
from ..sitefile import JOIN_ROLE
from .context import AgentContext
from .facts import load_facts
from .journal import DONE, FAILED, PENDING, RUNNING, Journal, StepRecord
from .lock import Holder, current_holder
from .status_roles import NODE, RoleStatus, controller_line
from .steps import first_boot_steps
from .steps_dashboard import dashboard_hint
from .system import LOG_PATH, UP_STATES, unit_started_at, unit_states

# Nova's own services: each is a systemd unit of the same name.
NOVA_SERVICES = ("nova-conductor", "nova-scheduler", "nova-compute")


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "an unknown time"


def summarize(records: dict[str, StepRecord], *, completed_at: float | None, down: list[str],
              holder: Holder | None, last_run: dict | None) -> str:
    """The one-line state of first boot, from the journal's step records (in step order),
    the units not up, the live holder of the run lock (None: no run is alive) and the
    journal's record of the latest run (pid, started_at)."""
    total = len(records)
    done = sum(r.state == DONE for r in records.values())
    failed = [n for n, r in records.items() if r.state == FAILED]
    running = [n for n, r in records.items() if r.state == RUNNING]
    if holder is not None:
        where = f"step{'s' if len(running) > 1 else ''} {', '.join(running)}" if running else "starting"
        what = "re-run" if completed_at or "--again" in holder.command else "first boot"
        return f"{what} in progress: {where} ({done}/{total} done), agent {holder.describe()}"
    if running:
        # A step marked running with no live run: the agent was killed (or the host lost
        # power) mid-step. `appliance run` resumes at that step.
        run = last_run or {}
        who = f"agent pid {run['pid']} started {_when(run.get('started_at'))}" if run.get("pid") else "the agent"
        return (f"first boot run DIED during step {running[0]} ({who} is gone); "
                f"`appliance run` resumes it (see {LOG_PATH})")
    if completed_at and not down:
        return "cloud ready"
    if failed:
        return f"first boot FAILED at step {failed[0]}: {records[failed[0]].error} (see {LOG_PATH})"
    if completed_at:
        return f"first boot finished, but {len(down)} unit(s) not active: {', '.join(down)}"
    return f"first boot not finished ({done}/{total} steps done)"


def _epoch(updated_at: str | None) -> float | None:
    """Nova's ``updated_at`` (ISO 8601, UTC, without an offset) as seconds since the epoch."""
    if not updated_at:
        return None
    moment = datetime.fromisoformat(updated_at)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def nova_waiting(services: list[tuple[str, str, str, str | None]],
                 started: dict[str, float | None]) -> list[str]:
    """What keeps Nova from serving, one "binary: reason" per service; [] when none.

    ``services``: (binary, state, status, updated_at) as Nova's API lists them;
    ``started``: each unit's start (epoch seconds, None when it does not run).
    Nova calls a service "up" while its last report (``updated_at``) is younger than
    ``service_down_time`` (nova.servicegroup.drivers.db), so right after a restart the
    previous boot's last report still reads "up"; nova-compute reports for the first time
    only after its start-up (init_host, which resumes the instances). A service counts
    only once it has reported since its unit started."""
    waiting = []
    listed = {binary for binary, *_ in services}
    waiting += [f"{b}: not registered" for b in NOVA_SERVICES if b not in listed]
    for binary, state, status, updated_at in services:
        since = started.get(binary)
        reported = _epoch(updated_at)
        if state != "up":
            waiting.append(f"{binary}: {state}")
        elif status != "enabled":
            waiting.append(f"{binary}: {status}")
        elif since is None:
            waiting.append(f"{binary}: its unit is not running")
        elif reported is None or reported < since:
            waiting.append(f"{binary}: no report since its start")
    return waiting


@dataclass(frozen=True)
class ApiReport:
    """What the APIs say, asked once per `appliance status`: Nova's services as (binary,
    state, status, updated_at) and Neutron's agents as (binary, alive)."""
    services: list[tuple[str, str, str, str | None]]
    agents: list[tuple[str, bool]]


def api_report(ctx: AgentContext) -> ApiReport:
    """Raises what openstacksdk raises when an API does not answer."""
    from .steps_openstack import connect

    conn = connect(ctx)
    return ApiReport(services=[(s.binary, s.state, s.status, s.updated_at) for s in conn.compute.services()],
                     agents=[(a.binary, bool(a.is_alive)) for a in conn.network.agents()])


def api_waiting(ctx: AgentContext, report: ApiReport) -> list[str]:
    """What keeps the cloud from serving: Nova services (nova_waiting) and the profile's
    Neutron agents not alive; [] when nothing."""
    waiting = nova_waiting(report.services, unit_started_at(list(NOVA_SERVICES)))
    alive = {binary for binary, is_alive in report.agents if is_alive}
    waiting += [f"{a}: not alive" for a in ctx.profile.network.agents if a not in alive]
    return waiting


def _reason(exc: Exception) -> str:
    """An exception's first line (at most 120 characters), or its type when it has no text."""
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def controller_health(report: ApiReport) -> list[str]:
    """Compute services and network agents as the APIs report them."""
    lines = [f"  {binary:<28} {state}, {status}, last report {updated or 'never'} UTC"
             for binary, state, status, updated in report.services]
    return lines + [f"  {binary:<28} {'up' if alive else 'down'}" for binary, alive in report.agents]


def for_role(ctx: AgentContext) -> RoleStatus:
    """How status speaks of this machine's role and asks the cloud about it."""
    return BY_ROLE[ctx.role]


def api_health(ctx: AgentContext, report: object) -> list[str]:
    """The role's report as lines (status_roles), or why the APIs did not answer."""
    if isinstance(report, Exception):
        return [f"  (APIs not answering: {_reason(report)})"]
    return for_role(ctx).health(report)


def ready_summary(ctx: AgentContext, report: object) -> str:
    """"cloud ready" when the APIs agree (the role's ``waiting``), else what they still wait for."""
    if isinstance(report, Exception):
        return f"services up, APIs not answering yet ({_reason(report)})"
    waiting = for_role(ctx).waiting(ctx, report)
    return f"services up, waiting for {'; '.join(waiting)}" if waiting else "cloud ready"


def _ask_apis(ctx: AgentContext) -> object:
    try:
        return for_role(ctx).ask(ctx)
    except Exception as exc:  # reported in the status, not raised: status must always answer
        return exc


def reach_hint(ctx: AgentContext) -> list[str]:
    """How an operator reaches an instance from this host or its LAN (the login message
    shows it too)."""
    site = ctx.site
    key = str(ctx.paths.private_key) if ctx.paths.private_key.exists() else "YOUR_KEY"
    user = ctx.profile.settings.get("guest_user", "root")
    create = (f"openstack --os-cloud lxc server create --flavor {site.flavors[0].name} --image {site.image_name} "
              f"--network {site.network.name} --key-name {site.keypair_name} SERVER")
    if not site.external.enabled:
        namespace = ctx.profile.network.namespace("NETWORK_ID")
        return [f"  instances: {create}", "  (no external network: reach instances from the "
                f"namespace {namespace} of network {site.network.name})"]
    return [f"  instances: {create}",
            f"  reach one: openstack --os-cloud lxc floating ip create {site.external.name}",
            "             openstack --os-cloud lxc server add floating ip SERVER FLOATING_IP",
            f"             ssh -i {key} {user}@FLOATING_IP"]


BY_ROLE: dict[str, RoleStatus] = {
    Profile.CONTROLLER: RoleStatus(describe=controller_line, ask=api_report, waiting=api_waiting,
                                   health=controller_health, hints=reach_hint),
    JOIN_ROLE: NODE,
}


def _dashboard_lines(ctx: AgentContext) -> list[str]:
    """The dashboard's address and CA once first boot made them; nothing before (no facts
    yet) or with a site config that cannot be read."""
    try:
        return dashboard_hint(ctx)
    except (ApplianceError, OSError, ValueError):  # ValueError: a CA file that is not PEM
        return []


def _profile_run(ctx: AgentContext) -> Profile:
    """The services this appliance runs; all of the profile's while the site config cannot be
    read (status still shows something then)."""
    try:
        return ctx.active_profile
    except ConfigError:
        return ctx.profile


def network_detail(ctx: AgentContext) -> str:
    """", Open vSwitch datapath D" once first boot chose one; "" otherwise."""
    facts = load_facts(ctx.paths.facts)
    return f", Open vSwitch datapath {facts.datapath}" if facts and facts.datapath else ""


def print_status(ctx: AgentContext, journal: Journal, *, brief: bool, ask_api: bool) -> int:
    steps = first_boot_steps(ctx)
    records = {s.name: journal.record(s.name) for s in steps}
    units = unit_states(_profile_run(ctx).units())
    down = [u for u, state in units.items() if state not in UP_STATES]
    summary = summarize(records, completed_at=journal.completed_at, down=down,
                        holder=current_holder(ctx.paths.lock), last_run=journal.run)
    report = _ask_apis(ctx) if ask_api and (summary == "cloud ready" or journal.completed_at) else None
    if summary == "cloud ready" and report is not None:
        summary = ready_summary(ctx, report)
    print(f"appliance: {summary}")
    if summary == "cloud ready":
        for line in for_role(ctx).hints(ctx):
            print(line)
    for line in _dashboard_lines(ctx):
        print(line)
    if brief:
        return 0 if summary == "cloud ready" else 1
    print(for_role(ctx).describe(ctx))
    print(f"\nnetwork: ML2/{ctx.profile.network.backend}{network_detail(ctx)}")
    print("\nfirst-boot steps:")
    for step in steps:
        rec = records[step.name]
        took = f"{rec.seconds:.1f} s" if rec.seconds is not None else ""
        state = rec.state if rec.state != PENDING else "pending"
        line = f"  {step.name:<16} {state:<8} {took:>9}"
        if rec.state == FAILED:
            line += f"  {rec.error}"
        print(line)
    print("\nunits:")
    for unit, state in units.items():
        print(f"  {unit:<28} {state}")
    if report is not None and journal.completed_at:
        print("\nas the APIs report them:")
        for line in api_health(ctx, report):
            print(line)
    if journal.completed_at:
        print(f"\nfirst boot completed {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(journal.completed_at))}")
    return 0 if summary == "cloud ready" else 1
