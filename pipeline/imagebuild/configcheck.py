"""Build-time check: the rendered configs against the services' own option schemas.

The rendered files of a placeholder site are validated *inside the built appliance
rootfs*, with the very oslo.config and service code the appliance will run:
``oslo-config-validator`` with each file's full namespace list. An unknown option or one in
the wrong group fails the build.

The image's root partition is attached read-only; an overlayfs on top takes the rendered
files, so the image itself is never written. Everything is mounted under the build's work
directory, which the driver's cleanup sweeps.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from appliance.errors import ApplianceError
from appliance.profiles import Profile

from .settings import BuildSettings

# oslo-config-generator namespaces of each file, as the projects' own generator configs
# list them (Zed). A namespace the image does not provide is dropped with a note.
NAMESPACES: dict[str, tuple[str, ...]] = {
    "/etc/keystone/keystone.conf": (
        "keystone", "oslo.cache", "oslo.log", "oslo.messaging", "oslo.policy", "oslo.db", "oslo.middleware", "osprofiler"),
    "/etc/glance/glance-api.conf": (
        "glance.api", "glance.store", "glance.multi_store", "oslo.concurrency", "oslo.messaging", "oslo.db", "oslo.policy",
        "keystonemiddleware.auth_token", "oslo.limit", "oslo.log", "oslo.middleware.cors",
        "oslo.middleware.http_proxy_to_wsgi", "osprofiler"),
    "/etc/placement/placement.conf": (
        "placement.conf", "keystonemiddleware.auth_token", "oslo.log", "oslo.middleware.cors", "oslo.policy", "osprofiler"),
    "/etc/nova/nova.conf": (
        "nova.conf", "keystonemiddleware.auth_token", "oslo.concurrency", "oslo.db", "oslo.log", "oslo.messaging",
        "oslo.policy", "oslo.privsep", "oslo.middleware", "oslo.service.periodic_task", "oslo.service.service",
        "oslo.service.wsgi", "oslo.limit", "oslo.reports", "oslo.versionedobjects", "os_vif", "osprofiler"),
    "/etc/neutron/neutron.conf": (
        "neutron", "neutron.agent", "neutron.db", "neutron.extensions", "neutron.experimental", "nova.auth", "placement.auth",
        "oslo.concurrency", "oslo.db", "oslo.log", "oslo.messaging", "oslo.middleware.cors",
        "oslo.middleware.http_proxy_to_wsgi", "oslo.policy", "oslo.privsep", "oslo.service.sslutils",
        "oslo.service.wsgi", "keystonemiddleware.auth_token", "osprofiler"),
    "/etc/neutron/plugins/ml2/ml2_conf.ini": ("neutron.ml2", "neutron.ml2.ovn"),
    # The agent also reads the core, [agent] and [ovn] options of the server's own lists.
    "/etc/neutron/neutron_ovn_metadata_agent.ini": (
        "neutron.ovn.metadata.agent", "neutron", "neutron.agent", "neutron.ml2.ovn", "oslo.log"),
    # [experimental] linuxbridge = true must be in both files (Zed refuses the agent otherwise).
    "/etc/neutron/plugins/ml2/linuxbridge_agent.ini": ("neutron.ml2.linuxbridge.agent", "neutron.experimental", "oslo.log"),
    "/etc/neutron/l3_agent.ini": ("neutron.az.agent", "neutron.base.agent", "neutron.l3.agent", "oslo.log"),
    "/etc/neutron/dhcp_agent.ini": ("neutron.az.agent", "neutron.base.agent", "neutron.dhcp.agent", "oslo.log"),
    "/etc/neutron/metadata_agent.ini": ("neutron.metadata.agent", "oslo.log"),
}
# nova-compute reads nova-compute.conf after nova.conf, with the same options.
NAMESPACES["/etc/nova/nova-compute.conf"] = NAMESPACES["/etc/nova/nova.conf"]

# Policy files and the module whose list_rules() registers every rule name of the service.
# oslo.policy ignores a rule it does not know, so a misspelt name in a file meant to refuse
# an action would silently leave the action allowed; oslopolicy-validator (Zed) crashes on
# files that deny rules ("!"), hence this check of the names against the service's own list.
POLICY_RULES: dict[str, str] = {"/etc/nova/policy.yaml": "nova.policies"}
_UNKNOWN_RULES = (
    "import sys, yaml, importlib\n"
    "known = {r.name for r in importlib.import_module(sys.argv[1]).list_rules()}\n"
    "for name in sorted(set(yaml.safe_load(open(sys.argv[2])) or {}) - known):\n"
    "    print('ERROR: unknown policy rule ' + name)\n")

# Options registered only at run time, when a keystoneauth plugin is loaded for the group:
# no static namespace declares them, so the validator cannot know them.
KEYSTONEAUTH_PLUGIN_OPTIONS = frozenset({
    "auth_url", "username", "password", "project_name", "user_domain_name", "project_domain_name",
    "user_domain_id", "project_domain_id", "region_name", "system_scope", "user_id", "project_id",
    "default_domain_id", "default_domain_name", "trust_id", "domain_id", "domain_name", "valid_interfaces",
    "endpoint_override", "service_type", "service_name", "interface", "version", "min_version", "max_version",
    "connect_retries", "connect_retry_delay", "status_code_retries", "status_code_retry_delay",
})
AUTH_GROUPS = frozenset({"service_user", "placement", "neutron", "nova", "glance", "keystone", "cinder", "ironic"})

# "ERROR:root:DEFAULT/my_ipp is not part of the sample config" (older releases: "... not found")
_NOT_FOUND = re.compile(r"(?P<group>[A-Za-z0-9_.-]+)/(?P<option>[A-Za-z0-9_.-]+) (is not part of the sample config|not found)")


def available() -> bool:
    try:
        from appliance.render import render_site  # noqa: F401
    except ImportError:
        return False
    return True


def problems_in(output: str) -> tuple[list[str], list[str]]:
    """Split validator output into real problems and allowed run-time auth options."""
    problems, allowed = [], []
    for line in output.splitlines():
        if "ERROR" not in line:
            continue
        match = _NOT_FOUND.search(line)
        if match and match["group"] in AUTH_GROUPS and match["option"] in KEYSTONEAUTH_PLUGIN_OPTIONS:
            allowed.append(f"{match['group']}/{match['option']}")
        elif "ERROR" in line:
            problems.append(line.strip())
    return problems, allowed


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@contextmanager
def image_root_overlay(raw: Path, work: Path) -> Iterator[Path]:
    """The image's root filesystem, attached read-only, with a writable overlay on top."""
    lower, upper, scratch, merged = (work / name for name in ("lower", "upper", "scratch", "merged"))
    for path in (lower, upper, scratch, merged):
        path.mkdir(parents=True, exist_ok=True)
    device = subprocess.run(["losetup", "--find", "--show", "--read-only", str(raw)],
                            check=True, capture_output=True, text=True).stdout.strip()
    mounted: list[Path] = []
    try:
        # No partition-table parsing on some kernels: ask for the partitions explicitly.
        subprocess.run(["partx", "-a", device], capture_output=True)
        partitions = sorted(Path("/dev").glob(Path(device).name + "p*"))
        root_part = _find_root_partition(partitions, lower, mounted)
        if root_part is None:
            raise ApplianceError(f"no partition of {raw} holds a root filesystem")
        _run(["mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir={lower},upperdir={upper},workdir={scratch}", str(merged)])
        mounted.append(merged)
        yield merged
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], capture_output=True)
        subprocess.run(["partx", "-d", device], capture_output=True)
        subprocess.run(["losetup", "-d", device], capture_output=True)


