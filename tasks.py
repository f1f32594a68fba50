"""Entry points of the appliance pipeline. Each task is thin: the work is in pipeline/.

Run them through ./inv (which prepares .venv), e.g. `./inv build`, `./inv test`.
"""

import functools
import sys
from pathlib import Path

from invoke import Exit, task

from appliance.errors import ApplianceError
from pipeline.profiles import DEFAULT_PROFILE, available_profiles, load_profile

ROOT = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "artifacts"
PROFILE_HELP = f"release profile: {', '.join(available_profiles())} (default {DEFAULT_PROFILE})"


def operator_errors(func):
    """Turn an ApplianceError into one clear line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ApplianceError as exc:
            raise Exit(f"error: {exc}", code=2) from None

    return wrapper


@task(help={"profile": PROFILE_HELP, "site": "site config (appliance.yaml); default: all defaults",
            "out": "output directory (default artifacts/render/<profile>)"})
@operator_errors
def render(c, profile=DEFAULT_PROFILE, site=None, out=None):
    """Render every configuration file of the appliance for a profile and site."""
    from appliance.render import render_site

    out_dir = Path(out) if out else ARTIFACTS / "render" / profile
    written = render_site(load_profile(profile), Path(site) if site else None, out_dir)
    print(f"rendered {len(written)} files for {profile} into {out_dir}")
    if not site or "secrets" not in Path(site).read_text(encoding="utf-8"):
        print("note: secrets are placeholders; the appliance generates real ones at first boot")


@task(help={"profile": PROFILE_HELP})
@operator_errors
def build(c, profile=DEFAULT_PROFILE):
    """Build the appliance image and the LXC rootfs image with diskimage-builder."""
    _build(profile)


@task(name="build-guest", help={"profile": PROFILE_HELP, "out": "output directory (default artifacts/guest-<profile>)"})
@operator_errors
def build_guest(c, profile=DEFAULT_PROFILE, out=None):
    """Build only the LXC guest rootfs (lxc-rootfs.img and .zst): try guest elements without the appliance."""
    from pipeline.imagebuild import run_guest_build

    run_guest_build(profile, Path(out) if out else ARTIFACTS / f"guest-{profile}")


def _build(profile):
    from pipeline.imagebuild import run_build

    return run_build(profile, ARTIFACTS / profile)


@task(help={"profile": PROFILE_HELP, "stop": "stop the running appliance and release everything",
            "site": "site config to place at /etc/appliance/appliance.yaml",
            "wait": "wait until first boot has finished",
            "lan": "a second interface into a LAN namespace of the harness (lan-NAME); without --site it is "
                   "the external network in provider mode",
            "restart": "power the booted appliance off cleanly and boot it again on the same disk (a reboot); "
                       "with --wait, until every service is up again",
            "from_tree": "development: this checkout's agent, overlays, profile and built guest image over the image's (no rebuild)",
            "vm": "boot appliance.qcow2 under qemu instead (KVM if it works, else TCG; a throwaway overlay; the "
                  "site config on a NoCloud volume; SSH and the APIs forwarded to 127.0.0.1)",
            "memory": "--vm: guest memory in MiB (default 4096)", "cpus": "--vm: vCPUs (default 2)",
            "disk": "--vm: disk size in GiB (default 20): the root filesystem grows to it at first boot and "
                    "instances' disks and images live there",
            "firmware": "--vm: bios or uefi (default bios; uefi uses OVMF, no Secure Boot)",
            "port": "--vm: first of 6 consecutive host ports for SSH, 5000, 8774, 8778, 9292, 9696 "
                    "(default: the first free run in 2300-2399)",
            "node": "node N (1-99) of the booted appliance, on its management segment at 10.254.0.(10+N), "
                    "named PROFILE-nodeN, with an overlay link for Geneve; its --site carries join: with a token of "
                    "appliance add-node",
            "overlay": "a second link for Geneve (10.254.0.200/26), as a controller whose nodes are booted with --node "
                       "needs (the site's overlay_ip is set to it)"})
@operator_errors
def boot(c, profile=DEFAULT_PROFILE, stop=False, site=None, wait=False, vm=False, from_tree=False, lan=False,
         restart=False, memory=None, cpus=None, firmware=None, port=None, disk=None, node=None, overlay=False):
    """Boot the built appliance locally in systemd-nspawn (its uplink is a namespace of the harness), or with
    --vm under qemu; --stop tears it down, --restart reboots it on the same disk."""
    target = _target(profile, vm, from_tree=from_tree or None, lan=lan or None, node=_int(node), overlay=overlay or None,
                     memory_mb=_int(memory), cpus=_int(cpus), firmware=firmware, port=_int(port), disk_gb=_int(disk))
    if stop:
        target.stop()
    elif restart:
        target.restart(wait=wait)
    else:
        target.boot(site=Path(site) if site else None)
        if wait:
            target.wait_for_first_boot()


def _target(profile, vm=False, **options):
    from pipeline.harness.target import boot_target

    return boot_target("vm" if vm else "container", profile, ARTIFACTS, **options)


def _int(value):
    return int(value) if value is not None else None


@task(name="image-import", help={"file": "a cloud disk image: qcow2 or raw, MBR or GPT, or a bare ext2/3/4 filesystem",
                                 "name": "image name (default: the file name without .qcow2/.img/.raw)",
                                 "out": "output directory (default artifacts/images)"})
@operator_errors
def image_import(c, file, name=None, out=None):
    """Convert a cloud disk image to an LXC root filesystem image (no upload: prints the command)."""
    from appliance.agent import image_import as ii

    source = Path(file)
    name = name or ii.default_name(source)
    out_dir = Path(out) if out else ARTIFACTS / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    with ii.work_dir(str(out_dir)) as tmp:
        try:
            prepared = ii.prepare(source, Path(tmp), say=print)
        except ii.ImportRefused as exc:
            raise ii.ImportRefused(f"{source}: {exc}") from None
        target = out_dir / f"{name}.rootfs.img"
        prepared.rootfs.rename(target)
    properties = " ".join(f"--property {k}={v}" for k, v in ii.glance_properties(prepared).items())
    print(f"{source}: {prepared.source}, {prepared.architecture} → {target}")
    print(f"upload it: openstack image create --disk-format raw --container-format bare --public {properties} "
          f"--file {target} {name}")


@task(help={"profile": PROFILE_HELP, "vm": "the VM `invoke boot --vm` started"})
@operator_errors
def shell(c, profile=DEFAULT_PROFILE, vm=False):
    """Open a root shell inside the locally booted appliance."""
    import os

    argv = _target(profile, vm).shell_argv()
    os.execvp(argv[0], argv)


@task(help={"target": "testinfra host spec (ssh://root@host); default: the appliance `invoke boot` started",
            "outbound_probe": "HOST:PORT that answers a TCP connection with the source address it saw; checks "
                              "instances' outbound NAT (default with the local harness: its internet stand-in)",
            "profile": PROFILE_HELP, "identity": "SSH private key for the target", "host_only": "skip the API workflow",
            "vm": "the VM `invoke boot --vm` started (default: the container)"})
@operator_errors
def smoke(c, target=None, profile=DEFAULT_PROFILE, identity=None, host_only=False, outbound_probe=None, vm=False):
    """Check a booted appliance: host checks and the reference workflow; ends with `N passed, N failed`."""
    command = [sys.executable, "-m", "pipeline.smoke"]
    if target is None:
        booted = _target(profile, vm)
        command = [*booted.smoke_prefix(), *command, *booted.smoke_target()]
    else:
        command += ["--target", target]
    # Given after the harness's own, so they win (argparse keeps the last).
    command += ["--identity", identity] if identity else []
    command += ["--outbound-probe", outbound_probe] if outbound_probe else []
    if host_only:
        command.append("--host-only")
    result = c.run(" ".join(_quote(a) for a in command), warn=True, pty=False)
    if result.exited != 0:
        raise Exit(code=result.exited)


@task(help={"profile": PROFILE_HELP})
@operator_errors
def e2e(c, profile=DEFAULT_PROFILE):
    """Build (reusing caches), boot, wait for first boot, smoke, tear down; logs on failure."""
    from pipeline.harness.e2e import run_e2e

    run_e2e(profile, ARTIFACTS, build=lambda: _build(profile))


@task(help={"profile": PROFILE_HELP, "boots": "fresh boots of the built image, each measured (default 3)",
            "creates": "instances created and deleted one after another per boot (default 3)",
            "burst": "instances requested at once per boot, 128 MB flavor (default 20; 0 skips)",
            "builds": "cold + warm build and a plain DIB build, this many times (default 1; 0 skips)",
            "settle": "seconds to wait after first boot before measuring idle memory (default 30)",
            "from_tree": "boot as `boot --from-tree` does (this checkout's agent, overlays, guest image)",
            "vm": "boot the qcow2 under qemu instead (each boot: boot → ready, idle PSS and MemAvailable in the VM, "
                  "--burst instances kept (default 10) with MemAvailable, reboot → ready)",
            "memory": "--vm: guest memory in MiB (default 4096)",
            "firmware": "--vm: bios (SeaBIOS, default) or uefi (OVMF)",
            "nodes": "2: a controller and a compute node per boot (join time, the node's idle memory, "
                     "--burst over both hosts); default 1"})
@operator_errors
def bench(c, profile=DEFAULT_PROFILE, boots=3, creates=3, burst=None, builds=1, settle=30, from_tree=False, vm=False,
          memory=4096, firmware="bios", nodes=1):
    """Measure build, boot, instance timings and memory; JSON to artifacts/bench/, a table here."""
    from pipeline.bench.run import run_bench

    if vm and from_tree:
        raise Exit("error: --from-tree is for the container harness, not --vm", code=2)
    if firmware != "bios" and not vm:
        raise Exit("error: --firmware is for --vm; the container harness has no firmware", code=2)
    burst = int(burst) if burst is not None else (10 if vm else 20)
    run_bench(profile, ARTIFACTS, boots=int(boots), creates=int(creates), burst=burst,
              build_runs=int(builds), settle_s=float(settle), from_tree=from_tree, vm=vm, vm_memory_mb=int(memory),
              vm_firmware=firmware, nodes=_int(nodes))


@task(name="bench-report", help={"bench_dir": "where the bench's JSON records are (default artifacts/bench)"})
@operator_errors
def bench_report(c, bench_dir=None):
    """Regenerate docs/benchmarks.md's figures from the newest bench record of each profile and harness."""
    from pipeline.bench.report import update_doc

    used = update_doc(ROOT / "docs" / "benchmarks.md", Path(bench_dir) if bench_dir else ARTIFACTS / "bench")
    print(f"docs/benchmarks.md: figures from {used} record(s)")


@task(help={"k": "only tests matching this pytest -k expression",
            "fast": "leave out the real image build and the end-to-end appliance tests"})
def test(c, k=None, fast=False):
    """Run the test suite: unit, build, and the end-to-end appliance tests."""
    # The image build first: it installs the host tools (qemu-img, ...) the later tests use.
    args = [sys.executable, "-m", "pytest", *(str(ROOT / "tests" / part) for part in ("imagebuild", "e2e", "unit"))]
    if k:
        args += ["-k", k]
    if fast:
        args += ["-m", "not build and not e2e"]
    result = c.run(" ".join(_quote(a) for a in args), pty=False, warn=True)
    if result.exited != 0:
        raise Exit(code=result.exited)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
