"""One interface to a locally booted appliance, whatever runs it: a container
(systemd-nspawn, ``ContainerTarget``) or a VM (qemu, ``VmTarget``).

Tasks and tests take a ``BootTarget`` from ``boot_target(kind, ...)`` and use the same verbs on
either: ``boot``, ``wait_for_first_boot``, ``run`` (a command as root on the appliance),
``copy_in``, ``restart`` (a reboot on the same disk), ``stop``, and what the smoke and a root
shell need (``smoke_prefix``, ``smoke_target``, ``shell_argv``). Errors: ApplianceError, one
line, for a target that is not running or cannot do what is asked.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError

KINDS = ("container", "vm")
# `invoke boot`'s flag for an option whose name is not the field's with dashes.
FLAGS = {"memory_mb": "--memory", "disk_gb": "--disk"}


def flag(option: str) -> str:
    return FLAGS.get(option, "--" + option.replace("_", "-"))


@dataclass
class BootTarget:
    """What every kind shares: the profile whose image it boots, where the built images are,
    and the harness's name for this appliance (None: the default, see local.boot_name)."""

    profile: str
    artifacts: Path
    name: str | None = None
    kind = "abstract"

    def boot(self, *, site: Path | None = None) -> None:
        raise NotImplementedError

    def wait_for_first_boot(self, *, say=print) -> dict:
        """Follow first boot to its end; the journal (firstboot.json) as a mapping."""
        raise NotImplementedError

    def run(self, argv: list[str], *, timeout: float = 600, stdin: str | None = None) -> subprocess.CompletedProcess:
        """``argv`` as root on the appliance; its exit code, stdout and stderr (text)."""
        raise NotImplementedError

    def copy_in(self, source: Path, dest: str, *, mode: int = 0o600) -> None:
        """Write the host file ``source`` to ``dest`` on the appliance (root-owned, ``mode``)."""
        quoted = shlex.quote(dest)
        result = self.run(["sh", "-c", f"umask 077 && cat > {quoted} && chmod {mode:o} {quoted}"],
                          stdin=source.read_text(encoding="utf-8"), timeout=120)
        if result.returncode != 0:
            raise ApplianceError(f"copying {source} to {self.kind} {dest} failed: {result.stderr.strip()[-300:]}")

    def restart(self, *, wait: bool = False, say=print) -> None:
        raise NotImplementedError

    def stop(self, *, say=print) -> None:
        raise NotImplementedError

    def smoke_prefix(self) -> list[str]:
        """What the smoke's command line runs under to reach the appliance (a namespace)."""
        return []

    def smoke_target(self) -> list[str]:
        """The smoke's --target/--identity (and other) options for this appliance."""
        raise NotImplementedError

    def shell_argv(self) -> list[str]:
        raise NotImplementedError


@dataclass
class ContainerTarget(BootTarget):
    """The image's root filesystem booted in systemd-nspawn behind the harness's own uplink
    namespace. ``from_tree``: this checkout's appliance package, overlays and profile over the
    image's; ``lan``: a second interface into a LAN namespace of the harness; ``node``: node
    number ``node`` of the running appliance ``controller`` (default: the profile's), on its
    management segment (its own state directory, namespace and address; local.boot);
    ``overlay``: a second link for Geneve (a node always has one), so a node can reach this
    appliance's chassis on the userspace datapath."""

    from_tree: bool = False
    lan: bool = False
    node: int = 0
    controller: str | None = None
    overlay: bool = False
    kind = "container"

    def __post_init__(self):
        from . import local

        if self.node and self.name is None:
            self.name = local.node_name(self.profile, self.node, self.controller)

    def _state(self):
        from . import local

        return local.running_state(self.profile, self.name)

    def boot(self, *, site: Path | None = None) -> None:
        from . import local, uplink

        site_yaml = uplink.lan_site() if self.lan and site is None else None
        local.boot(self.profile, self.artifacts, site=site, site_yaml=site_yaml, from_tree=self.from_tree,
                   lan=self.lan, name=self.name, node=self.node, controller=self.controller, overlay=self.overlay)

    def management_ip(self) -> str:
        return self._state().management_ip

    def wait_for_first_boot(self, *, say=print) -> dict:
        from . import local

        return local.wait_for_first_boot(self._state(), say=say)

    def run(self, argv: list[str], *, timeout: float = 600, stdin: str | None = None) -> subprocess.CompletedProcess:
        from . import nspawn

        return nspawn.exec_in(self._state(), argv, timeout=timeout, stdin=stdin)

    def restart(self, *, wait: bool = False, say=print) -> None:
        from . import local

        state, _ = local.restart(self.profile, name=self.name, say=say)
        if wait:
            local.wait_until_ready(state, say=say)

    def stop(self, *, say=print) -> None:
        from . import local

        local.stop(self.profile, name=self.name, say=say)

    def smoke_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self._state().netns]

    def smoke_target(self) -> list[str]:
        from . import local, uplink

        return ["--target", local.harness_target(), "--identity", str(local.harness_key(self.profile)),
                "--outbound-probe", uplink.INTERNET_PROBE]

    def shell_argv(self) -> list[str]:
        from . import nspawn

        return ["nsenter", "--target", str(nspawn.leader_pid(self._state())), "--mount", "--uts", "--ipc",
                "--net", "--pid", "--cgroup", "--", "/bin/bash", "-l"]


