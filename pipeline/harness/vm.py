"""Booting the built appliance as a VM under qemu, the way an operator boots appliance.qcow2.

The image is only ever read: qemu writes a throwaway qcow2 overlay in the VM's state
directory. The site config reaches the VM on a NoCloud volume (cidata.py); the harness's
SSH key travels in it as ``root_authorized_keys``. qemu runs daemonized with a pidfile, so
`invoke boot --vm` returns and `invoke boot --vm --stop` ends it (an ACPI power-off first).
None of the container fixups apply: the VM boots the image exactly as built.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from appliance.agent.context import Paths
from appliance.errors import ApplianceError

from ..imagebuild.host import apt_install
from . import cidata, qemu
from .host import ensure_commands
from .local import BOOT_ROOT, boot_name, follow_journal, harness_key

SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=10",
               "-o", "ServerAliveCountMax=3"]
HOST_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "mkfs.vfat": "dosfstools",
              "mcopy": "mtools", "ssh": "openssh-client"}


@dataclass
class VmState:
    name: str
    image: str
    state_dir: str
    ports: dict[str, int] = field(default_factory=dict)  # guest port (as JSON key) -> host port
    pid: int = 0
    accel: str = qemu.TCG
    firmware: str = "bios"
    memory_mb: int = 4096
    cpus: int = 2
    started_at: float = 0.0

    @property
    def dir(self) -> Path:
        return Path(self.state_dir)

    @property
    def ssh_port(self) -> int:
        return self.ports["22"]

    @property
    def target(self) -> str:
        return f"ssh://root@127.0.0.1:{self.ssh_port}"

    def save(self) -> None:
        (self.dir / "state.json").write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, state_dir: Path) -> "VmState | None":
        try:
            return cls(**json.loads((state_dir / "state.json").read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None


def vm_state_dir(profile: str, name: str | None = None) -> Path:
    """Beside the nspawn harness's state directories, apart from them (``vm-<name>``)."""
    return BOOT_ROOT / f"vm-{boot_name(profile, name)}"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


DEFAULT_DISK_GB = 20
# The site's timeouts.scale for a VM under TCG (full emulation): every service runs several
# times slower there than on hardware (a 2-vCPU TCG VM on 2 cores: RabbitMQ 140 s from start
# to answering, `import nova.compute.manager` 53-68 s), so every bound of the agent is
# stretched; KVM runs at hardware speed and needs none.
TCG_TIMEOUT_SCALE = 4.0


def image_virtual_size(image: Path) -> int:
    """Bytes the image's disk holds (``qemu-img info``'s virtual-size)."""
    info = subprocess.run(["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True, check=True)
    return int(json.loads(info.stdout)["virtual-size"])


def boot(profile: str, artifacts: Path, *, site: Path | None = None, memory_mb: int = 4096, cpus: int = 2,
         firmware: str = "bios", port: int | None = None, name: str | None = None, disk_gb: int = DEFAULT_DISK_GB,
         say=print) -> VmState:
    """Start the VM in the background; return once qemu runs (not once it has booted).

    ``disk_gb``: the VM's disk in GiB (the overlay's virtual size; qcow2 takes host space
    only as the guest writes). The image's root partition grows to it at first boot; the
    rest is where instances' disks and Glance's images live (Placement's DISK_GB), so
    the image's own size (4 GiB, about 0.6 free) leaves no room for instances."""
    if firmware not in qemu.FIRMWARES:
        raise ApplianceError(f"--firmware {firmware}: expected one of {', '.join(qemu.FIRMWARES)}")
    ensure_commands(HOST_TOOLS)
    if firmware == "uefi" and not qemu.OVMF_CODE.is_file():
        apt_install(["ovmf"], print)
    image = artifacts / profile / "appliance.qcow2"
    if not image.is_file():
        raise ApplianceError(f"{image} does not exist; run `./inv build` first")
    image_bytes = image_virtual_size(image)
    if disk_gb * 2**30 < image_bytes:
        raise ApplianceError(f"--disk {disk_gb}: smaller than the image's disk ({image_bytes / 2**30:.1f} GiB); "
                             "give at least that")
    state_dir = vm_state_dir(profile, name)
    old = VmState.load(state_dir)
    if old is not None and pid_alive(old.pid):
        raise ApplianceError(f"VM {old.name} already runs (pid {old.pid}, SSH {old.target}); "
                             "`./inv boot --vm --stop` first")
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True, mode=0o700)

    site_yaml = _site_text(site, profile)
    key = harness_key(profile)
    accel = qemu.accelerator(image)
    seed_yaml = cidata.harness_site(site_yaml, key.with_suffix(".pub").read_text(), timeout_scale(accel))
    seed = cidata.write_seed(state_dir / "seed.img", cidata.seed_files(seed_yaml, f"appliance-{time.time_ns()}"))
    overlay = state_dir / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image.resolve()),
                    str(overlay), f"{disk_gb}G"], check=True)
    uefi_vars = None
    if firmware == "uefi":
        uefi_vars = state_dir / "OVMF_VARS.fd"
        shutil.copyfile(qemu.OVMF_VARS, uefi_vars)
    try:
        ports = qemu.forwards(qemu.pick_ports(len(qemu.GUEST_PORTS), first=port))
    except ValueError as exc:
        raise ApplianceError(str(exc)) from None
    spec = qemu.VmSpec(overlay=overlay, seed=seed, console_log=state_dir / "console.log",
                       pidfile=state_dir / "qemu.pid", monitor=state_dir / "monitor.sock", ports=ports,
                       memory_mb=memory_mb, cpus=cpus, accel=accel, firmware=firmware, uefi_vars=uefi_vars)
    state = VmState(name=boot_name(profile, name), image=str(image), state_dir=str(state_dir),
                    ports={str(g): h for g, h in ports.items()}, accel=accel, firmware=firmware,
                    memory_mb=memory_mb, cpus=cpus)
    started = subprocess.run(qemu.qemu_command(spec), capture_output=True, text=True)
    if started.returncode != 0:
        raise ApplianceError(f"qemu did not start: {started.stderr.strip()[-400:]}")
    state.pid = int(spec.pidfile.read_text().strip())
    state.started_at = time.time()
    state.save()
    say(f"[vm] {state.name}: {image.name} under qemu ({accel}, {firmware}, {cpus} vCPUs, {memory_mb} MiB, "
        f"{disk_gb} GiB disk), "
        f"pid {state.pid}; console: {spec.console_log}")
    say("[vm] forwarded on 127.0.0.1: " + ", ".join(f"{h}->{g}" for g, h in ports.items()))
    say(f"[vm] reach it: ssh -i {key} -p {state.ssh_port} root@127.0.0.1")
    say(f"[vm]   smoke: ./inv smoke --target {state.target} --identity {key}")
    return state


