"""The local boot harness as the tasks use it: boot, wait for first boot, stop."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from appliance.agent.context import Paths
from appliance.errors import ApplianceError

from . import nspawn

BOOT_ROOT = Path("/var/tmp/appliance-boot")


def boot_name(profile: str, name: str | None = None) -> str:
    """The harness's name for one booted appliance: ``name``, else APPLIANCE_BOOT_NAME, else
    the profile; two appliances of one profile can run side by side under two names (each
    has its own state directory, network namespaces and container name)."""
    return name or os.environ.get("APPLIANCE_BOOT_NAME") or profile


def node_name(profile: str, index: int, controller: str | None = None) -> str:
    """The harness's name for node ``index`` of the appliance ``controller`` (default: the
    profile's): ``<controller>-node<index>``, its state in BOOT_ROOT/<that name>."""
    return f"{boot_name(profile, controller)}-node{index}"


def state_dir(profile: str, name: str | None = None) -> Path:
    return BOOT_ROOT / boot_name(profile, name)


def harness_key(profile: str) -> Path:
    """An SSH key of the harness's own, so `invoke smoke` can log in as root."""
    key = BOOT_ROOT / "keys" / "harness_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "appliance-harness", "-f", str(key)],
                       check=True)
    return key


def harness_target() -> str:
    return f"ssh://root@{nspawn.MANAGEMENT_IP}"


def boot(profile: str, artifacts: Path, *, site: Path | None = None, from_tree: bool = False,
         lan: bool = False, site_yaml: str | None = None, name: str | None = None, node: int = 0,
         controller: str | None = None, overlay: bool = False, say=print) -> nspawn.BootState:
    """Boot the built image; ``from_tree`` lays this checkout's agent, overlays, profile and
    built guest image (artifacts/<profile>/lxc-rootfs.img[.zst]) over the image's
    (development: no appliance rebuild for a change to them). ``node``: boot node number
    ``node`` of the running appliance ``controller`` (default: the profile's), on its
    management segment at nspawn.node_cidr(node), named node_name() unless ``name`` says.
    ``overlay`` (always for a node): a second link for Geneve at nspawn.overlay_cidr, which
    the site config names as its ``overlay_ip`` (added when it names none)."""
    image = artifacts / profile / "appliance.raw"
    key = harness_key(profile)
    if site is not None:
        site_yaml = site.read_text(encoding="utf-8")
    prepare = None
    if from_tree:
        from ..profiles import resolved_profile_yaml
        from . import container_fixups

        source = Path(__file__).resolve().parents[2]
        guest = container_fixups.built_guest_image(artifacts / profile)
        profile_yaml = resolved_profile_yaml(profile)
        prepare = lambda root: container_fixups.copy_source_tree(root, source, profile_yaml, guest)  # noqa: E731
        say(f"[boot] agent, overlays and profile from {source} (not the image's)")
        if guest is not None:
            say(f"[boot] LXC guest image {guest} (not the image's)")
    segment, cidr = "", nspawn.MANAGEMENT_CIDR
    if node:
        segment, cidr = boot_name(profile, controller), nspawn.node_cidr(node)
        running_state(profile, segment)  # the controller first: its segment is the node's
        name = name or node_name(profile, node, controller)
    overlay_cidr = nspawn.overlay_cidr(node) if node or overlay else ""
    if overlay_cidr:
        site_yaml = with_overlay_ip(site_yaml, overlay_cidr.split("/")[0])
    state = nspawn.boot(image, boot_name(profile, name), state_dir(profile, name), site_yaml=site_yaml,
                        authorized_key=key.with_suffix(".pub").read_text(), say=say, prepare=prepare, lan=lan,
                        management_cidr=cidr, segment=segment, overlay_cidr=overlay_cidr)
    say(f"[boot] reach it: ip netns exec {state.netns} ssh -i {key} root@{state.management_ip}")
    say(f"[boot]       or: ./inv shell --profile {profile}")
    return state


def with_overlay_ip(site_yaml: str | None, address: str) -> str:
    """``site_yaml`` naming ``address`` as its overlay_ip, unless it names one already."""
    import yaml

    data = yaml.safe_load(site_yaml or "") or {}
    if not isinstance(data, dict):
        raise ApplianceError("the site config is not a mapping")
    if "overlay_ip" in data:
        return site_yaml or ""
    text = site_yaml or ""
    return f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}overlay_ip: {address}\n"


