"""The VM harness's pure logic: accelerator choice, ports, the qemu command line, the
NoCloud volume's content and root's authorized keys."""

import subprocess
from pathlib import Path

import pytest
import yaml

from appliance.agent.steps_host import authorize_root_keys
from pipeline.harness import cidata, qemu, vm

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB9bVfq1V2Hk8sQ1m2kGq1iC0vXx8Zy1h7Q0T1m3mQ0c harness"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB9bVfq1V2Hk8sQ1m2kGq1iC0vXx8Zy1h7Q0T1m3mQ0d operator"


def _never():
    raise AssertionError("the probe must not run")


@pytest.mark.parametrize("env, opens, probe, expected", [
    ("kvm", False, _never, "kvm"),  # the operator's choice wins, no probe
    (None, False, _never, qemu.TCG),  # no usable /dev/kvm: no probe either
    (None, True, lambda: False, qemu.TCG),  # nested KVM that stalls: the probe says no
    (None, True, lambda: True, "kvm"),
], ids=["env", "no-device", "probe-stalls", "kvm-works"])
def test_accelerator_choice(env, opens, probe, expected):
    assert qemu.choose_accelerator(env, opens, probe) == expected


def test_kvm_probe_gives_up_within_its_timeout(monkeypatch, tmp_path):
    """A probe qemu that never writes (a stalled vCPU) is killed and counts as no KVM."""
    import time
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    start = time.monotonic()
    assert qemu.kvm_runs_guest_code(tmp_path / "image.qcow2", timeout=1.0) is False
    assert time.monotonic() - start < 5


def test_kernel_start_is_what_the_probe_looks_for():
    assert qemu.KERNEL_STARTED.search(b"[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)")
    assert not qemu.KERNEL_STARTED.search(b"SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from Hard Disk...")


@pytest.mark.parametrize("first, busy, expected", [
    (None, set(), [2300, 2301, 2302]),
    (None, {2301}, [2302, 2303, 2304]),
    (2350, set(), [2350, 2351, 2352]),
], ids=["first-run", "skips-busy", "user-choice"])
def test_pick_ports(first, busy, expected):
    assert qemu.pick_ports(3, first=first, free=lambda p: p not in busy) == expected


@pytest.mark.parametrize("first, busy, message", [
    (2398, set(), "not all inside 2300-2399"),
    (2350, {2351}, "port 2351 on 127.0.0.1 is in use"),
    (None, set(range(2300, 2400, 2)), "no 3 consecutive free ports"),
], ids=["outside-range", "taken", "none-free"])
def test_pick_ports_refuses(first, busy, message):
    with pytest.raises(ValueError, match=message):
        qemu.pick_ports(3, first=first, free=lambda p: p not in busy)


def _spec(tmp_path, **kw):
    base = dict(overlay=tmp_path / "o.qcow2", seed=tmp_path / "seed.img", console_log=tmp_path / "c.log",
                pidfile=tmp_path / "q.pid", monitor=tmp_path / "m.sock",
                ports=qemu.forwards([2300, 2301, 2302, 2303, 2304, 2305]))
    return qemu.VmSpec(**(base | kw))


def test_qemu_command_bios(tmp_path):
    cmd = qemu.qemu_command(_spec(tmp_path))
    line = " ".join(cmd)
    nic = cmd[cmd.index("-nic") + 1]
    assert nic.startswith("user,") and "restrict=on" in nic.split(",")
    # Every forward binds loopback only, SSH and the public APIs.
    assert [f for f in nic.split(",") if f.startswith("hostfwd")] == [
        "hostfwd=tcp:127.0.0.1:2300-:22", "hostfwd=tcp:127.0.0.1:2301-:5000", "hostfwd=tcp:127.0.0.1:2302-:8774",
        "hostfwd=tcp:127.0.0.1:2303-:8778", "hostfwd=tcp:127.0.0.1:2304-:9292", "hostfwd=tcp:127.0.0.1:2305-:9696"]
    assert "guestfwd" not in line
    assert cmd[cmd.index("-accel") + 1] == qemu.TCG and cmd[cmd.index("-cpu") + 1] == "max"
    assert "-daemonize" in cmd and cmd[cmd.index("-pidfile") + 1] == str(tmp_path / "q.pid")
    # The image is never a drive: only the overlay (and the read-only seed).
    drives = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-drive"]
    assert drives == [f"file={tmp_path / 'o.qcow2'},format=qcow2,if=virtio,discard=unmap",
                      f"file={tmp_path / 'seed.img'},format=raw,if=virtio,readonly=on"]
    assert "pflash" not in line


def test_qemu_command_uefi_and_kvm(tmp_path):
    cmd = qemu.qemu_command(_spec(tmp_path, firmware="uefi", uefi_vars=tmp_path / "vars.fd", accel="kvm",
                                  memory_mb=2048, cpus=4))
    drives = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-drive"]
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={qemu.OVMF_CODE}" in drives
    assert f"if=pflash,format=raw,unit=1,file={tmp_path / 'vars.fd'}" in drives
    assert cmd[cmd.index("-cpu") + 1] == "host"
    assert cmd[cmd.index("-m") + 1] == "2048" and cmd[cmd.index("-smp") + 1] == "4"


