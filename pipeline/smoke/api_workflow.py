"""The reference workflow through the OpenStack APIs, run ON the appliance.

`invoke smoke` sends this file's source over the target connection and runs it with the
appliance's python3, so it needs only what the appliance has (openstacksdk and the
installed pipeline package). It prints one JSON line per check.
"""

import json
import os
import subprocess
import sys
import time

INSTANCE = "lxc_instance"
# The image's login user. The escape probes need the instance's root: through `sudo -n`
# when this is not root.
LOGIN_USER = "root"
PRIVATE_KEY = "/etc/appliance/lxckey"


def emit(name, passed, seconds, detail=""):
    print(json.dumps({"name": name, "passed": passed, "seconds": round(seconds, 2), "detail": detail}), flush=True)


def check(name, func):
    start = time.monotonic()
    try:
        detail = func() or ""
        emit(name, True, time.monotonic() - start, detail)
        return True
    except Exception as exc:
        emit(name, False, time.monotonic() - start, (str(exc) or type(exc).__name__).splitlines()[0][:400])
        return False


def wait(what, probe, timeout, interval=1.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout} s")


def sh(cmd, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def ssh_argv(namespace, ip, remote, user=LOGIN_USER):
    """ssh from the DHCP namespace to an instance as its login user, running ``remote``."""
    return ["ip", "netns", "exec", namespace, "ssh", "-i", PRIVATE_KEY, "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", f"{user}@{ip}", remote]


def as_instance_root(command):
    return command if LOGIN_USER == "root" else f"sudo -n {command}"


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
    results = {}
    done = subprocess.run(
        ssh_argv(namespace, ip, as_instance_root("sh -s")), input=ESCAPE_PROBES, capture_output=True, text=True,
        timeout=60)
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
    init_pid = instance_init_pid(instance_name)
    results.update(host_side_probes(init_pid, marker))
    for name, (ok, detail) in results.items():
        emit_result(name, ok, detail)
    return results


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


def main():
    import openstack

    from pipeline.agent.context import AgentContext, Paths

    site = AgentContext.load(Paths()).site
    state = {}

    def connect(cloud):
        # A bounded wait per request, and retries when nova-api drops a connection without
        # answering (seen about once in four runs): a hung request must fail, not hang the run.
        conn = openstack.connect(cloud=cloud, api_timeout=120, connect_retries=3)
        conn.authorize()
        return conn

    def tokens():
        state["admin"] = connect("admin")
        state["lxc"] = connect("lxc")

    if not check("token for admin and lxc", tokens):
        return
    admin, lxc = state["admin"], state["lxc"]

    def catalog():
        have = {s.type for s in admin.identity.services()}
        missing = {"identity", "image", "compute", "placement", "network"} - have
        assert not missing, f"missing from the catalog: {sorted(missing)}"

    def compute_up():
        up = {s.binary for s in admin.compute.services() if s.state == "up" and s.status == "enabled"}
        missing = {"nova-conductor", "nova-scheduler", "nova-compute"} - up
        assert not missing, f"not up: {sorted(missing)}"

    def agents_up():
        alive = {a.binary for a in admin.network.agents() if a.is_alive and a.is_admin_state_up}
        wanted = {"neutron-linuxbridge-agent", "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent"}
        assert not wanted - alive, f"not alive: {sorted(wanted - alive)}"

    def image_active():
        image = admin.image.find_image(site.image_name)
        assert image is not None, f"no image {site.image_name}"
        assert image.status == "active", f"image is {image.status}"

    check("catalog has every service", catalog)
    check("compute services up", compute_up)
    check("network agents alive", agents_up)
    check("LXC image active", image_active)

    def create():
        for old in lxc.compute.servers(name=INSTANCE):
            lxc.compute.delete_server(old)
            lxc.compute.wait_for_delete(old, wait=120)
        network = lxc.network.find_network(site.network.name)
        request = dict(
            name=INSTANCE, flavor_id=lxc.compute.find_flavor(site.flavors[0].name).id,
            image_id=lxc.image.find_image(site.image_name).id, networks=[{"uuid": network.id}],
            security_groups=[{"name": "default"}], key_name=site.keypair_name)
        try:
            server = lxc.compute.create_server(**request)
        except Exception:
            # The request may or may not have reached Nova: use what it made, else ask again.
            made = list(lxc.compute.servers(name=INSTANCE))
            server = made[0] if made else lxc.compute.create_server(**request)
        state["created"] = time.monotonic()
        server = lxc.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=300)
        state["server"] = server
        state["network"] = network
        return f"ACTIVE {time.monotonic() - state['created']:.1f} s after create"

    if not check("server create -> ACTIVE", create):
        return
    server, network = state["server"], state["network"]

    def address():
        ips = [a["addr"] for a in server.addresses.get(network.name, []) if a.get("version") == 4]
        assert ips, f"no IPv4 address on {network.name}: {server.addresses}"
        state["ip"] = ips[0]
        return ips[0]

    def dhcp_namespace():
        return f"qdhcp-{network.id}"

    def ping():
        ns = dhcp_namespace()
        wait("ping reply", lambda: sh(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", state["ip"]]).returncode == 0,
             timeout=90)
        return f"from {ns}, {time.monotonic() - state['created']:.1f} s after create"

    def ssh():
        cmd = ssh_argv(dhcp_namespace(), state["ip"], "cat /proc/1/comm; hostname")
        result = wait("SSH login", lambda: (r := sh(cmd, timeout=30)).returncode == 0 and r, timeout=120, interval=2)
        return f"{result.stdout.split()} {time.monotonic() - state['created']:.1f} s after create"

    def virsh():
        instance_name = admin.compute.get_server(server.id).instance_name  # an admin-only attribute
        out = sh(["virsh", "--connect", "lxc:///", "list", "--all"]).stdout
        assert instance_name in out and "running" in out, f"{instance_name} not running in: {out.strip()}"
        return instance_name

    check("instance has an address on the tenant network", address)
    if "ip" in state:
        check("ping from the DHCP namespace", ping)
        if sh(["test", "-f", PRIVATE_KEY]).returncode == 0:
            if check("SSH with the keypair's key", ssh):
                instance_name = admin.compute.get_server(server.id).instance_name
                run_escape_probes(dhcp_namespace(), state["ip"], instance_name)
        else:
            emit("SSH with the keypair's key", False, 0, "the keypair is the operator's; its private key is not on the appliance")
    check("libvirt lists the LXC domain", virsh)

    def delete():
        start = time.monotonic()
        lxc.compute.delete_server(server)
        lxc.compute.wait_for_delete(server, interval=1, wait=180)
        leftover = [line for line in sh(["losetup", "-l", "-n"]).stdout.splitlines() if server.id in line]
        assert not leftover, f"loop device still attached: {leftover}"
        return f"gone in {time.monotonic() - start:.1f} s, loop device released"

    check("delete -> gone", delete)


if __name__ == "__main__":
    main()
    sys.exit(0)
