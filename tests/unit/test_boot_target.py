"""One harness interface: boot_target picks the kind and refuses another kind's options with
one line naming them; both kinds share copy_in."""

import subprocess
from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from pipeline.harness.target import ContainerTarget, VmTarget, boot_target

ART = Path("/nonexistent/artifacts")


@pytest.mark.parametrize("kind, options, expected", [
    ("container", {}, ContainerTarget(profile="p", artifacts=ART)),
    ("container", {"from_tree": True, "lan": True, "memory_mb": None},
     ContainerTarget(profile="p", artifacts=ART, from_tree=True, lan=True)),
    ("vm", {}, VmTarget(profile="p", artifacts=ART)),
    ("vm", {"memory_mb": 2048, "firmware": "uefi", "from_tree": None, "lan": False},
     VmTarget(profile="p", artifacts=ART, memory_mb=2048, firmware="uefi")),
], ids=["container", "container-options", "vm", "vm-options-unset-foreign"])
def test_boot_target_takes_its_own_options(kind, options, expected):
    assert boot_target(kind, "p", ART, **options) == expected


@pytest.mark.parametrize("kind, options, message", [
    ("container", {"memory_mb": 2048}, r"^--memory: only for the vm harness \(boot the VM with --vm\)$"),
    ("container", {"firmware": "uefi", "port": 2300}, r"^--firmware, --port: only for the vm harness"),
    ("vm", {"from_tree": True}, r"^--from-tree: only for the container harness \(leave out --vm\)$"),
    ("vm", {"lan": True}, r"^--lan: only for the container harness"),
    ("lxd", {}, r"unknown boot target 'lxd' \(expected one of container, vm\)"),
], ids=["container-memory", "container-firmware-port", "vm-from-tree", "vm-lan", "unknown-kind"])
def test_boot_target_refuses_other_kinds_options(kind, options, message):
    with pytest.raises(ApplianceError, match=message):
        boot_target(kind, "p", ART, **options)


class _Recording(ContainerTarget):
    """A target whose run() records instead of entering a container."""

    def __init__(self, rc=0):
        super().__init__(profile="p", artifacts=ART)
        self.calls, self.rc = [], rc

    def run(self, argv, *, timeout=600, stdin=None):
        self.calls.append((argv, stdin))
        return subprocess.CompletedProcess(argv, self.rc, "", "disk full")


@pytest.mark.parametrize("dest, mode, script", [
    ("/etc/appliance/appliance.yaml", 0o600,
     "umask 077 && cat > /etc/appliance/appliance.yaml && chmod 600 /etc/appliance/appliance.yaml"),
    ("/tmp/a file; rm -rf /", 0o644, "umask 077 && cat > '/tmp/a file; rm -rf /' && chmod 644 '/tmp/a file; rm -rf /'"),
], ids=["plain", "quoted"])
def test_copy_in_writes_through_run(tmp_path, dest, mode, script):
    source = tmp_path / "site.yaml"
    source.write_text("region: RegionOne\n")
    target = _Recording()
    target.copy_in(source, dest, mode=mode)
    assert target.calls == [(["sh", "-c", script], "region: RegionOne\n")]


def test_copy_in_failure_is_one_line(tmp_path):
    source = tmp_path / "site.yaml"
    source.write_text("x: 1\n")
    with pytest.raises(ApplianceError, match=r"copying .*site.yaml to container /etc/x failed: disk full"):
        _Recording(rc=1).copy_in(source, "/etc/x")