@pytest.mark.parametrize("kw, message", [
    ({"firmware": "coreboot"}, "expected one of bios, uefi"),
    ({"firmware": "uefi"}, "writable copy of the OVMF variables"),
], ids=["unknown-firmware", "uefi-without-vars"])
def test_qemu_command_refuses(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        qemu.qemu_command(_spec(tmp_path, **kw))


@pytest.mark.parametrize("site, expected_keys", [
    (None, [KEY]),
    ("network: {cidr: 10.77.0.0/24}\n", [KEY]),
    (f"root_authorized_keys: ['{OTHER}']\n", [OTHER, KEY]),
    (f"root_authorized_keys: ['{KEY}']\n", [KEY]),  # not twice
], ids=["no-site", "site", "operator-key-kept", "already-there"])
def test_seed_site_carries_the_harness_key(site, expected_keys):
    data = yaml.safe_load(cidata.harness_site(site, KEY + "\n"))
    assert data["root_authorized_keys"] == expected_keys
    if site and "network" in site:
        assert data["network"] == {"cidr": "10.77.0.0/24"}


@pytest.mark.parametrize("site, scale, expected", [
    (None, None, None),  # KVM: no timeouts key, the appliance's default
    (None, 4.0, {"scale": 4.0}),  # TCG
    ("timeouts: {scale: 2}\n", 4.0, {"scale": 2}),  # the operator's own value wins
], ids=["kvm", "tcg", "operator-set"])
def test_seed_site_carries_the_harness_timeout_scale(site, scale, expected):
    data = yaml.safe_load(cidata.harness_site(site, KEY + "\n", scale))
    assert data.get("timeouts") == expected


@pytest.mark.parametrize("accel, scale", [("kvm", None), (qemu.TCG, 4.0), ("tcg", 4.0)])
def test_vm_timeout_scale_only_without_kvm(accel, scale):
    assert vm.timeout_scale(accel) == scale


def test_seed_volume_is_a_cidata_fat_volume(tmp_path):
    pytest.importorskip("shutil").which("mcopy") or pytest.skip("mtools not installed")
    files = cidata.seed_files("network: {cidr: 10.77.0.0/24}\n", "appliance-1")
    image = cidata.write_seed(tmp_path / "seed.img", files)
    assert image.stat().st_mode & 0o777 == 0o600
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(image)], capture_output=True, text=True)
    assert label.stdout.strip() == "CIDATA"  # what the agent's SEED_LABELS look for
    listing = subprocess.run(["mdir", "-b", "-i", str(image), "::"], capture_output=True, text=True).stdout
    assert sorted(Path(p).name.lower() for p in listing.split()) == ["appliance.yaml", "meta-data", "user-data"]
    copied = subprocess.run(["mtype", "-i", str(image), "::appliance.yaml"], capture_output=True, text=True).stdout
    assert copied == "network: {cidr: 10.77.0.0/24}\n"
    assert "instance-id: appliance-1" in files["meta-data"]
    assert not list(tmp_path.glob("*.d"))  # the staging directory is gone


def test_root_keys_added_once_and_existing_lines_kept(tmp_path):
    ssh = tmp_path / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "authorized_keys").write_text(OTHER + "\n")
    authorize_root_keys((KEY, OTHER), home=tmp_path)
    authorize_root_keys((KEY,), home=tmp_path)
    assert (ssh / "authorized_keys").read_text().splitlines() == [OTHER, KEY]
    assert (ssh / "authorized_keys").stat().st_mode & 0o777 == 0o600


def test_root_keys_none_writes_nothing(tmp_path):
    authorize_root_keys((), home=tmp_path)
    assert not (tmp_path / ".ssh").exists()


def test_vm_ssh_shares_one_connection_per_vm(monkeypatch, tmp_path):
    from pipeline.harness import vm

    seen = []
    monkeypatch.setattr(vm.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        vm.ssh(vm.VmState(name=name, image="x", state_dir=str(tmp_path / name), ports={"22": 2300}), "true")
    paths = [next(arg for arg in cmd if arg.startswith("ControlPath=")) for cmd in seen]
    assert paths == [f"ControlPath={tmp_path / 'a' / 'ssh.sock'}", f"ControlPath={tmp_path / 'b' / 'ssh.sock'}"]
    assert all("ControlMaster=auto" in cmd for cmd in seen)


def test_vm_disk_smaller_than_the_image_is_refused_before_anything_starts(tmp_path, monkeypatch):
    from appliance.errors import ApplianceError
    from pipeline.harness import vm

    image = tmp_path / "bookworm-zed" / "appliance.qcow2"
    image.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "5G"], check=True)
    monkeypatch.setattr(vm, "BOOT_ROOT", tmp_path / "boot")
    monkeypatch.setattr(vm, "ensure_commands", lambda commands: None)
    with pytest.raises(ApplianceError, match=r"--disk 4: smaller than the image's disk \(5.0 GiB\)"):
        vm.boot("bookworm-zed", tmp_path, disk_gb=4, say=lambda line: None)
    assert not (tmp_path / "boot").exists()
