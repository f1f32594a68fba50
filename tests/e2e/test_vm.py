"""The appliance as an operator runs it: appliance.qcow2 under qemu (TCG on these hosts),
BIOS firmware, the site config on a NoCloud volume, no container fixups. First boot, the
smoke, a reboot from inside with an instance running, the smoke again; then the same image
on UEFI firmware up to SSH and the start of first boot.

Slow under TCG (see README, "The appliance as a VM"): the timeouts allow for a loaded host.
"""

import json
import shlex
import subprocess
import time

import pytest

from project import ROOT
from pipeline.harness import local, vm

pytestmark = pytest.mark.e2e

PROFILE = "bookworm-zed"
ARTIFACTS = ROOT / "artifacts"
NAME = "pytest-vm"
TENANT_CIDR = "10.77.0.0/24"  # not the default 192.168.0.0/24: proves the NoCloud site config applied
SERVER = "vm-reboot-probe"


def in_vm(state, command, *, timeout=600, check=True):
    result = vm.ssh(state, command, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{command} exited {result.returncode}: {result.stderr[-800:]}"
    return result


def run_smoke(state):
    cmd = [str(ROOT / ".venv/bin/python"), "-m", "pipeline.smoke", "--target", state.target,
           "--identity", str(local.harness_key(PROFILE))]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=3600)


def collect(state, dest):
    dest.mkdir(parents=True, exist_ok=True)
    for name, command in (("journal.txt", "journalctl --no-pager -b -o short-monotonic"),
                          ("status.txt", "appliance status"), ("firstboot.json", "cat /var/lib/appliance/firstboot.json")):
        (dest / name).write_text(vm.ssh(state, command, timeout=120).stdout)
    console = state.dir / "console.log"
    if console.exists():
        (dest / "console.log").write_bytes(console.read_bytes())


@pytest.fixture(scope="class")
def bios_vm(appliance_image, tmp_path_factory):
    site = tmp_path_factory.mktemp("vm-site") / "appliance.yaml"
    site.write_text(f"network: {{cidr: {TENANT_CIDR}}}\n")
    vm.stop(PROFILE, name=NAME)
    state = vm.boot(PROFILE, ARTIFACTS, site=site, name=NAME, memory_mb=4096, cpus=2, firmware="bios")
    started = time.monotonic()
    try:
        journal = vm.wait_for_first_boot(state, timeout=5400)
        state.first_boot_s = time.monotonic() - started
        state.journal = journal
        yield state
    finally:
        if vm.pid_alive(state.pid):
            try:
                collect(state, ARTIFACTS / "logs" / "pytest-vm")
            except Exception as exc:  # logs are best effort
                print(f"could not collect the VM's logs: {exc}")
        vm.stop(PROFILE, name=NAME)
        assert not vm.pid_alive(state.pid), "qemu still runs after --stop"
        assert not state.dir.exists(), "the VM's overlay and state were left behind"


