"""One appliance for the whole end-to-end module: built (warm caches), booted in
systemd-nspawn with only the harness's own uplink (no route to the real network), first
boot awaited; torn down whatever happens."""

import contextlib
import json
import os
import subprocess

import pytest
from project import PROFILE, ROOT

from pipeline.harness import local, nspawn

ARTIFACTS = ROOT / "artifacts"


def loop_devices() -> set[str]:
    out = subprocess.run(["losetup", "--list", "--json"], capture_output=True, text=True).stdout
    return {d["name"] for d in json.loads(out or '{"loopdevices": []}').get("loopdevices", [])}


@contextlib.contextmanager
def booted(name: str | None = None, logs: str = "pytest-e2e", profile: str = PROFILE, **boot_options):
    """An appliance of ``profile`` booted by the harness, first boot awaited; on the way out
    its logs are kept when it is still up, it is stopped, and nothing of it may remain (loop
    devices, mounts, network namespaces)."""
    local.stop(profile, name=name)
    loops_before = loop_devices()
    if os.environ.get("APPLIANCE_TEST_FROM_TREE") == "1":
        # Development only (CI never sets it; it boots the image it built): this checkout's
        # agent, overlays and profile over the image's, as `invoke boot --from-tree`.
        boot_options.setdefault("from_tree", True)
    state = local.boot(profile, ARTIFACTS, name=name, **boot_options)
    try:
        local.wait_for_first_boot(state)
        yield state
    finally:
        keep_logs_and_stop(state, name, logs, profile)
        assert loop_devices() <= loops_before, "the appliance left loop devices attached"
        mounts = open("/proc/mounts").read()
        assert str(local.state_dir(profile, name)) not in mounts, "the appliance left mounts behind"
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        assert not {state.netns, f"uplink-{state.name}", f"lan-{state.name}"} & set(namespaces), namespaces


def keep_logs_and_stop(state, name: str | None = None, logs: str = "pytest-e2e", profile: str = PROFILE) -> None:
    """The appliance's logs into artifacts/logs/LOGS while it still runs, then the harness's stop."""
    if state is not None and nspawn.pid_alive(state.nspawn_pid):
        from pipeline.harness.e2e import collect_logs

        collect_logs(state, ARTIFACTS / "logs" / logs)
    local.stop(profile, name=name)


@pytest.fixture(scope="session")
def appliance(appliance_image):
    with booted() as state:
        yield state


def in_appliance(state, *cmd, timeout=900, check=True):
    result = nspawn.exec_in(state, list(cmd), timeout=timeout)
    if check:
        assert result.returncode == 0, f"{cmd} exited {result.returncode}: {result.stderr[-800:]}"
    return result


def smoke(state, *extra, profile: str = PROFILE):
    cmd = ["ip", "netns", "exec", state.netns, str(ROOT / ".venv/bin/python"), "-m", "pipeline.smoke",
           "--target", local.harness_target(), "--identity", str(local.harness_key(profile)), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