@dataclass
class VmTarget(BootTarget):
    """``appliance.qcow2`` under qemu (KVM when it works, else TCG) on a throwaway overlay,
    the site config on a NoCloud volume, SSH and the APIs forwarded to 127.0.0.1."""

    memory_mb: int = 4096
    cpus: int = 2
    firmware: str = "bios"
    port: int | None = None
    disk_gb: int = 20
    kind = "vm"

    def _state(self):
        from . import vm

        return vm.running_state(self.profile, self.name)

    def boot(self, *, site: Path | None = None) -> None:
        from . import vm

        vm.boot(self.profile, self.artifacts, site=site, memory_mb=self.memory_mb, cpus=self.cpus,
                firmware=self.firmware, port=self.port, name=self.name, disk_gb=self.disk_gb)

    def wait_for_first_boot(self, *, say=print) -> dict:
        from . import vm

        return vm.wait_for_first_boot(self._state(), say=say)

    def run(self, argv: list[str], *, timeout: float = 600, stdin: str | None = None) -> subprocess.CompletedProcess:
        from . import vm

        return vm.ssh(self._state(), shlex.join(argv), timeout=timeout, stdin=stdin)

    def restart(self, *, wait: bool = False, say=print) -> None:
        """``systemctl reboot`` inside, as an operator reboots a server; with ``wait``, until
        the appliance is ready again (vm.READY_AFTER_REBOOT)."""
        from . import vm

        state = self._state()
        if wait:
            vm.reboot(state, say=say)
        else:
            vm.ssh(state, "systemctl reboot", timeout=30)

    def stop(self, *, say=print) -> None:
        from . import vm

        vm.stop(self.profile, name=self.name, say=say)

    def smoke_target(self) -> list[str]:
        from . import local

        return ["--target", self._state().target, "--identity", str(local.harness_key(self.profile))]

    def shell_argv(self) -> list[str]:
        from . import local, vm

        state = self._state()
        return ["ssh", *vm.SSH_OPTIONS, "-i", str(local.harness_key(self.profile)), "-p", str(state.ssh_port),
                "-t", "root@127.0.0.1"]


def boot_target(kind: str, profile: str, artifacts: Path, *, name: str | None = None, **options) -> BootTarget:
    """The target of ``kind`` (KINDS); ``options`` are that kind's own (container: from_tree,
    lan, node, controller, overlay; vm: memory_mb, cpus, firmware, port, disk_gb). An option of the other kind is refused
    with one line naming it."""
    classes = {"container": ContainerTarget, "vm": VmTarget}
    if kind not in classes:
        raise ApplianceError(f"unknown boot target {kind!r} (expected one of {', '.join(KINDS)})")
    cls = classes[kind]
    own = {f for f in cls.__dataclass_fields__ if f not in BootTarget.__dataclass_fields__}
    foreign = sorted(k for k, v in options.items() if k not in own and v not in (None, False))
    if foreign:
        other = "vm" if kind == "container" else "container"
        how = "boot the VM with --vm" if other == "vm" else "leave out --vm"
        raise ApplianceError(f"{', '.join(flag(f) for f in foreign)}: only for the {other} harness ({how})")
    return cls(profile=profile, artifacts=artifacts, name=name,
               **{k: v for k, v in options.items() if k in own and v is not None})