def _find_root_partition(partitions: list[Path], lower: Path, mounted: list[Path]) -> Path | None:
    for part in partitions:
        if subprocess.run(["mount", "-o", "ro", str(part), str(lower)], capture_output=True).returncode != 0:
            continue
        if (lower / "etc/os-release").exists():
            mounted.append(lower)
            return part
        subprocess.run(["umount", str(lower)], capture_output=True)
    return None


def image_namespaces(root: Path) -> set[str]:
    """Names of the oslo.config.opts entry points the image's python packages declare."""
    names: set[str] = set()
    for entry_points in root.glob("usr/lib/python3/dist-packages/*.*-info/entry_points.txt"):
        section = None
        for line in entry_points.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]").strip()
            elif section == "oslo.config.opts" and "=" in line:
                names.add(line.split("=", 1)[0].strip())
    return names


def check_image(profile: Profile, raw: Path, settings: BuildSettings, log_path: Path, *, log=print) -> dict:
    """Validate every rendered file that has a namespace list; returns a summary for the manifest."""
    from appliance.render import render_site

    work = settings.work_dir / "config-check"
    shutil.rmtree(work, ignore_errors=True)
    rendered = Path(tempfile.mkdtemp(prefix="rendered.", dir=settings.work_dir))
    summary: dict = {"files": {}, "allowed_runtime_options": []}
    failures = []
    try:
        render_site(profile, None, rendered)
        with image_root_overlay(raw, work) as root, open(log_path, "a") as log_file:
            known = image_namespaces(root)
            staged = root / "run/appliance-config-check"
            shutil.copytree(rendered, staged)
            for path, wanted in NAMESPACES.items():
                if not (staged / path.lstrip("/")).is_file():
                    continue
                namespaces = [ns for ns in wanted if ns in known]
                missing = sorted(set(wanted) - set(namespaces))
                cmd = ["chroot", str(root), "oslo-config-validator", "--input-file", f"/run/appliance-config-check{path}"]
                for ns in namespaces:
                    cmd += ["--namespace", ns]
                done = subprocess.run(cmd, capture_output=True, text=True)
                output = done.stdout + done.stderr
                log_file.write(f"\n$ {' '.join(cmd[2:])}\n{output}")
                problems, allowed = problems_in(output)
                if done.returncode != 0 and not problems and not allowed:
                    problems = [f"oslo-config-validator exited {done.returncode}: {output.strip()[-300:]}"]
                summary["files"][path] = {"namespaces": namespaces, "missing_namespaces": missing, "problems": problems}
                summary["allowed_runtime_options"] += [f"{path}: {a}" for a in allowed]
                failures += [f"{path}: {p}" for p in problems]
                log(f"[build] config-check {path}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
            for path, module in POLICY_RULES.items():
                if not (staged / path.lstrip("/")).is_file():
                    continue
                cmd = ["chroot", str(root), "python3", "-c", _UNKNOWN_RULES, module,
                       f"/run/appliance-config-check{path}"]
                done = subprocess.run(cmd, capture_output=True, text=True)
                output = done.stdout + done.stderr
                log_file.write(f"\n$ policy rule names of {path} against {module}\n{output}")
                problems = [line.strip() for line in output.splitlines() if line.startswith("ERROR")]
                if done.returncode != 0:
                    problems.append(f"policy check exited {done.returncode}: {output.strip()[-300:]}")
                summary["files"][path] = {"policy_rules_of": module, "problems": problems}
                failures += [f"{path}: {p}" for p in problems]
                log(f"[build] config-check {path}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    finally:
        shutil.rmtree(rendered, ignore_errors=True)
    if failures:
        raise ApplianceError("rendered configs do not match the services' schemas:\n  " + "\n  ".join(failures))
    if not summary["files"]:
        raise ApplianceError("config check found no rendered file to validate")
    return summary
