"""The image build of one profile, stage by stage, into ``artifacts/<profile>/``.

Stages: host prerequisites, mirror check, LXC guest rootfs (cached by its inputs),
appliance image (diskimage-builder), config check, manifest. Each is announced with its
elapsed time; a failure names the stage and the log. Whatever happens, nothing this build
mounted or attached stays behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from appliance.errors import ApplianceError
from appliance.profiles import Profile

from ..profiles import load_profile, write_resolved_profile
from . import configcheck
from .cleanup import release_build_resources
from .dib import build_environment, dib_version, run_disk_image_create
from .host import ensure_host_prerequisites
from .lxc import IMAGE_NAME as LXC_IMAGE_NAME
from .lxc import build_lxc_rootfs, copy_sparse, guest_element_dirs, inputs_key
from .manifest import build_manifest, describe_artifact, parse_package_list, write_manifest
from .mirror import MirrorCheck, check_mirror
from .settings import (
    REPO_ROOT,
    BuildSettings,
    appliance_elements,
    appliance_env,
    effective_extra_repositories,
    effective_mirror,
    lxc_guest_env,
)

Log = Callable[[str], None]


class StageFailed(ApplianceError):
    def __init__(self, stage: str, problem: str, log_path: Path):
        self.stage = stage
        super().__init__(f"build stage '{stage}' failed: {problem} (full log: {log_path})")


class Stages:
    """Announces and times each stage; the durations go into the manifest."""

    def __init__(self, log: Log, log_path: Path):
        self.log = log
        self.log_path = log_path
        self.durations: dict[str, float] = {}

    def _note(self, line: str) -> None:
        self.log(line)
        with open(self.log_path, "a") as handle:
            handle.write(f"\n==== {line}\n")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._note(f"[build] {name} …")
        start = time.monotonic()
        try:
            yield
        except StageFailed:
            raise
        except (ApplianceError, subprocess.CalledProcessError, OSError) as exc:
            elapsed = time.monotonic() - start
            self.durations[name] = elapsed
            self._note(f"[build] {name} FAILED after {elapsed:.1f} s")
            raise StageFailed(name, str(exc), self.log_path) from exc
        elapsed = time.monotonic() - start
        self.durations[name] = elapsed
        self._note(f"[build] {name} done in {elapsed:.1f} s")


@contextmanager
def exclusive(work_dir: Path) -> Iterator[None]:
    """One build per work directory: cleanup detaches everything under it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ApplianceError(f"another build is running in {work_dir}") from None
        yield


def mirror_checks(profile: Profile, environ) -> list[MirrorCheck]:
    """The apt sources the build will use, each with the variable that overrides it."""
    checks = [MirrorCheck(effective_mirror(profile, environ), profile.distro.release, "DIB_DISTRIBUTION_MIRROR")]
    for line in effective_extra_repositories(profile, environ):
        words = line.split()
        if len(words) >= 3 and words[0] == "deb":
            checks.append(MirrorCheck(words[1], words[2], "APPLIANCE_CLOUD_ARCHIVE_MIRROR"))
    return checks


def _remove_stale_dib_dirs(tmp_dir: Path) -> None:
    # Emptied by the unmounts above; DIB leaves them behind only when it was killed.
    for stale in list(tmp_dir.glob("dib_build.*")) + list(tmp_dir.glob("dib_image.*")):
        subprocess.run(["rm", "-rf", "--one-file-system", str(stale)], check=False)


