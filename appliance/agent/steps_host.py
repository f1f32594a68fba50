"""Host steps: site config and facts, secrets, configuration files."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import tempfile
from pathlib import Path

from ..cluster.node import NodeFiles
from ..cluster.nodeconf import NodeConfig
from ..credentials import complete_secrets, load_secret_file, write_secret_file
from ..errors import ApplianceError
from ..files import atomic_write
from ..render import RenderedFile, render_files, write_files
from ..schema import read_text_input
from ..site_checks import check_management_network, join_token
from . import external
from .context import AgentContext
from .facts import detect_facts, load_facts, management_network, save_facts
from .netbackend import backend_of
from .system import enable_and_start, log, run

SEED_LABELS = ("cidata", "CIDATA", "config-2")
UNIT_DIR = "/etc/systemd/system/"
# The profile service whose unit sets up the external network's host side at every boot.
EXTERNAL_SERVICE = "external-network"


def import_seed_site(ctx: AgentContext) -> None:
    """Copy appliance.yaml from a NoCloud / config-drive volume, if one is attached
    and the appliance has no site config of its own yet."""
    if ctx.paths.site.exists():
        return
    for label in SEED_LABELS:
        found = subprocess.run(["blkid", "-t", f"LABEL={label}", "-o", "device"], capture_output=True, text=True)
        device = found.stdout.split("\n")[0].strip()
        if not device:
            continue
        with tempfile.TemporaryDirectory() as mnt:
            run(["mount", "-o", "ro", device, mnt])
            try:
                for candidate in (Path(mnt) / "appliance.yaml", Path(mnt) / "openstack/latest/appliance.yaml"):
                    if candidate.is_file():
                        copy_seed_site(candidate, ctx.paths.site, f"{device}:{candidate.relative_to(mnt)}")
                        return
            finally:
                run(["umount", mnt], check=False)


def preflight(ctx: AgentContext) -> None:
    """Before any step changes anything: the site config (taken from a seed volume first,
    if there is one) passes every check `invoke render` makes, and the management network
    as detected here (address with prefix) overlaps neither the tenant nor the external
    range. Raises ConfigError (one line) otherwise."""
    import_seed_site(ctx)
    site = ctx.site  # loading validates (a join: the profile has the role, the token parses)
    found = management_network(site)
    if found is not None:
        interface, network = found
        check_management_network(site, str(ctx.paths.site), interface, network)


def copy_seed_site(source: Path, target: Path, where: str) -> None:
    """Copy a seed volume's site config: bounded, UTF-8 (else one line naming ``where``),
    and 0600 from the first byte like secrets.yaml, since it may hold secrets."""
    text = read_text_input(source, where, show_path=False)  # the mount point is temporary
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(target, text, mode=0o600)
    log(f"site config taken from {where}")


def joined_name(ctx: AgentContext) -> str | None:
    """The host name a join gives this machine (its node name: its certificate's, its
    chassis' and Nova's host): the one it joined with (node.yaml), else its site config's
    join token's; None where neither is. A site config may repeat it, not contradict it
    (ApplianceError, one line)."""
    files = NodeFiles(config_dir=ctx.paths.config_dir)
    if files.credentials.exists():
        name = NodeConfig.load(files).node
    elif ctx.site.join is not None:
        name = join_token(ctx.site, str(ctx.paths.site), ctx.paths.site.parent).name
    else:
        return None
    if ctx.site.hostname not in (None, name):
        raise ApplianceError(f"{ctx.paths.site}: hostname: {ctx.site.hostname!r} is not {name!r}, the name this "
                             "node joined its cloud with; leave hostname out or give that one")
    return name


def host_identity(ctx: AgentContext) -> None:
    import_seed_site(ctx)
    facts = detect_facts(ctx.site, hostname=joined_name(ctx))  # validates the site config on the way
    # The datapath is chosen once: br-int is never switched under running instances.
    earlier = load_facts(ctx.paths.facts)
    datapath = earlier.datapath if earlier and earlier.datapath else backend_of(ctx.profile).choose_datapath()
    facts = dataclasses.replace(facts, datapath=datapath)
    save_facts(facts, ctx.paths.facts)
    if socket.gethostname() != facts.hostname:
        # sethostname(2), not /proc/sys: containers mount /proc/sys read-only.
        socket.sethostname(facts.hostname)
    log(f"host {facts.hostname}, management {facts.management_ip}, overlay {facts.overlay_ip}"
        + (f", Open vSwitch datapath {facts.datapath}" if facts.datapath else ""))
    authorize_root_keys(ctx.site.root_authorized_keys)


def authorize_root_keys(keys: tuple[str, ...], home: Path = Path("/root")) -> None:
    """Add the site's ``root_authorized_keys`` to root's authorized_keys (0600 in a 0700
    .ssh), keeping the lines already there and adding each key once."""
    if not keys:
        return
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    path = ssh / "authorized_keys"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    added = [k.strip() for k in keys if k.strip() not in {line.strip() for line in lines}]
    if added:
        atomic_write(path, "".join(f"{line}\n" for line in lines + added), mode=0o600)
    log(f"root login: {len(keys)} authorized key(s) from the site config, {len(added)} added")


def generate_secrets(ctx: AgentContext) -> None:
    known = load_secret_file(ctx.paths.secrets)
    values = complete_secrets(ctx.profile, known=known, fixed=ctx.site.secrets)
    if values != known:
        write_secret_file(ctx.paths.secrets, values)


def write_configs(ctx: AgentContext) -> None:
    write_rendered(render_files(ctx.profile, ctx.site, ctx.facts, ctx.secrets, members=has_members(ctx)))


def has_members(ctx: AgentContext) -> bool:
    """Whether this controller has a node joining or joined (its node registry), so a run
    again keeps the node-facing listeners a join opened."""
    from ..cluster.registry import NodeRegistry

    return NodeRegistry(ctx.paths.state_dir / "cluster").has_members()


def write_rendered(files: list[RenderedFile]) -> None:
    """Write rendered files with their modes and owners, and have systemd read what changed
    of its units."""
    write_files(files, Path("/"), set_owner=True)
    if any(f.spec.path.startswith(UNIT_DIR) for f in files):
        # systemd reads unit files and drop-ins (epmd.socket's address) only on a reload.
        run(["systemctl", "daemon-reload"], timeout=120)


def external_network(ctx: AgentContext) -> None:
    """Converge the host side now, and enable the unit that does it at every later boot."""
    bridge = backend_of(ctx.profile).host_bridge(ctx.facts)
    log(f"external network: {external.converge(ctx.site, ctx.facts.management_ip, bridge)}")
    enable_and_start(list(ctx.profile.service(EXTERNAL_SERVICE).units))


def reserve_instance_ids(ctx: AgentContext, etc: Path = Path("/etc")) -> None:
    """Reserve the instances' id range (profile ``instance_id_map``) for root in
    /etc/subuid and /etc/subgid, after checking nothing else on the appliance owns an id in it.

    useradd hands new users subordinate ranges that no line of these files covers, so the
    reservation keeps a later user's rootless containers out of the instances' ids.
    Raises ApplianceError naming the file and the owner of a clashing id; writes nothing then.
    """
    idmap = ctx.profile.instance_id_map
    if idmap is None:
        return
    lo, hi = idmap.host_start, idmap.host_start + idmap.count  # [lo, hi)
    for name in ("passwd", "group"):
        for line in (etc / name).read_text(encoding="utf-8").splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit() and lo <= int(fields[2]) < hi:
                raise ApplianceError(f"{etc / name}: {fields[0]} has id {fields[2]}, inside the instances' "
                                     f"range {lo}-{hi - 1} (profile instance_id_map)")
    reservation = f"root:{lo}:{idmap.count}"
    missing = []
    for name in ("subuid", "subgid"):
        path = etc / name
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        for line in lines:
            fields = line.split(":")
            if line == reservation or len(fields) != 3 or not (fields[1].isdigit() and fields[2].isdigit()):
                continue
            start, count = int(fields[1]), int(fields[2])
            if start < hi and lo < start + count:
                raise ApplianceError(f"{path}: {line!r} overlaps the instances' range {lo}-{hi - 1} "
                                     "(profile instance_id_map)")
        if reservation not in lines:
            missing.append((path, lines))
    for path, lines in missing:
        atomic_write(path, "\n".join([*lines, reservation]) + "\n", mode=0o644)
        log(f"{path}: {reservation} reserved for instances")


def external_network_at_boot(ctx: AgentContext) -> int:
    """`appliance external-network` (the boot unit): converge from the recorded facts;
    before first boot has recorded them there is nothing to do yet."""
    facts_path = ctx.paths.facts
    if not facts_path.exists():
        print("appliance: external network: host facts not recorded yet (first boot has not run); nothing to do")
        return 0
    summary = external.converge(ctx.site, ctx.facts.management_ip, backend_of(ctx.profile).host_bridge(ctx.facts))
    log(f"external network: {summary}")
    print(f"appliance: external network: {summary}")
    return 0