def running_state(profile: str, name: str | None = None) -> nspawn.BootState:
    state = nspawn.BootState.load(state_dir(profile, name))
    if state is None or not nspawn.pid_alive(state.nspawn_pid):
        raise ApplianceError(f"no appliance {boot_name(profile, name)} is running; `./inv boot --profile {profile}` first")
    return state


def read_journal(state: nspawn.BootState) -> dict | None:
    try:
        result = nspawn.exec_in(state, ["cat", str(Paths().journal)], timeout=30)
    except ApplianceError:
        return None
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return None  # caught mid-replace; the next poll sees it whole


def wait_for_first_boot(state: nspawn.BootState, *, timeout: float = 1800, say=print) -> dict:
    """Follow the first-boot journal until it completes; raise on a failed step."""
    def gone() -> str | None:
        if nspawn.pid_alive(state.nspawn_pid):
            return None
        return f"the appliance container exited during first boot (console: {state.console_log})"

    return follow_journal(lambda: read_journal(state), gone, timeout=timeout, say=say)


def follow_journal(read: Callable[[], dict | None], gone: Callable[[], str | None], *, timeout: float,
                   interval: float = 3, say=print) -> dict:
    """Print one progress line per step state change of the journal ``read`` returns (None
    while it cannot be read yet) until first boot completes; raise on a failed step, when
    ``gone`` names why the appliance went away, or after ``timeout`` seconds. Shared by the
    container and the VM harness, so both print the same lines."""
    start = time.monotonic()
    reported: dict[str, str] = {}
    while True:
        why = gone()
        if why:
            raise ApplianceError(why)
        journal = read() or {"steps": {}}
        for name, rec in journal["steps"].items():
            if reported.get(name) != rec["state"]:
                reported[name] = rec["state"]
                took = f" in {rec['seconds']:.1f} s" if rec.get("seconds") is not None else ""
                say(f"[first boot +{time.monotonic() - start:5.0f} s] {name}: {rec['state']}{took}")
                if rec["state"] == "failed":
                    raise ApplianceError(f"first-boot step {name} failed: {rec.get('error')}")
        if journal.get("completed_at"):
            say(f"[first boot] cloud ready after {time.monotonic() - start:.0f} s of waiting")
            return journal
        if time.monotonic() - start > timeout:
            running = [name for name, rec in journal["steps"].items() if rec["state"] == "running"]
            raise ApplianceError(f"first boot did not finish within {timeout:.0f} s "
                                 f"(step running: {', '.join(running) or 'none'})")
        time.sleep(interval)


def appliance_ready(state: nspawn.BootState) -> str | None:
    """None when the booted appliance is ready, else what it is still waiting for:
    `appliance status --brief` asks the units and the APIs (every Nova service reported
    since its unit started, every agent of the profile alive)."""
    try:
        status = nspawn.exec_in(state, ["python3", "-m", "appliance", "status", "--brief"], timeout=120)
    except (ApplianceError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if status.returncode != 0:
        return (status.stdout.strip().splitlines() or [status.stderr.strip()])[0]
    return None


def wait_until_ready(state: nspawn.BootState, *, timeout: float = 900, say=print) -> float:
    """Wait until the (re)booted appliance is ready (see appliance_ready); returns the
    seconds from the container's start."""
    last = None
    while True:
        if not nspawn.pid_alive(state.nspawn_pid):
            raise ApplianceError(f"the appliance container exited while booting (console: {state.console_log})")
        waiting = appliance_ready(state)
        elapsed = time.time() - state.started_at
        if waiting is None:
            say(f"[boot +{elapsed:5.0f} s] ready: cloud ready, every Nova service up and every agent alive")
            return elapsed
        if waiting != last:
            say(f"[boot +{elapsed:5.0f} s] {waiting}")
            last = waiting
        if elapsed > timeout:
            raise ApplianceError(f"the appliance was not ready {timeout:.0f} s after its start: {waiting}")
        time.sleep(3)


def restart(profile: str, *, name: str | None = None, say=print,
            while_off=None) -> tuple[nspawn.BootState, float]:
    """Power the booted appliance off and boot it again on the same disk; returns the new
    state and the power-off's seconds. ``while_off``: nspawn.restart's."""
    return nspawn.restart(state_dir(profile, name), say=say, while_off=while_off)


def stop(profile: str, *, name: str | None = None, say=print) -> None:
    nspawn.stop(state_dir(profile, name), say=say)