def git_revision(*, mark_dirty: bool = False) -> str:
    """HEAD's commit; with ``mark_dirty``, suffixed "-dirty" when the tree has changes."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True)

    done = git("rev-parse", "HEAD")
    if done.returncode != 0:
        return "uncommitted"
    dirty = mark_dirty and git("diff", "--quiet", "HEAD").returncode != 0
    return done.stdout.strip() + ("-dirty" if dirty else "")


def run_build(profile_name: str, out_dir: Path, *, log: Log = print, settings: BuildSettings | None = None,
              install_prerequisites: bool = True) -> dict:
    """Build the appliance of `profile_name` into out_dir; returns the manifest."""
    profile = load_profile(profile_name)  # unknown profile: ApplianceError before anything slow
    settings = settings or BuildSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "build.log"
    log_path.write_text(f"appliance build of profile {profile.name}\n")
    stages = Stages(log, log_path)
    started = time.monotonic()

    with exclusive(settings.work_dir):
        try:
            # A killed earlier build may have left mounts or loops in our work dir.
            release_build_resources(settings.work_dir, log=log)
            manifest = _build(profile, out_dir, settings, stages, log_path, install_prerequisites, log)
        finally:
            # Mounts live under the work dir; loop devices may also point at our outputs
            # (the config check attaches appliance.raw).
            leftovers = release_build_resources(settings.work_dir, log=log)
            leftovers += release_build_resources(out_dir, log=log)
            _remove_stale_dib_dirs(settings.dib_tmp_dir)
            if leftovers:
                log(f"[build] cleaned up {len(leftovers)} leftover mount(s)/loop device(s)")
    log(f"[build] {profile.name}: all done in {time.monotonic() - started:.1f} s → {out_dir}")
    return manifest


def run_guest_build(profile_name: str, out_dir: Path, *, log: Log = print, settings: BuildSettings | None = None,
                    install_prerequisites: bool = True) -> Path:
    """Only the LXC guest root filesystem (development: try guest elements without building the
    appliance); writes ``lxc-rootfs.img`` and ``lxc-rootfs.img.zst`` into out_dir, returns the latter."""
    profile = load_profile(profile_name)
    settings = settings or BuildSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "build-guest.log"
    log_path.write_text(f"LXC guest build of profile {profile.name}\n")
    stages = Stages(log, log_path)
    environ = dict(os.environ)
    with exclusive(settings.work_dir):
        try:
            release_build_resources(settings.work_dir, log=log)
            settings.dib_tmp_dir.mkdir(parents=True, exist_ok=True)
            settings.cache_dir.mkdir(parents=True, exist_ok=True)
            with stages.stage("host-prerequisites"):
                host = ensure_host_prerequisites(log=log, install=install_prerequisites)
            rootfs = _guest_stage(profile, out_dir, settings, stages, log_path, environ, log, host.tool_dirs)
            copy_sparse(rootfs.compressed, out_dir / f"{LXC_IMAGE_NAME}.zst")
        finally:
            release_build_resources(settings.work_dir, log=log)
            _remove_stale_dib_dirs(settings.dib_tmp_dir)
    log(f"[build] guest {rootfs.key}: {out_dir / LXC_IMAGE_NAME} (+ .zst)")
    return out_dir / f"{LXC_IMAGE_NAME}.zst"


def _guest_stage(profile: Profile, out_dir: Path, settings: BuildSettings, stages: Stages, log_path: Path,
                 environ: dict, log: Log, tool_dirs: list[str]):
    guest_env = build_environment(lxc_guest_env(profile, settings, environ), tool_dirs)
    key = inputs_key(guest_element_dirs(), guest_env, dib_version=dib_version(), zstd_level=settings.zstd_level)
    with stages.stage("lxc-rootfs"):
        rootfs = build_lxc_rootfs(settings, guest_env, log_path, key=key)
        if rootfs.reused:
            log(f"[build] lxc-rootfs: inputs unchanged (key {key}), reusing the cached image")
        copy_sparse(rootfs.image, out_dir / LXC_IMAGE_NAME)
    return rootfs


def _build(profile: Profile, out_dir: Path, settings: BuildSettings, stages: Stages, log_path: Path,
           install_prerequisites: bool, log: Log) -> dict:
    environ = dict(os.environ)
    settings.dib_tmp_dir.mkdir(parents=True, exist_ok=True)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)

    with stages.stage("host-prerequisites"):
        host = ensure_host_prerequisites(log=log, install=install_prerequisites)

    with stages.stage("mirror-check"):
        for check in mirror_checks(profile, environ):
            check_mirror(check, timeout=settings.mirror_timeout_s)

    rootfs = _guest_stage(profile, out_dir, settings, stages, log_path, environ, log, host.tool_dirs)
    key = rootfs.key

    work = settings.work_dir / "appliance"
    report_dir = work / "report"
    with stages.stage("appliance-image"):
        shutil.rmtree(work, ignore_errors=True)
        report_dir.mkdir(parents=True)
        # The image carries the profile resolved (a delta profile's base applied), complete.
        profile_file = write_resolved_profile(profile.name, work / "profile.yaml")
        env = build_environment(appliance_env(
            profile, settings, profile_file=profile_file, lxc_image=rootfs.compressed,
            lxc_image_size=rootfs.image.stat().st_size, report_dir=report_dir, environ=environ), host.tool_dirs)
        args = ["-t", ",".join(settings.image_types), "-o", str(work / "appliance"), *appliance_elements(profile, settings)]
        run_disk_image_create(args, env, log_path)
        for kind in settings.image_types:
            os.replace(work / f"appliance.{kind}", out_dir / f"appliance.{kind}")

    check_result = None
    if configcheck.available():
        with stages.stage("config-check"):
            check_result = configcheck.check_image(profile, out_dir / "appliance.raw", settings, log_path, log=log)
    else:
        log("[build] config-check skipped: appliance.render is not available yet")

    with stages.stage("manifest"):
        packages = parse_package_list((report_dir / "packages.tsv").read_text())
        names = [f"appliance.{kind}" for kind in settings.image_types] + [LXC_IMAGE_NAME]
        artifacts = [describe_artifact(out_dir / name) for name in names]
        artifacts.append(describe_artifact(rootfs.compressed))
        inputs = {
            "profile_sha256": hashlib.sha256(profile_file.read_bytes()).hexdigest(),
            "lxc_rootfs_key": key,
            "lxc_rootfs_reused": str(rootfs.reused).lower(),
            "git_revision": git_revision(),
            "diskimage_builder": dib_version(),
            "device_mapper_shims": str(not host.device_mapper).lower(),
        }
        extra = {"config_check": check_result} if check_result is not None else {}
        # Timing of the manifest stage itself is unknown until it ends: recorded as 0 here.
        durations = dict(stages.durations, manifest=0.0)
        manifest = build_manifest(profile=profile.name, artifacts=artifacts, packages=packages,
                                  stages=durations, inputs=inputs, extra=extra)
        write_manifest(out_dir / "manifest.json", manifest)
    # Now that it is known, put the manifest stage's own duration in.
    manifest["stages"]["manifest"] = round(stages.durations["manifest"], 1)
    manifest["total_seconds"] = round(sum(stages.durations.values()), 1)
    write_manifest(out_dir / "manifest.json", manifest)
    return manifest
