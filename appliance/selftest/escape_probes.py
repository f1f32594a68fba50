"""Escape probes: run inside an instance as its root, they try what root on the appliance
could do (mount, load a module, write the host's /proc/sys and /sys, read a host block
device), then the appliance checks the instance's files and init from outside. Each probe
fails whenever root in the instance is root on the appliance."""

import os
import subprocess

from appliance.selftest.guest import as_instance_root, emit, sh, ssh_argv

# Escape probes, run inside an instance as its root (sh -s). Each prints one line
# "name|pass|detail" or "name|fail|detail". Each tries the attack, and where the
# container's own mounts stand in the way (read-only /proc/sys and /sys, the devices cgroup)
# first tries to get them out of the way as a root with real privileges could, so that a
# probe fails whenever root in the instance is root on the appliance.
ESCAPE_PROBES = r"""
say() { echo "$1|$2|$(echo "$3" | tr '\n|' '  ' | cut -c1-200)"; }
map=$(tr -s ' ' < /proc/self/uid_map | sed 's/^ //' | head -n1)
case "$map" in "0 0 4294967295") say uid_map fail "identity: $map";; *) say uid_map pass "$map";; esac

marker=/var/tmp/escape-probe.$$
touch "$marker" && say marker info "$marker"

mkdir -p /run/escape-probe-mnt
if err=$(mount -t debugfs debugfs /run/escape-probe-mnt 2>&1); then
    umount /run/escape-probe-mnt; say mount fail "mounted debugfs"
else say mount pass "$err"; fi

case "$(uname -m)" in x86_64) nr=313;; aarch64) nr=273;; *) nr=;; esac
if [ -n "$nr" ]; then
    # finit_module(2) on /dev/null: EPERM without CAP_SYS_MODULE, another error with it;
    # ENOSYS on a kernel without module loading, then the capability itself decides.
    out=$(perl -e 'open(my $f, "<", "/dev/null") or die; my $p = ""; my $r = syscall('"$nr"', fileno($f), $p, 0);
                   print(($r == -1 && $!{EPERM}) ? "pass|$!" : $!{ENOSYS} ? "nosys|" : "fail|finit_module: $r $!")')
    if [ "${out%%|*}" = nosys ]; then
        eff=$(awk '/^CapEff/ {print $2}' /proc/self/status)
        if [ "$map" != "0 0 4294967295" ] || [ $(( 0x$eff >> 16 & 1 )) = 0 ]; then
            say module pass "kernel without module loading; no CAP_SYS_MODULE towards it (CapEff $eff, uid_map $map)"
        else say module fail "CAP_SYS_MODULE held in the initial namespace (kernel without module loading)"; fi
    else say module "${out%%|*}" "${out#*|}"; fi
else say module fail "no syscall number for $(uname -m)"; fi

# Write back the value a host-wide sysctl already has: harmless if it gets through.
f=/proc/sys/vm/swappiness; v=$(cat $f)
if (echo "$v" > $f) 2>/dev/null; then say proc_sys fail "wrote $f"
elif mount -o remount,bind,rw /proc/sys 2>/dev/null && (echo "$v" > $f) 2>/dev/null; then
    # A bind remount: only this mount's flags, not those of the instance's whole /proc.
    mount -o remount,bind,ro /proc/sys; say proc_sys fail "remounted /proc/sys read-write and wrote $f"
else say proc_sys pass "$f: $( (echo "$v" > $f) 2>&1)"; fi

target=
for f in /sys/kernel/mm/ksm/sleep_millisecs /sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs; do
    [ -f $f ] && target=$f && break
done
if [ -z "$target" ]; then say sys fail "no sysfs attribute to try"
else
    v=$(cat $target); rel=${target#/sys/}
    if (echo "$v" > $target) 2>/dev/null; then say sys fail "wrote $target"
    elif mkdir -p /run/escape-probe-sys && mount -t sysfs sysfs /run/escape-probe-sys 2>/dev/null \
            && (echo "$v" > /run/escape-probe-sys/$rel) 2>/dev/null; then
        umount /run/escape-probe-sys; say sys fail "wrote $rel through a new sysfs mount"
    else umount /run/escape-probe-sys 2>/dev/null; say sys pass "$target: $( (echo "$v" > $target) 2>&1)"; fi
fi

# The host's block device under the instance's root filesystem: a node made with mknod, or
# failing that the one in a devtmpfs (the kernel's own, shared with the host), and if the
# devices cgroup refuses it, after allowing it there.
dev=$(awk '$5 == "/" {print $3; exit}' /proc/self/mountinfo)
name=$(sed -n 's/^DEVNAME=//p' /sys/dev/block/$dev/uevent 2>/dev/null)
mkdir -p /run/escape-probe-devtmpfs
node=/run/escape-probe-dev
rm -f $node
if err=$(mknod $node b ${dev%:*} ${dev#*:} 2>&1); then how="mknod"
elif [ -n "$name" ] && mount -t devtmpfs devtmpfs /run/escape-probe-devtmpfs 2>/dev/null; then
    node=/run/escape-probe-devtmpfs/$name; how="a devtmpfs mount"
else node=; fi
read_dev() { dd if=$node of=/dev/null bs=512 count=1 2>&1 >/dev/null | head -n1; }
if [ -z "$node" ]; then
    say device pass "mknod b $dev: $err; devtmpfs: $(mount -t devtmpfs devtmpfs /run/escape-probe-devtmpfs 2>&1)"
elif dd if=$node of=/dev/null bs=512 count=1 2>/dev/null; then say device fail "read block device $dev through $how"
elif cg=/sys/fs/cgroup/devices$(sed -n 's/^[0-9]*:devices://p' /proc/self/cgroup) \
        && echo "b $dev r" > $cg/devices.allow 2>/dev/null && dd if=$node of=/dev/null bs=512 count=1 2>/dev/null; then
    say device fail "read block device $dev through $how after allowing it in the devices cgroup"
else say device pass "$dev through $how: $(read_dev)"; fi
rm -f /run/escape-probe-dev; umount /run/escape-probe-devtmpfs 2>/dev/null
"""