def timeout_scale(accel: str) -> float | None:
    """The site's ``timeouts.scale`` for a VM on ``accel``: TCG_TIMEOUT_SCALE without KVM,
    none (the appliance's default, 1) with it."""
    return None if accel.startswith("kvm") else TCG_TIMEOUT_SCALE


def _site_text(site: Path | None, profile: str) -> str | None:
    """The operator's site config, checked here as the agent will check it (one line and
    nothing started if it is bad), with a key file inlined: the VM cannot read host paths."""
    if site is None:
        return None
    from appliance.site_checks import read_public_key_file
    from appliance.sitefile import load_site

    from ..profiles import load_profile

    parsed = load_site(site, load_profile(profile))
    text = site.read_text(encoding="utf-8")
    if parsed.ssh_public_key_file is None:
        return text
    import yaml

    data = yaml.safe_load(text)
    data["ssh_public_key"] = read_public_key_file(parsed, str(site), site.parent)
    del data["ssh_public_key_file"]
    return yaml.safe_dump(data, sort_keys=False)


def running_state(profile: str, name: str | None = None) -> VmState:
    state = VmState.load(vm_state_dir(profile, name))
    if state is None or not pid_alive(state.pid):
        raise ApplianceError(f"no VM {boot_name(profile, name)} is running; `./inv boot --vm` first")
    return state


def multiplexing(control_path: Path) -> list[str]:
    """OpenSSH options sharing one connection among calls (ssh_config(5): ControlMaster,
    ControlPersist). Under TCG a new connection costs the guest seconds of CPU (sshd's
    re-exec and key exchange, emulated); polling first boot every 10 s over fresh
    connections took CPU from the services it waited for. The master goes to the
    background with its standard streams on /dev/null, so a caller capturing output is not
    held by it; it ends with the VM's sshd (reboot, power-off) or ``ssh -O exit``."""
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_path}", "-o", "ControlPersist=300"]


