"""The full path: the qcow2 under qemu (TCG here), to check bootloader, kernel and unit
ordering. No network device (-nic none) and a throwaway snapshot, so the artifact stays
clean and nothing leaves the VM."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from ..errors import ApplianceError
from .host import ensure_commands

# "<host> login: " at the start of a line; a kernel message may follow on the same line.
LOGIN_PROMPT = re.compile(rb"^(?!Last )[\w.-]+ login: ", re.M)
# systemd shortens long unit names on the console ("appliance-firstbo…enders /etc, ..."):
# match the start of the name.
FIRSTBOOT_STARTED = re.compile(rb"Starting \S*appliance-firstbo|\[firstboot\]")


def accelerator() -> str:
    """KVM where it works; these hosts have /dev/kvm but nested KVM stalls, so TCG is
    the default and APPLIANCE_QEMU_ACCEL=kvm opts in."""
    import os

    return os.environ.get("APPLIANCE_QEMU_ACCEL", "tcg,thread=multi")


def boot_vm(image: Path, console_log: Path, *, memory_mb: int = 4096, timeout: float = 600, say=print) -> dict:
    """Boot to the login prompt, note whether the first-boot unit started, power off."""
    ensure_commands({"qemu-system-x86_64": "qemu-system-x86"})
    if not image.is_file():
        raise ApplianceError(f"{image} does not exist; run `./inv build` first")
    console_log.parent.mkdir(parents=True, exist_ok=True)
    console_log.write_bytes(b"")
    cmd = ["qemu-system-x86_64", "-accel", accelerator(), "-smp", "2", "-m", str(memory_mb),
           "-display", "none", "-monitor", "none", "-nic", "none", "-snapshot",
           "-drive", f"file={image},format=qcow2,if=virtio", "-serial", f"file:{console_log}"]
    say(f"[vm] booting {image.name} under qemu ({accelerator()}); console: {console_log}")
    start = time.monotonic()
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            console = console_log.read_bytes()
            if LOGIN_PROMPT.search(console):
                seconds = round(time.monotonic() - start, 1)
                result = {"login_prompt_s": seconds, "firstboot_started": bool(FIRSTBOOT_STARTED.search(console))}
                say(f"[vm] login prompt after {seconds} s; first-boot unit started: {result['firstboot_started']}")
                return result
            if process.poll() is not None:
                raise ApplianceError(f"qemu exited ({process.returncode}): {process.stderr.read().decode()[-400:]}")
            if time.monotonic() - start > timeout:
                raise ApplianceError(f"no login prompt within {timeout:.0f} s (console: {console_log})")
            time.sleep(1)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
