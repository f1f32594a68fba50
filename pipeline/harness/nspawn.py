"""Booting the built appliance locally with systemd-nspawn, isolated and disposable.

The raw image's root partition is attached read-only and covered by an overlay, so the
artifact stays clean. The container gets its own network namespace with a management
interface whose only way out is the harness's own uplink namespace (uplink.py).
Adjustments that only a container needs are written into the overlay, never into the
image a VM would boot.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from appliance.errors import ApplianceError
from pipeline.imagebuild.cleanup import mount_sources_under

from . import container_fixups, uplink
from .host import ensure_commands

MANAGEMENT_CIDR = "10.254.0.10/24"
MANAGEMENT_IP = MANAGEMENT_CIDR.split("/")[0]
# A second link for Geneve between the containers of a two-node harness (netbackend/tunnel.py:
# on the userspace datapath the endpoint moves onto an Open vSwitch bridge, which must not
# be the management link). Inside 10.254.0.0/24, more specific than the management route.
OVERLAY_CIDR = "10.254.0.200/26"


@dataclass
class BootState:
    name: str
    image: str
    state_dir: str
    netns: str
    loop_device: str = ""
    nspawn_pid: int = 0
    started_at: float = 0.0
    responder_pid: int = 0  # the internet stand-in in the uplink namespace
    lan: bool = False  # a second interface into the harness's LAN namespace
    management_cidr: str = MANAGEMENT_CIDR
    # A node: the name of the appliance whose management segment it shares (uplink.join_segment).
    segment: str = ""
    overlay_cidr: str = ""  # the overlay link's address; "" without one

    @property
    def overlay_ip(self) -> str:
        return self.overlay_cidr.split("/")[0]

    @property
    def management_ip(self) -> str:
        return self.management_cidr.split("/")[0]

    @property
    def lower(self) -> Path:
        return Path(self.state_dir) / "lower"

    @property
    def merged(self) -> Path:
        return Path(self.state_dir) / "root"

    @property
    def console_log(self) -> Path:
        return Path(self.state_dir) / "console.log"

    @property
    def file(self) -> Path:
        return Path(self.state_dir) / "state.json"

    def save(self) -> None:
        self.file.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, state_dir: Path) -> "BootState | None":
        try:
            return cls(**json.loads((state_dir / "state.json").read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ApplianceError(f"{' '.join(cmd)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def root_partition(image: Path) -> tuple[int, int]:
    """(offset, size) in bytes of the largest partition: the root filesystem."""
    table = json.loads(_run(["sfdisk", "--json", str(image)]).stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    largest = max(table["partitions"], key=lambda p: p["size"])
    return largest["start"] * sector, largest["size"] * sector


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie counts as gone: systemd-nspawn started by an earlier
    `invoke` process is reaped by whatever adopted it, which may never wait for it (seen:
    a power-off that had finished looked like a hang of 240 s)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _join_own_cgroups(name: str) -> None:
    """Runs in the child before exec: give nspawn cgroups of its own in every v1
    hierarchy (the host's PID 1 is not systemd, so nobody else makes them)."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for ctrl in controllers.split(","):
            own[ctrl.replace("name=", "")] = path
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if hierarchy.name == "unified" or not (hierarchy / "cgroup.procs").exists():
            continue
        current = own.get(hierarchy.name, "/")
        target = hierarchy / current.lstrip("/") / f"appliance-{name}"
        try:
            target.mkdir(exist_ok=True)
            (target / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass  # a hierarchy we may not write to; nspawn copes with what it gets


def attach_netns(state: BootState, timeout: float = 30) -> None:
    """Name the container's network namespace, so the host can reach it with
    `ip netns exec` while the container stays without any uplink."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            leader = leader_pid(state)
            break
        except ApplianceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    _run(["ip", "netns", "attach", state.netns, str(leader)])


def _start_attached(state: BootState) -> None:
    """Start systemd-nspawn on the prepared root and attach its network namespace to the
    harness's uplink (and LAN when ``state.lan``); the state is saved as each part exists,
    so a failed start is stopped and released by ``stop``."""
    state.nspawn_pid = _start_nspawn(state)
    state.save()
    attach_netns(state)
    if state.segment:
        uplink.join_segment(state.netns, state.name, state.segment, overlay=bool(state.overlay_cidr))
    else:
        state.responder_pid = uplink.attach(state.netns, state.name, lan=state.lan, overlay=bool(state.overlay_cidr))
    state.started_at = time.time()
    state.save()


MAX_NODES = 50


def _check_index(index: int, low: int) -> None:
    if type(index) is not int or not low <= index <= MAX_NODES:
        raise ApplianceError(f"node number {index!r}: expected {max(low, 1)} to {MAX_NODES}")


def node_cidr(index: int) -> str:
    """The management address of node ``index`` (1, 2, ...) beside the controller's
    MANAGEMENT_CIDR on the same segment."""
    _check_index(index, 1)
    network, _, prefix = MANAGEMENT_CIDR.partition("/")
    host = int(network.rsplit(".", 1)[1]) + index
    return f"{network.rsplit('.', 1)[0]}.{host}/{prefix}"


def overlay_cidr(index: int) -> str:
    """The Geneve endpoint of the controller (0) or of node ``index`` on the harness's
    overlay link (OVERLAY_CIDR's /26 inside the management /24, its own L2 segment)."""
    _check_index(index, 0)
    network, _, prefix = OVERLAY_CIDR.partition("/")
    host = int(network.rsplit(".", 1)[1]) + index
    return f"{network.rsplit('.', 1)[0]}.{host}/{prefix}"


def boot(image: Path, name: str, state_dir: Path, *, site_yaml: str | None, authorized_key: str | None,
         say=print, prepare=None, lan: bool = False, management_cidr: str = MANAGEMENT_CIDR,
         segment: str = "", overlay_cidr: str = "") -> BootState:
    """Boot ``image``; ``prepare(root)``, when given, may change the overlay before start.
    ``segment``: boot a node on the management segment of the running appliance of that
    name, at ``management_cidr`` (node_cidr), with no uplink or LAN of its own.
    ``overlay_cidr``: a second link for Geneve at that address (overlay_cidr), on the
    controller's overlay segment."""
    if segment and lan:
        raise ApplianceError("a node shares its controller's management segment and has no LAN of its own")
    ensure_commands({"systemd-nspawn": "systemd-container", "sfdisk": "fdisk", "losetup": "mount",
                     "nsenter": "util-linux", "ip": "iproute2", "ethtool": "ethtool"})
    if not image.is_file():
        raise ApplianceError(f"{image} does not exist; run `./inv build` first")
    existing = BootState.load(state_dir)
    if existing and pid_alive(existing.nspawn_pid):
        raise ApplianceError(f"appliance {name} is already running (pid {existing.nspawn_pid}); `./inv boot --stop` first")
    if existing:
        stop(state_dir, say=say)
    state_dir.mkdir(parents=True, exist_ok=True)
    state = BootState(name=name, image=str(image), state_dir=str(state_dir), netns=f"appliance-{name}", lan=lan,
                      management_cidr=management_cidr, segment=segment, overlay_cidr=overlay_cidr)
    for sub in ("lower", "upper", "work", "root"):
        (state_dir / sub).mkdir(exist_ok=True)
    state.save()
    try:
        offset, size = root_partition(image)
        state.loop_device = _run(["losetup", "--find", "--show", "--read-only", "--offset", str(offset),
                                  "--sizelimit", str(size), str(image)]).stdout.strip()
        state.save()
        _run(["mount", "-o", "ro,noload", state.loop_device, str(state.lower)])
        _run(["mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir={state.lower},upperdir={state_dir / 'upper'},workdir={state_dir / 'work'}", str(state.merged)])
        # `ip netns exec` (the smoke, the uplink's stand-in, other appliances' harnesses) runs
        # in a copy of the host's mount namespace, with its mounts made slaves of ours; they
        # follow our unmount at stop only if ours are shared, else their copies keep the
        # image's loop device busy until they exit.
        for mountpoint in (state.lower, state.merged):
            _run(["mount", "--make-shared", str(mountpoint)])
        container_fixups.apply(state.merged, site_yaml=site_yaml, authorized_key=authorized_key,
                               management_cidr=state.management_cidr, uplink_gateway=uplink.UPLINK_GATEWAY,
                               lan_interface=uplink.LAN_INTERFACE if lan else "",
                               lan_peer=uplink.LAN_PEER if lan else "", overlay_cidr=overlay_cidr, name=state.name)
        if prepare is not None:
            prepare(state.merged)
        _start_attached(state)
    except BaseException:
        stop(state_dir, say=say)
        raise
    say(f"[boot] {name} booting (nspawn pid {state.nspawn_pid}); console: {state.console_log}")
    return state


def _start_nspawn(state: BootState) -> int:
    # --console=read-only: nspawn copies the container's /dev/console to console.log as it
    # comes. With "passive" nobody reads the console's pseudo-TTY; once its buffer is full a
    # write to it blocks, and the container's systemd writes its status there (a unit slow
    # to stop prints a line every half second), so PID 1 stopped mid-power-off.
    cmd = ["systemd-nspawn", "--boot", "--quiet", "-D", str(state.merged), f"--machine={state.name}",
           "--private-network", "--capability=all", "--register=no",
           "--keep-unit", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
           "--bind=/dev/fuse", "--bind=/dev/net/tun", "--console=read-only"]
    env = {**os.environ, "SYSTEMD_SECCOMP": "0"}
    console = open(state.console_log, "ab")
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True, preexec_fn=lambda: _join_own_cgroups(state.name))
    console.close()
    time.sleep(1)
    if process.poll() is not None:
        tail = state.console_log.read_text(errors="replace")[-600:]
        raise ApplianceError(f"systemd-nspawn exited at once ({process.returncode}): {tail}")
    return process.pid


def leader_pid(state: BootState) -> int:
    """The container's init: nspawn's child (not nspawn, and not a wrapper shell)."""
    children = Path(f"/proc/{state.nspawn_pid}/task/{state.nspawn_pid}/children")
    try:
        pids = children.read_text().split()
    except FileNotFoundError:
        raise ApplianceError(f"appliance {state.name} is not running") from None
    if not pids:
        raise ApplianceError(f"appliance {state.name} has no init process yet")
    return int(pids[0])


def exec_in(state: BootState, cmd: list[str], *, timeout: float = 600, check: bool = False,
            stdin: str | None = None, text: bool = True) -> subprocess.CompletedProcess:
    full = ["nsenter", "--target", str(leader_pid(state)), "--mount", "--uts", "--ipc", "--net", "--pid",
            "--cgroup", "--", *cmd]
    result = subprocess.run(full, capture_output=True, text=text, timeout=timeout, input=stdin)
    if check and result.returncode != 0:
        raise ApplianceError(f"in appliance: {' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()[-400:]}")
    return result


# How long a power-off may take before the harness gives up on it: systemd's own stop
# timeouts are 90 s per unit (DefaultTimeoutStopSec), libvirt-guests waits for the
# instances' own shutdown (SHUTDOWN_TIMEOUT in /etc/default/libvirt-guests), and a loaded
# 2-core host is slow; a clean power-off of the appliance takes ~10-30 s here.
POWER_OFF_TIMEOUT = 240


def power_off(state: BootState, *, timeout: float = POWER_OFF_TIMEOUT) -> float | None:
    """Ask the container to power off as an operator would (nspawn turns SIGTERM into a
    poweroff request to the container's systemd) and wait until systemd-nspawn exits.
    Returns the seconds it took, or None when it had not exited within ``timeout``."""
    if not pid_alive(state.nspawn_pid):
        _reap(state.nspawn_pid)
        return 0.0
    started = time.monotonic()
    os.kill(state.nspawn_pid, signal.SIGTERM)
    while pid_alive(state.nspawn_pid) and time.monotonic() - started < timeout:
        _reap(state.nspawn_pid)
        time.sleep(0.5)
    _reap(state.nspawn_pid)
    return None if pid_alive(state.nspawn_pid) else time.monotonic() - started


def restart(state_dir: Path, *, say=print, power_off_timeout: float = POWER_OFF_TIMEOUT,
            while_off: Callable[[], None] | None = None) -> tuple[BootState, float]:
    """The harness's reboot: power the appliance off cleanly and boot it again on the same
    overlay (its disk), as a machine restarts. Returns the new state and the seconds the
    power-off took; raises ApplianceError (leaving the appliance off, its disk kept) when
    the power-off does not finish within ``power_off_timeout``. ``while_off``: called while
    the machine is off (a test watching the rest of a cloud notice it); what it raises
    leaves the machine off, for ``stop`` to release.

    Loop devices Nova attached for instance disks stay attached across the restart, as a
    disk stays in a machine: Nova's resume of an instance first tears down the device it
    recorded (system_metadata rootfs_device_name) and then attaches a new one, so the old
    one must still be the instance's disk, not a number the host handed to someone else."""
    state = BootState.load(state_dir)
    if state is None:
        raise ApplianceError(f"no appliance is booted in {state_dir}; `./inv boot` first")
    took = power_off(state, timeout=power_off_timeout)
    if took is None:
        raise ApplianceError(f"{state.name} did not power off within {power_off_timeout:.0f} s "
                             f"(console: {state.console_log}); `./inv boot --stop` kills and releases it")
    say(f"[boot] {state.name} powered off in {took:.1f} s; booting it again on the same disk")
    uplink.detach(state.name, state.responder_pid)
    subprocess.run(["ip", "netns", "del", state.netns], capture_output=True)
    if while_off is not None:
        while_off()
    try:
        _start_attached(state)
    except BaseException:
        stop(state_dir, say=say)
        raise
    say(f"[boot] {state.name} booting again (nspawn pid {state.nspawn_pid}); console: {state.console_log}")
    return state, took


def stop(state_dir: Path, *, say=print) -> None:
    """Power the container off and release every loop device, mount and namespace; raise
    ApplianceError naming what could not be released."""
    state = BootState.load(state_dir)
    if state is None:
        # A run killed between mounting and writing its state file leaves mounts nobody
        # would otherwise release; the next boot of this name would stack on them.
        release_mounts_under(state_dir, say=say)
        return
    if power_off(state) is None:
        os.killpg(state.nspawn_pid, signal.SIGKILL)
        time.sleep(1)
        _reap(state.nspawn_pid)
        say(f"[boot] {state.name} did not power off within {POWER_OFF_TIMEOUT} s; killed")
    uplink.detach(state.name, state.responder_pid)  # before the unmount: see boot()
    release_instance_loops(state)
    for mountpoint in (state.merged, state.lower):
        if os.path.ismount(mountpoint):
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
    if state.loop_device:
        subprocess.run(["losetup", "-d", state.loop_device], capture_output=True)
    release_mounts_under(state_dir, say=say)
    # Detaching is asynchronous while the last user goes away: wait until it is done, so
    # that "stopped" means the host has its loop devices back.
    leftovers = _wait_loops_released(state, timeout=30)
    subprocess.run(["ip", "netns", "del", state.netns], capture_output=True)
    shutil.rmtree(state_dir / "upper", ignore_errors=True)
    shutil.rmtree(state_dir / "work", ignore_errors=True)
    state.file.unlink(missing_ok=True)
    if leftovers:
        raise ApplianceError(f"{state.name} stopped, but loop devices are still attached: {', '.join(leftovers)} "
                             "(a process in another mount namespace holds the image; see `losetup -l`)")
    say(f"[boot] {state.name} stopped; loop devices, mounts and namespace released")


def release_mounts_under(state_dir: Path, *, say=print) -> None:
    """Unmount whatever is still mounted under ``state_dir`` and detach the loop devices
    those mounts were on."""
    for source, mountpoint in mount_sources_under(state_dir):
        if subprocess.run(["umount", mountpoint], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        if source.startswith("/dev/loop"):
            subprocess.run(["losetup", "-d", source], capture_output=True)
        say(f"[boot] released {mountpoint}, which was still mounted")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _our_loops(state: BootState) -> list[str]:
    """Loop devices of this appliance: its image, and instance disks Nova attached."""
    listing = subprocess.run(["losetup", "--list", "--json"], capture_output=True, text=True).stdout
    # Nova names an instance's disk /var/lib/nova/instances/<uuid>/disk as the container sees
    # it; the instances of this appliance are the ones whose directories are in its overlay
    # (another appliance booted beside it has instance disks of the same path shape).
    instances = Path(state.state_dir) / "upper/var/lib/nova/instances"
    uuids = {d.name for d in instances.iterdir() if d.is_dir()} if instances.is_dir() else set()
    ours = []
    for dev in json.loads(listing or '{"loopdevices": []}').get("loopdevices", []):
        backing = dev.get("back-file") or ""
        parts = backing.split("/var/lib/nova/instances/", 1)
        instance = parts[1].split("/", 1)[0] if len(parts) == 2 else None
        if dev["name"] == state.loop_device or instance in uuids or backing.startswith(str(state.merged)):
            ours.append(dev["name"])
    return ours


def release_instance_loops(state: BootState) -> None:
    """Nova attaches instance disks to the host's loop devices; detach any it left."""
    for name in _our_loops(state):
        if name != state.loop_device:
            subprocess.run(["losetup", "-d", name], capture_output=True)


def _wait_loops_released(state: BootState, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := _our_loops(state)) and time.monotonic() < deadline:
        for name in left:
            subprocess.run(["losetup", "-d", name], capture_output=True)
        time.sleep(0.5)
    return left