def ssh(state: VmState, command: str, *, timeout: float = 60, key: Path | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` as root in the VM over the VM's shared connection, ``stdin`` (text) on
    its standard input; a connection failure is returncode 255."""
    key = key or BOOT_ROOT / "keys" / "harness_ed25519"
    cmd = ["ssh", *SSH_OPTIONS, *multiplexing(state.dir / "ssh.sock"), "-i", str(key), "-p", str(state.ssh_port),
           "root@127.0.0.1", command]
    try:
        if stdin is None:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 255, "", f"timed out after {timeout:.0f} s")


def run_python(state: VmState, program: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``program`` (Python source) with the VM's python3 and ``args`` as its argv, over
    ``ssh``; the source goes in on stdin (a quoted here-document: nothing in it is expanded)."""
    quoted = " ".join(shlex.quote(a) for a in args)
    return ssh(state, f"python3 - {quoted} <<'PYTHON'\n{program}\nPYTHON\n", timeout=timeout)


def read_journal(state: VmState) -> dict | None:
    """The first-boot journal over SSH; None while SSH does not answer yet (sshd starting,
    host keys being generated) or the file is missing or caught mid-replace."""
    result = ssh(state, f"cat {Paths().journal}", timeout=60)
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        return None


def wait_for_first_boot(state: VmState, *, timeout: float = 3600, say=print) -> dict:
    """Follow first boot with the container path's progress lines; raise on a failed step,
    on qemu exiting, or after ``timeout`` seconds (TCG is slow: an hour by default)."""
    def gone() -> str | None:
        return None if pid_alive(state.pid) else f"qemu exited during first boot (console: {state.dir / 'console.log'})"

    def say_with_host_load(line: str) -> None:
        # An emulated guest runs as fast as the host lets it: a host load well over the VM's
        # vCPUs means something else took its CPU, which the guest's timings alone cannot show.
        say(f"{line} (host load {os.getloadavg()[0]:.1f})")

    return follow_journal(lambda: read_journal(state), gone, timeout=timeout, interval=10, say=say_with_host_load)


def wait_ssh(state: VmState, *, timeout: float = 1800) -> float:
    """Seconds until root's SSH login works."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not pid_alive(state.pid):
            raise ApplianceError(f"qemu exited (console: {state.dir / 'console.log'})")
        if ssh(state, "true", timeout=60).returncode == 0:
            return time.monotonic() - start
        time.sleep(5)
    raise ApplianceError(f"no SSH login within {timeout:.0f} s")


# Ready after a reboot: `appliance status --brief` says cloud ready (every unit up, every
# Nova service reported since its start, every agent of the profile alive) and every
# instance of the lxc project is ACTIVE again. The list must answer: an API still starting
# is not "ready".
READY_AFTER_REBOOT = (
    "appliance status --brief >/dev/null && "
    "v=$(openstack --os-cloud lxc server list -f value -c Status) && "
    "! printf '%s' \"$v\" | grep -qvx ACTIVE")


def boot_id(state: VmState) -> str:
    """The guest kernel's boot id; '' while SSH does not answer."""
    result = ssh(state, "cat /proc/sys/kernel/random/boot_id", timeout=60)
    return result.stdout.strip() if result.returncode == 0 else ""


def reboot(state: VmState, *, timeout: float = 3600, say=print) -> float:
    """``systemctl reboot`` inside the VM, as an operator reboots a server; returns the
    seconds until READY_AFTER_REBOOT holds on the new boot. Raises ApplianceError after
    ``timeout`` seconds or when qemu exits.

    It waits, cheaply, for systemd to finish starting the boot's units
    (``systemctl is-system-running --wait``) before asking the APIs, every 30 s: each
    ``openstack`` command is a Python start-up, tens of seconds of CPU under TCG, taken from
    the services still loading."""
    before = boot_id(state)
    started = time.monotonic()
    ssh(state, "systemctl reboot", timeout=30)
    said = False
    while True:
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise ApplianceError(f"the VM was not ready {timeout:.0f} s after its reboot")
        if not pid_alive(state.pid):
            raise ApplianceError(f"qemu exited during the reboot (console: {state.dir / 'console.log'})")
        now = boot_id(state)
        if now in ("", before):  # the old boot's sshd may still answer for a moment
            time.sleep(10)
            continue
        if not said:
            say(f"[vm] rebooted: SSH answers after {elapsed:.0f} s; waiting for the services")
            said = True
        ssh(state, "systemctl is-system-running --wait", timeout=max(60.0, timeout - elapsed))
        if ssh(state, READY_AFTER_REBOOT, timeout=600).returncode == 0:
            return time.monotonic() - started
        time.sleep(30)


def monitor(state: VmState, command: str) -> bool:
    """Send one human-monitor command; False if the monitor does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(state.dir / "monitor.sock"))
            sock.sendall(command.encode() + b"\n")
            time.sleep(0.5)
            return True
    except OSError:
        return False


def stop(profile: str, *, name: str | None = None, timeout: float = 300, say=print) -> None:
    """ACPI power-off (the guest shuts down as a server does), then SIGTERM/SIGKILL after
    ``timeout`` seconds; the overlay and seed go with the state directory."""
    state_dir = vm_state_dir(profile, name)
    state = VmState.load(state_dir)
    if state is None:
        say(f"[vm] no VM {boot_name(profile, name)} to stop")
        return
    how = "powered off"
    subprocess.run(["ssh", "-o", f"ControlPath={state.dir / 'ssh.sock'}", "-O", "exit", "root@127.0.0.1"],
                   capture_output=True, timeout=30)
    if pid_alive(state.pid):
        monitor(state, "system_powerdown")
        deadline = time.monotonic() + timeout
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(1)
        if pid_alive(state.pid):
            how = f"killed (no power-off within {timeout:.0f} s)"
            os.kill(state.pid, signal.SIGTERM)
            time.sleep(5)
            if pid_alive(state.pid):
                os.kill(state.pid, signal.SIGKILL)
    shutil.rmtree(state_dir, ignore_errors=True)
    say(f"[vm] {state.name} {how}; overlay, seed and state removed")
