"""`invoke bench`: build timings, then boots of the built appliance with the probes run in it.

Every boot is a fresh one (the harness discards the overlay), so each gives a boot → ready
sample, a first (uncached) instance, cached instances, a 20-instance burst and memory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from appliance.agent.steps_dashboard import DASHBOARD_SERVICE
from appliance.errors import ApplianceError

from ..harness import local
from ..harness.target import ContainerTarget
from ..imagebuild.driver import git_revision
from ..profiles import load_profile
from .figures import TARGETS, Figures, record, table, write_record
from .measured import measure, memory_with_units_stopped

# How long the appliance idles with the dashboard stopped before its memory is measured:
# Apache's processes are gone at once; the rest of the appliance is already idle.
DASHBOARD_SETTLE_S = 10


class Bench:
    def __init__(self, profile: str, artifacts: Path, say=print, from_tree: bool = False):
        self.profile = profile
        self.from_tree = from_tree
        self.artifacts = artifacts
        self.say = say
        self.figures = Figures()
        self.events: list[str] = []

    def add(self, name: str, value: float, unit: str = "s") -> None:
        self.figures.add(name, value, unit, TARGETS.get(name))

    def event(self, text: str) -> None:
        self.events.append(text)
        self.say(f"[bench] {text}")

    # --- boots -----------------------------------------------------------------------------

    def one_boot(self, index: int, *, creates: int, burst: int, settle_s: float) -> None:
        local.stop(self.profile, say=self.say)
        self.say(f"[bench] boot {index}: booting a fresh appliance")
        started = time.time()
        state = local.boot(self.profile, self.artifacts, say=lambda line: None, from_tree=self.from_tree)
        try:
            journal = local.wait_for_first_boot(state, say=lambda line: self.say(f"[bench] boot {index}: {line}"))
            ready = journal["completed_at"] - started
            self.add("boot → cloud ready", ready)
            for name, step in journal["steps"].items():
                self.add(f"first-boot step: {name}", step["seconds"] or 0.0)
            self.event(f"boot {index}: cloud ready {ready:.1f} s after the container started")
            time.sleep(settle_s)
            target = ContainerTarget(profile=self.profile, artifacts=self.artifacts)
            idle = measure(target, "memory")[0]
            self.add("idle memory, RSS summed", idle["rss_mib"], "MiB")
            self.add("idle memory, PSS summed", idle["pss_mib"], "MiB")
            self.event(f"boot {index}: idle RSS {idle['rss_mib']:.0f} MiB, PSS {idle['pss_mib']:.0f} MiB, "
                       f"{idle['processes']} processes; largest: "
                       + ", ".join(f"{n} {m} MiB×{c}" for n, m, c in idle["top"][:8]))
            self.dashboard_off(target, index)
            if creates:
                self.instances(target, index, creates)
            if burst:
                self.burst(target, index, burst)
        finally:
            local.stop(self.profile, say=lambda line: None)

    def dashboard_off(self, target, index: int, prefix: str = "") -> None:
        """Idle PSS once more with the dashboard's units stopped (the figure above is with it
        on); skipped where the profile has no dashboard."""
        profile = load_profile(self.profile)
        if not profile.has_service(DASHBOARD_SERVICE):
            return
        off = memory_with_units_stopped(target, list(profile.service(DASHBOARD_SERVICE).units), settle_s=DASHBOARD_SETTLE_S)
        self.add(f"{prefix}idle memory, PSS summed, dashboard off", off["pss_mib"], "MiB")
        self.event(f"{prefix}boot {index}: dashboard off: idle PSS {off['pss_mib']:.0f} MiB")

    def instances(self, target: ContainerTarget, index: int, creates: int) -> None:
        for item in measure(target, "instances", str(creates)):
            kind = "cached image" if item["image_cached"] else "first (image not cached)"
            self.add(f"create → ACTIVE, {kind}", item["active_s"])
            if item["ping_s"] is not None:
                self.add("create → ping reply", item["ping_s"])
            else:
                self.event(f"boot {index}: instance {item['run']} never answered ping")
            if item.get("ssh_after_active_s") is not None:
                self.add("ACTIVE → SSH banner", item["ssh_after_active_s"])
                self.add("create → SSH banner", item["active_s"] + item["ssh_after_active_s"])
            else:
                self.event(f"boot {index}: instance {item['run']} never sent an SSH banner")
            if item.get("fip_ssh_s") is not None:
                self.add("create → floating IP answers SSH", item["fip_ssh_s"])
            self.add("delete → gone", item["delete_s"])
            self.event(f"boot {index}: instance {item['run']} ({kind}): ACTIVE {item['active_s']} s, "
                       f"SSH banner {item.get('ssh_after_active_s')} s after ACTIVE, "
                       f"ping {item['ping_s']} s, delete {item['delete_s']} s")

    def burst(self, target: ContainerTarget, index: int, count: int) -> None:
        result = measure(target, "burst", str(count))[0]
        self.add("burst: all ACTIVE", result["all_active_s"])
        self.add("burst: failed instances", result["failed"], "count")
        self.add("burst: peak memory, RSS summed", result["peak_rss_mib"], "MiB")
        self.add("burst: peak memory, PSS summed", result["peak_pss_mib"], "MiB")
        self.add("burst: delete all → gone", result["delete_all_s"])
        self.event(f"boot {index}: {count} instances in one request: {result['active']} ACTIVE, "
                   f"{result['failed']} failed, {result['all_active_s']} s; peak RSS {result['peak_rss_mib']:.0f} MiB")

    def _stage_lines(self, label: str):
        """The build's stage lines (start and end of each), not every line it logs."""
        def say(line: str) -> None:
            if line.startswith("[build]") and (line.endswith("…") or " done in " in line):
                self.say(f"[bench] {label}: {line[len('[build] '):]}")
        return say

    # --- builds ----------------------------------------------------------------------------

    def builds(self, runs: int) -> None:
        from ..imagebuild import run_build
        from ..imagebuild.settings import BuildSettings

        scratch = Path(tempfile.mkdtemp(prefix="appliance-bench-", dir="/var/tmp"))
        try:
            for index in range(1, runs + 1):
                settings = BuildSettings(cache_dir=scratch / f"cache-{index}")
                started = time.monotonic()
                run_build(self.profile, scratch / "cold", settings=settings, log=self._stage_lines("cold build"))
                cold = time.monotonic() - started
                started = time.monotonic()
                run_build(self.profile, self.artifacts / self.profile, settings=settings,
                          log=self._stage_lines("warm build"))
                warm = time.monotonic() - started
                self.say("[bench] plain DIB build …")
                plain = plain_dib_build(self.profile, scratch / f"plain-{index}")
                self.add("build, cold caches", cold)
                self.add("build, warm caches", warm)
                self.add("plain debian-minimal vm DIB build, cold", plain)
                self.add("cold build / plain DIB build", cold / plain, "ratio")
                self.event(f"build {index}: cold {cold:.0f} s, warm {warm:.0f} s, plain DIB {plain:.0f} s "
                           f"(ratio {cold / plain:.2f})")
                shutil.rmtree(scratch / f"cache-{index}", ignore_errors=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def plain_dib_build(profile_name: str, work: Path) -> float:
    """The yardstick: `disk-image-create debian-minimal vm` for the same release and mirror."""
    import os

    from ..imagebuild.dib import build_environment, run_disk_image_create
    from ..imagebuild.host import ensure_host_prerequisites
    from ..imagebuild.settings import BuildSettings, common_env, distro_env
    from ..profiles import load_profile

    profile = load_profile(profile_name)
    settings = BuildSettings(work_dir=work / "work", cache_dir=work / "cache")
    settings.dib_tmp_dir.mkdir(parents=True, exist_ok=True)
    host = ensure_host_prerequisites(log=lambda line: None)
    env = build_environment({**common_env(settings), **distro_env(profile, os.environ)}, host.tool_dirs)
    started = time.monotonic()
    run_disk_image_create(["-t", "qcow2", "-o", str(work / "plain"), profile.distro.dib_element, "vm"],
                          env, work / "plain-build.log")
    return time.monotonic() - started


def _say(line: str) -> None:
    print(line, flush=True)  # progress must show even when the output goes to a file


def run_bench(profile: str, artifacts: Path, *, boots: int = 3, creates: int = 3, burst: int = 20,
              build_runs: int = 1, settle_s: float = 30, from_tree: bool = False, vm: bool = False,
              vm_memory_mb: int = 4096, vm_firmware: str = "bios", nodes: int = 1, say=_say) -> Path:
    """``nodes``: 1, the appliance alone; 2, a controller and a compute node (bench/nodes.py:
    join time, the node's memory, a burst over both; in the container harness only)."""
    from ..profiles import load_profile

    load_profile(profile)  # an unknown profile fails here, before anything slow
    if vm:
        from ..harness.qemu import FIRMWARES

        if vm_firmware not in FIRMWARES:  # and so does a firmware qemu cannot boot
            raise ApplianceError(f"bench option firmware: expected one of {', '.join(FIRMWARES)}, got {vm_firmware!r}")
    options = {"boots": boots, "creates": creates, "burst": burst, "build_runs": build_runs, "settle_s": settle_s,
               "vm_memory_mb": vm_memory_mb}
    for name, value in options.items():
        if value < 0:
            raise ApplianceError(f"bench option {name.replace('_s', '')}: expected 0 or more, got {value}")
    if nodes not in (1, 2):
        raise ApplianceError(f"bench option nodes: expected 1 or 2, got {nodes}")
    if nodes == 2 and vm:
        raise ApplianceError("bench option nodes: 2 runs in the container harness, not --vm")
    if nodes == 2 and not load_profile(profile).roles:
        raise ApplianceError(f"bench option nodes: profile {profile} has no compute role (see docs/scale-out.md)")
    if not build_runs and boots and not (artifacts / profile / "appliance.raw").exists():
        raise ApplianceError(f"no built image in {artifacts / profile}; run `./inv build` or bench with --builds 1")
    bench = Bench(profile, artifacts, say, from_tree=from_tree)
    started = time.time()
    try:
        if build_runs:
            bench.builds(build_runs)
        for index in range(1, boots + 1):
            if nodes == 2:
                from .nodes import one_pair_boot

                one_pair_boot(bench, index, burst=burst, settle_s=settle_s)
            elif vm:
                from .vm import one_vm_boot

                one_vm_boot(bench, index, burst=burst, settle_s=settle_s, memory_mb=vm_memory_mb, firmware=vm_firmware)
            else:
                bench.one_boot(index, creates=creates, burst=burst, settle_s=settle_s)
    finally:
        # A bench of uncommitted changes must say so: the figures are not the commit's.
        data = record(bench.figures, profile=profile, revision=git_revision(mark_dirty=True),
                      options={**options, "from_tree": from_tree, "vm": vm, "nodes": nodes,
                               **({"vm_firmware": vm_firmware} if vm else {})},
                      started=started,
                      events=bench.events)
        path = write_record(data, artifacts / "bench")
        say(table(bench.figures))
        say(f"[bench] written to {path}")
        from .report import update_doc

        doc = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
        update_doc(doc, artifacts / "bench")
        say(f"[bench] {doc} regenerated from {artifacts / 'bench'}")
    return path
