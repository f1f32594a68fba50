"""`invoke bench --vm`: the appliance as a VM (qemu; TCG on these hosts), each boot fresh.

Per boot: boot → cloud ready (qemu start to the end of first boot), idle PSS/RSS of the
appliance's processes and MemAvailable inside the VM, a burst of instances of the 128 MB
flavor (all ACTIVE, failures, MemAvailable while they all run, OOM kills), and reboot →
ready (``systemctl reboot`` inside until every compute service is up and the instances that
were ACTIVE are ACTIVE again).
"""

from __future__ import annotations

import time

from ..harness import vm
from ..harness.target import VmTarget
from .measured import measure

BENCH_NAME = "bench-vm"


def burst_wait_s(state: vm.VmState) -> float:
    """Seconds the burst probe waits for its instances to settle: 900, times the timeout
    scale the harness gave the VM (3600 under TCG)."""
    return 900.0 * (vm.timeout_scale(state.accel) or 1.0)


def meminfo_kib(state: vm.VmState) -> dict[str, int]:
    """/proc/meminfo inside the VM: field name -> kiB."""
    out = vm.ssh(state, "cat /proc/meminfo", timeout=120).stdout
    return {name: int(rest.split()[0]) for name, rest in (line.split(":", 1) for line in out.splitlines())}


def mem_available_mib(state: vm.VmState) -> float:
    return round(meminfo_kib(state)["MemAvailable"] / 1024, 1)


def swap_used_mib(state: vm.VmState) -> float:
    """Swap in use (the zram device of elements/appliance-zram), MiB of uncompressed pages."""
    fields = meminfo_kib(state)
    return round((fields["SwapTotal"] - fields["SwapFree"]) / 1024, 1)


def oom_kills(state: vm.VmState) -> int:
    out = vm.ssh(state, "journalctl -k -b --no-pager -o cat | grep -c -e 'Out of memory' -e oom-kill || true",
                 timeout=120).stdout.strip()
    return int(out or 0)


def one_vm_boot(bench, index: int, *, burst: int, settle_s: float, memory_mb: int, firmware: str) -> None:
    """One fresh VM through first boot, idle memory, a burst kept running, a reboot."""
    vm.stop(bench.profile, name=BENCH_NAME, say=lambda line: None)
    bench.say(f"[bench] VM boot {index}: booting a fresh VM ({memory_mb} MiB, {firmware})")
    state = vm.boot(bench.profile, bench.artifacts, name=BENCH_NAME, memory_mb=memory_mb, firmware=firmware,
                    say=lambda line: None)
    try:
        journal = vm.wait_for_first_boot(state, say=lambda line: bench.say(f"[bench] VM boot {index}: {line}"))
        ready = journal["completed_at"] - state.started_at
        bench.add("VM: boot → cloud ready", ready)
        bench.event(f"VM boot {index}: cloud ready {ready:.0f} s after qemu started ({state.accel})")
        time.sleep(settle_s)
        target = VmTarget(profile=bench.profile, artifacts=bench.artifacts, name=BENCH_NAME)
        idle = measure(target, "memory", timeout=3600)[0]
        bench.add("VM: idle memory, PSS summed", idle["pss_mib"], "MiB")
        bench.add("VM: idle memory, RSS summed", idle["rss_mib"], "MiB")
        bench.add("VM: MemAvailable, idle", mem_available_mib(state), "MiB")
        bench.dashboard_off(target, index, prefix="VM: ")
        if burst:
            # Ten spawns under TCG each copy and uid-shift a root file system: minutes, not seconds.
            wait = burst_wait_s(state)
            result = measure(target, "burst", str(burst), "--keep", "--wait", str(wait), timeout=wait + 1800)[0]
            bench.add(f"VM: {burst} instances (128 MB) → all ACTIVE", result["all_active_s"])
            bench.add(f"VM: {burst} instances, failed", result["failed"], "count")
            bench.add(f"VM: MemAvailable, {burst} instances", mem_available_mib(state), "MiB")
            bench.add(f"VM: swap used (zram), {burst} instances", swap_used_mib(state), "MiB")
            bench.event(f"VM boot {index}: {burst} instances: {result['active']} ACTIVE, {result['failed']} failed, "
                        f"{result['all_active_s']} s")
        bench.add("VM: OOM kills", oom_kills(state), "count")  # before the reboot: -b is this boot
        seconds = vm.reboot(state, say=lambda line: bench.say(f"[bench] VM boot {index}: {line}"))
        bench.add("VM: reboot → ready", seconds)
        bench.event(f"VM boot {index}: reboot → ready {seconds:.0f} s (the instances that were ACTIVE are again)")
    finally:
        vm.stop(bench.profile, name=BENCH_NAME, say=lambda line: None)
