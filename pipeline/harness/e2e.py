"""`invoke e2e`: build (reusing caches) -> boot -> first boot -> smoke -> tear down.

Each stage is announced with its duration; when anything fails the appliance's logs are
collected into artifacts/logs/ before the teardown, which always runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from appliance.errors import ApplianceError

from . import local, nspawn
from .target import ContainerTarget

APPLIANCE_LOGS = ("/var/log/appliance", "/var/log/nova", "/var/log/neutron", "/var/log/keystone",
                  "/var/log/glance", "/var/log/placement", "/var/log/libvirt", "/var/lib/appliance/firstboot.json")


def collect_logs(state: nspawn.BootState, dest: Path, say=print) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        tar = nspawn.exec_in(state, ["tar", "-czf", "-", "--ignore-failed-read", *APPLIANCE_LOGS], timeout=120,
                             text=False)
        (dest / "appliance-logs.tar.gz").write_bytes(tar.stdout)
    except Exception as exc:  # logs are best effort; the failure itself is what matters
        say(f"[e2e] could not collect /var/log from the appliance: {exc}")
    for name, cmd in (("journal.txt", ["journalctl", "--no-pager", "-b", "-o", "short-monotonic"]),
                      ("status.txt", ["python3", "-m", "appliance", "status"])):
        try:
            (dest / name).write_text(nspawn.exec_in(state, cmd, timeout=120).stdout)
        except Exception:
            pass
    if state.console_log.exists():
        (dest / "console.log").write_bytes(state.console_log.read_bytes())
    say(f"[e2e] appliance logs collected in {dest}")


class Stages:
    def __init__(self, say=print):
        self.say = say
        self.timings: dict[str, float] = {}

    def run(self, name: str, func):
        self.say(f"[e2e] {name} ...")
        start = time.monotonic()
        try:
            return func()
        finally:
            self.timings[name] = round(time.monotonic() - start, 1)
            self.say(f"[e2e] {name}: {self.timings[name]:.1f} s")


def run_e2e(profile: str, artifacts: Path, *, build, say=print) -> dict[str, float]:
    stages = Stages(say)
    ok = False
    state = None
    try:
        stages.run("build", build)
        local.stop(profile, say=say)  # a leftover from an interrupted run
        state = stages.run("boot", lambda: local.boot(profile, artifacts, say=say))
        stages.run("first boot", lambda: local.wait_for_first_boot(state, say=say))
        target = ContainerTarget(profile=profile, artifacts=artifacts)
        smoke = [*target.smoke_prefix(), sys.executable, "-m", "pipeline.smoke", *target.smoke_target()]
        result = stages.run("smoke", lambda: subprocess.run(smoke))
        if result.returncode != 0:
            raise ApplianceError("the smoke suite failed (see the FAIL lines above)")
        ok = True
    finally:
        if state is not None and not ok and nspawn.pid_alive(state.nspawn_pid):
            collect_logs(state, artifacts / "logs" / f"e2e-{time.strftime('%Y%m%d-%H%M%S')}", say=say)
        stages.run("teardown", lambda: local.stop(profile, say=say))
        (artifacts / "e2e").mkdir(parents=True, exist_ok=True)
        (artifacts / "e2e" / f"{profile}.json").write_text(json.dumps({"ok": ok, "seconds": stages.timings}, indent=2))
    say("[e2e] " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.timings.items()))
    return stages.timings
