"""Host steps: site config and facts, secrets, configuration files."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from ..credentials import complete_secrets, load_secret_file, write_secret_file
from ..render import render_files, write_files
from .context import AgentContext
from .facts import detect_facts, save_facts
from . import external
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
                        ctx.paths.config_dir.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(candidate, ctx.paths.site)
                        log(f"site config taken from {device}:{candidate.relative_to(mnt)}")
                        return
            finally:
                run(["umount", mnt], check=False)


def host_identity(ctx: AgentContext) -> None:
    import_seed_site(ctx)
    facts = detect_facts(ctx.site)  # validates the site config on the way
    save_facts(facts, ctx.paths.facts)
    if socket.gethostname() != facts.hostname:
        # sethostname(2), not /proc/sys: containers mount /proc/sys read-only.
        socket.sethostname(facts.hostname)
    log(f"host {facts.hostname}, management {facts.management_ip}, overlay {facts.overlay_ip}")


def generate_secrets(ctx: AgentContext) -> None:
    known = load_secret_file(ctx.paths.secrets)
    values = complete_secrets(ctx.profile, known=known, fixed=ctx.site.secrets)
    if values != known:
        write_secret_file(ctx.paths.secrets, values)


def write_configs(ctx: AgentContext) -> None:
    files = render_files(ctx.profile, ctx.site, ctx.facts, ctx.secrets)
    write_files(files, Path("/"), set_owner=True)
    if any(f.spec.path.startswith(UNIT_DIR) for f in files):
        run(["systemctl", "daemon-reload"])  # systemd reads unit files it knows only on a reload


def external_network(ctx: AgentContext) -> None:
    """Converge the host side now, and enable the unit that does it at every later boot."""
    log(f"external network: {external.converge(ctx.site, ctx.facts.management_ip)}")
    enable_and_start(list(ctx.profile.service(EXTERNAL_SERVICE).units))