def run_escape_probes(namespace, ip, instance_name, emit_result=None):
    """Run ESCAPE_PROBES in the instance as its root, then check from the appliance what the
    marker file and the instance's init look like here. Emits one check per probe; returns
    {probe: (passed, detail)}.

    From the appliance the instance's root filesystem is seen through its init process
    (/proc/PID/root): Nova unmounts it from its own namespace once the container runs.
    """
    emit_result = emit_result or (lambda name, ok, detail: emit(f"escape probe: {name}", ok, 0, detail))
    results, marker = guest_side_probes(namespace, ip)
    init_pid = instance_init_pid(instance_name)
    results.update(host_side_probes(init_pid, marker))
    for name, (ok, detail) in results.items():
        emit_result(name, ok, detail)
    return results


def guest_side_probes(namespace, ip, via=None):
    """ESCAPE_PROBES in the instance as its root, over SSH from ``namespace`` (``via``: through
    that instance, guest.ssh_cmd's): ({probe: (passed, detail)}, the marker file the instance
    made or None). The host side (host_side_probes) runs where the instance runs: on a
    compute node, there."""
    results = {}
    done = subprocess.run(
        ssh_argv(namespace, ip, as_instance_root("sh -s"), via=via), input=ESCAPE_PROBES, capture_output=True,
        text=True, timeout=60)
    marker = None
    for line in done.stdout.splitlines():
        name, _, rest = line.partition("|")
        verdict, _, detail = rest.partition("|")
        if verdict == "info":
            marker = detail.strip()
        elif verdict in ("pass", "fail"):
            results[name] = (verdict == "pass", detail.strip())
    if not results:
        results["probes ran"] = (False, f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return results, marker


def instance_init_pid(instance_name):
    """The instance's init, a child of its libvirt_lxc controller (pid file of libvirt)."""
    controller = open(f"/run/libvirt/lxc/{instance_name}.pid").read().strip()
    children = sh(["ps", "--ppid", controller, "-o", "pid="]).stdout.split()
    if not children:
        raise AssertionError(f"{instance_name}: no init under controller {controller}")
    return int(children[0])


def proc_status(pid):
    return dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)


def init_uid(pid):
    return int(proc_status(pid)["Uid"].split()[1])


def host_side_probes(init_pid, marker):
    results = {}
    if marker:
        try:
            owner = os.lstat(f"/proc/{init_pid}/root{marker}").st_uid
            results["file owner on the appliance"] = (owner != 0 and owner == init_uid(init_pid),
                                                      f"{marker} is uid {owner} here")
        except OSError as exc:
            results["file owner on the appliance"] = (False, f"{marker}: {exc}")
        subprocess.run(["rm", "-f", f"/proc/{init_pid}/root{marker}"])
    else:
        results["file owner on the appliance"] = (False, "the instance made no marker file")
    status = proc_status(init_pid)
    euid = int(status["Uid"].split()[1])
    own_ns = os.readlink(f"/proc/{init_pid}/ns/user")
    initial = os.readlink("/proc/1/ns/user")
    # Capabilities count in the holder's own user namespace and those below it: a process in a
    # child namespace whose uid here is not 0 holds none in the initial one.
    results["no capability in the initial user namespace"] = (
        own_ns != initial and euid != 0,
        f"init is uid {euid} here, user namespace {own_ns} (appliance: {initial}), CapEff {status['CapEff'].strip()}")
    return results
