"""The qemu command line of the VM harness, and the choices it depends on: accelerator,
firmware, forwarded ports. Pure except for the KVM probe and the port check, which the
callers inject into the pure parts (unit-tested with fakes).

Networking is qemu's user mode with ``restrict=on``: the guest reaches nothing outside
(no uplink, no host service), and only the forwards listed here reach the guest, each
bound to 127.0.0.1 (qemu docs, "-nic user": restrict=on "isolates the guest from the host
and the outside"; hostfwd still applies).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# "<host> login: " at the start of a line; a kernel message may follow on the same line.
LOGIN_PROMPT = re.compile(rb"^(?!Last )[\w.-]+ login: ", re.M)
# systemd shortens long unit names on the console ("appliance-firstbo…enders /etc, ..."):
# match the start of the name.
FIRSTBOOT_STARTED = re.compile(rb"Starting \S*appliance-firstbo|\[firstboot\]")
KERNEL_STARTED = re.compile(rb"Linux version \d")

# One host thread per vCPU, and a 2 GiB translation cache (qemu's default is 1 GiB): a TCG
# first boot filled the default 14 times in 37 min (`info jit`: "TB flush count"), and
# after each flush every hot guest code path is translated again.
TCG = "tcg,thread=multi,tb-size=2048"
# Guest ports forwarded to 127.0.0.1: SSH first, then the public APIs (Keystone, Nova,
# Placement, Glance, Neutron), as the profile declares them with scope "any".
GUEST_PORTS = (22, 5000, 8774, 8778, 9292, 9696)
PORT_RANGE = range(2300, 2400)
FIRMWARES = ("bios", "uefi")
# Debian's ovmf package: the 4 MiB flash layout (the 2 MiB one is deprecated there).
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


def choose_accelerator(env: str | None, kvm_device_opens: bool, probe: Callable[[], bool]) -> str:
    """``APPLIANCE_QEMU_ACCEL`` wins; else KVM when /dev/kvm opens read-write *and* a probe VM
    actually runs guest code (nested KVM on these hosts opens fine and then stalls the
    guest); else TCG. ``probe`` is only called when the device opens."""
    if env:
        return env
    if kvm_device_opens and probe():
        return "kvm"
    return TCG


def kvm_device_opens(path: str = "/dev/kvm") -> bool:
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def kvm_runs_guest_code(image: Path, timeout: float = 20.0) -> bool:
    """Boot ``image`` (read-only: -snapshot, no network) with KVM and wait for the kernel's
    first line on the serial console. On these hosts nested KVM runs SeaBIOS to its end yet
    stalls before GRUB prints anything (measured: an empty console after 95 s), so only the
    kernel speaking proves KVM works. Killed after ``timeout`` seconds: it never hangs its
    caller. Under working KVM the kernel speaks within a few seconds."""
    with tempfile.TemporaryDirectory(prefix="kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "1024",
               "-display", "none", "-vga", "none", "-monitor", "none", "-nic", "none", "-no-reboot", "-snapshot",
               "-drive", f"file={image},format=qcow2,if=virtio,readonly=on", "-serial", f"file:{console}"]
        try:
            process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            return False
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if console.exists() and KERNEL_STARTED.search(console.read_bytes()):
                    return True
                if process.poll() is not None:
                    return False
                time.sleep(0.5)
            return False
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def accelerator(image: Path) -> str:
    return choose_accelerator(os.environ.get("APPLIANCE_QEMU_ACCEL"), kvm_device_opens(),
                              lambda: kvm_runs_guest_code(image))


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_ports(count: int, *, first: int | None = None, free: Callable[[int], bool] = port_free,
               allowed: range = PORT_RANGE) -> list[int]:
    """``count`` consecutive free host ports: from ``first`` (the user's choice; each must
    be free and inside ``allowed``), else the first free run in ``allowed``. Raises ValueError
    with one line otherwise."""
    if first is not None:
        ports = list(range(first, first + count))
        outside = [p for p in ports if p not in allowed]
        if outside:
            raise ValueError(f"ports {ports[0]}-{ports[-1]} are not all inside {allowed.start}-{allowed.stop - 1}")
        taken = [p for p in ports if not free(p)]
        if taken:
            raise ValueError(f"port {taken[0]} on 127.0.0.1 is in use; choose another --port")
        return ports
    start = allowed.start
    while start + count <= allowed.stop:
        ports = list(range(start, start + count))
        busy = [p for p in ports if not free(p)]
        if not busy:
            return ports
        start = busy[-1] + 1
    raise ValueError(f"no {count} consecutive free ports in {allowed.start}-{allowed.stop - 1} on 127.0.0.1")


def forwards(host_ports: list[int]) -> dict[int, int]:
    """Guest port -> host port, in GUEST_PORTS order."""
    return dict(zip(GUEST_PORTS, host_ports, strict=True))


@dataclass(frozen=True)
class VmSpec:
    overlay: Path  # qcow2 over the image; the only disk qemu writes
    seed: Path | None  # NoCloud volume (vfat, label CIDATA)
    console_log: Path
    pidfile: Path
    monitor: Path  # unix socket of the human monitor (system_powerdown at --stop)
    ports: dict[int, int]  # guest port -> host port on 127.0.0.1
    memory_mb: int = 4096
    cpus: int = 2
    accel: str = TCG
    firmware: str = "bios"
    uefi_vars: Path | None = None  # a writable copy of OVMF_VARS for this VM


def qemu_command(spec: VmSpec) -> list[str]:
    """The qemu command line: daemonized, serial console to a file, virtio disk and NIC."""
    if spec.firmware not in FIRMWARES:
        raise ValueError(f"firmware {spec.firmware!r}: expected one of {', '.join(FIRMWARES)}")
    fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{host}-:{guest}" for guest, host in spec.ports.items())
    cpu = "host" if spec.accel.startswith("kvm") else "max"
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", spec.accel, "-cpu", cpu,
           "-smp", str(spec.cpus), "-m", str(spec.memory_mb),
           "-display", "none", "-vga", "none", "-serial", f"file:{spec.console_log}",
           "-monitor", f"unix:{spec.monitor},server=on,wait=off",
           "-daemonize", "-pidfile", str(spec.pidfile),
           "-drive", f"file={spec.overlay},format=qcow2,if=virtio,discard=unmap",
           "-nic", f"user,model=virtio-net-pci,restrict=on,{fwd}",
           "-device", "virtio-rng-pci"]
    if spec.seed is not None:
        cmd += ["-drive", f"file={spec.seed},format=raw,if=virtio,readonly=on"]
    if spec.firmware == "uefi":
        if spec.uefi_vars is None:
            raise ValueError("uefi needs a writable copy of the OVMF variables")
        cmd += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={spec.uefi_vars}"]
    return cmd