class TestBiosVm:
    def test_first_boot_completes_and_took_site_config_from_nocloud(self, bios_vm):
        print(f"VM boot -> cloud ready: {bios_vm.first_boot_s:.0f} s")
        assert bios_vm.journal.get("completed_at")
        log = in_vm(bios_vm, "cat /var/log/appliance/firstboot.log").stdout
        assert "site config taken from /dev/" in log and ":appliance.yaml" in log
        subnets = json.loads(in_vm(bios_vm, "openstack --os-cloud admin subnet list -f json").stdout)
        assert TENANT_CIDR in {s["Subnet"] for s in subnets}

    def test_no_container_fixups_and_no_failed_unit(self, bios_vm):
        assert in_vm(bios_vm, "test ! -e /etc/appliance/harness.env && test ! -e "
                              "/usr/local/sbin/appliance-container-fixups").returncode == 0
        failed = in_vm(bios_vm, "systemctl list-units --failed --plain --no-legend", check=False).stdout
        assert failed.strip() == "", failed
        # What the container harness masks runs for real here.
        for unit in ("systemd-udevd.service", "systemd-machined.service", "systemd-networkd.service"):
            state = in_vm(bios_vm, f"systemctl is-enabled {unit}; systemctl is-active {unit}", check=False).stdout
            assert "masked" not in state, f"{unit}: {state}"

    def test_no_oom_kill_during_first_boot(self, bios_vm):
        kernel = in_vm(bios_vm, "journalctl -k --no-pager -o cat").stdout
        assert "Out of memory" not in kernel and "oom-kill" not in kernel

    def test_smoke_passes(self, bios_vm):
        started = time.monotonic()
        result = run_smoke(bios_vm)
        print(result.stdout[-3000:])
        print(f"smoke: {time.monotonic() - started:.0f} s")
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1].endswith(" 0 failed")

    def test_reboot_from_inside_brings_instances_and_smoke_back(self, bios_vm):
        create = ("openstack --os-cloud lxc server create --flavor lxc.medium --image lxc_debian_12 --network nat "
                  f"--key-name lxckey --wait -f value -c id {SERVER}")
        server = in_vm(bios_vm, create, timeout=900).stdout.strip()
        boot_id = in_vm(bios_vm, "cat /proc/sys/kernel/random/boot_id").stdout
        journal_before = in_vm(bios_vm, "cat /var/lib/appliance/firstboot.json").stdout
        vm.ssh(bios_vm, "systemctl reboot", timeout=30)
        started = time.monotonic()
        deadline = started + 1800
        while True:  # the old boot's sshd may still answer for a moment
            result = vm.ssh(bios_vm, "cat /proc/sys/kernel/random/boot_id", timeout=60)
            if result.returncode == 0 and result.stdout != boot_id:
                break
            assert time.monotonic() < deadline, "the VM did not come back over SSH"
            time.sleep(5)
        ready = ("until openstack --os-cloud admin compute service list -f value -c State 2>/dev/null | grep -qx up "
                 "&& ! openstack --os-cloud admin compute service list -f value -c State | grep -qx down; do sleep 5; done; "
                 f"until [ \"$(openstack --os-cloud lxc server show {server} -f value -c status)\" = ACTIVE ]; do sleep 5; done")
        in_vm(bios_vm, f"timeout 1800 bash -c {shlex.quote(ready)}", timeout=1900)
        print(f"reboot -> services up, instance ACTIVE: {time.monotonic() - started:.0f} s")
        # The agent did nothing on the way: its journal is the one first boot wrote.
        assert in_vm(bios_vm, "cat /var/lib/appliance/firstboot.json").stdout == journal_before
        failed = in_vm(bios_vm, "systemctl list-units --failed --plain --no-legend", check=False).stdout
        assert failed.strip() == "", failed
        result = run_smoke(bios_vm)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        in_vm(bios_vm, f"openstack --os-cloud lxc server delete --wait {server}", timeout=600)


def test_uefi_boots_to_ssh_and_first_boot(appliance_image):
    """The same image on OVMF (no Secure Boot): GRUB's EFI binary, the kernel, SSH with the
    NoCloud key, and the first-boot agent running. First boot itself is the BIOS test's."""
    vm.stop(PROFILE, name=NAME)
    state = vm.boot(PROFILE, ARTIFACTS, name=NAME, firmware="uefi")
    try:
        vm.wait_ssh(state, timeout=1800)
        assert in_vm(state, "test -d /sys/firmware/efi && echo efi").stdout.strip() == "efi"
        deadline = time.monotonic() + 900
        while in_vm(state, "test -s /var/lib/appliance/firstboot.json", check=False).returncode != 0:
            assert time.monotonic() < deadline, "first boot did not start"
            time.sleep(10)
    finally:
        vm.stop(PROFILE, name=NAME)
    assert not state.dir.exists()
