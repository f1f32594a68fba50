"""`appliance measure`: measurements taken on the appliance (`invoke bench` asks for them over
SSH). One JSON object per line on stdout:

    appliance measure memory              the appliance's processes: summed RSS and PSS (MiB)
    appliance measure instances RUNS      RUNS x (create -> ACTIVE, -> SSH banner, -> ping, delete -> gone)
    appliance measure burst COUNT [--keep] [--wait S]
                                  COUNT instances in one request: all ACTIVE, failures, peak memory;
                                  waits S seconds (default 900) for all to settle
"""

import json
import os
import subprocess
import sys
import threading
import time

FLAVOR = "bench.128"  # the small flavor: 128 MB


def emit(kind, **values):
    print(json.dumps({"kind": kind, **values}), flush=True)


def _instance_process(pid):
    # LXC instances' processes are visible here but are not the appliance's own.
    try:
        with open(f"/proc/{pid}/cgroup") as handle:
            return "machine" in handle.read()
    except OSError:
        return True


def _kib(path, field):
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _name(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as handle:
            argv = [a for a in handle.read().split("\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    if "--ini" in argv:  # uwsgi: name it after the API it serves
        return os.path.basename(argv[argv.index("--ini") + 1]).replace("-uwsgi.ini", "")
    # setproctitle may have joined the whole command line into argv[0].
    words = " ".join(argv).split()
    head = os.path.basename(words[0])
    if head.startswith("python") and len(words) > 1:
        return os.path.basename(words[1])
    return head.rstrip(":")


def memory():
    """Summed RSS (what the issue's target counts) and PSS (shared pages counted once)."""
    rss = pss = count = 0
    by_name = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or _instance_process(entry):
            continue
        kib = _kib(f"/proc/{entry}/status", "VmRSS:")
        if not kib:
            continue  # kernel threads
        count += 1
        rss += kib
        pss += _kib(f"/proc/{entry}/smaps_rollup", "Pss:")
        name = _name(entry)
        total, n = by_name.get(name, (0, 0))
        by_name[name] = (total + kib, n + 1)
    top = sorted(by_name.items(), key=lambda item: -item[1][0])[:15]
    return {"rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1), "processes": count,
            "top": [[name, round(kib / 1024), n] for name, (kib, n) in top]}


def connect(cloud):
    from appliance.selftest.guest import connect as guest_connect

    # 600 s: a VM spawning ten instances under emulation answered Nova API calls after more
    # than 120 s.
    return guest_connect(cloud, timeout=600, authorize=True)


def site():
    from appliance.agent.context import AgentContext, Paths

    return AgentContext.load(Paths()).site


def tenant_namespace(network_id: str) -> str:
    from appliance.agent.context import AgentContext, Paths

    return AgentContext.load(Paths()).profile.network.namespace(network_id)


def _request(conn, site_config, name, flavor_id, **extra):
    network = conn.network.find_network(site_config.network.name)
    return network, dict(name=name, flavor_id=flavor_id, image_id=conn.image.find_image(site_config.image_name).id,
                         networks=[{"uuid": network.id}], key_name=site_config.keypair_name, **extra)


def _image_cached():
    base = "/var/lib/nova/instances/_base"
    return os.path.isdir(base) and bool(os.listdir(base))


def _ping(namespace, address, timeout=120):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        cmd = ["ip", "netns", "exec", namespace, "ping", "-c1", "-W1", address]
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return True
        time.sleep(0.2)
    return False


# Run in the DHCP namespace: connect to port 22 until sshd sends its banner ("SSH-2.0-...",
# RFC 4253 4.2); print time.monotonic() then (one clock for every process of this host).
BANNER_WAITER = """
import socket, sys, time
address, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with socket.create_connection((address, 22), timeout=1) as sock:
            sock.settimeout(2)
            if sock.recv(64).startswith(b"SSH-"):
                print(time.monotonic())
                break
    except OSError:
        pass
    time.sleep(0.1)
"""


def _banner_waiter(namespace, address, timeout=120):
    """A process that prints the monotonic time at which ``address`` sends an SSH banner,
    polled from ``namespace`` (None: this host itself); prints nothing after ``timeout``."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return subprocess.Popen([*prefix, sys.executable, "-c", BANNER_WAITER, address, str(timeout)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def instances(runs):
    config = site()
    conn = connect("lxc")
    flavor = conn.compute.find_flavor(config.flavors[0].name)
    for run in range(runs):
        name = f"bench-one-{run}"
        for old in conn.compute.servers(name=name):
            conn.compute.delete_server(old)
            conn.compute.wait_for_delete(old, wait=180)
        cached = _image_cached()
        network, request = _request(conn, config, name, flavor.id)
        start = time.monotonic()
        server = conn.compute.create_server(**request)
        server = conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=0.5, wait=600)
        active = time.monotonic() - start
        active_at = start + active
        address = next(a["addr"] for a in server.addresses[network.name] if a.get("version") == 4)
        namespace = tenant_namespace(network.id)
        banner = _banner_waiter(namespace, address)
        reachable = _ping(namespace, address)
        ping = time.monotonic() - start if reachable else None
        out, _ = banner.communicate(timeout=180)
        ssh_after_active = float(out) - active_at if out.strip() else None
        fip_ssh = _floating_ip_ssh(conn, config, server, start)
        start = time.monotonic()
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=0.5, wait=300)
        emit("instance", run=run, image_cached=cached, active_s=round(active, 2),
             ping_s=round(ping, 2) if ping is not None else None, delete_s=round(time.monotonic() - start, 2),
             ssh_after_active_s=round(ssh_after_active, 2) if ssh_after_active is not None else None,
             fip_ssh_s=round(fip_ssh, 2) if fip_ssh is not None else None)


def _floating_ip_ssh(conn, config, server, created, timeout=120):
    """Seconds from ``created`` until a floating IP attached to ``server`` answers with an SSH
    banner from this host (host-mode external network only; else None)."""
    if config.external.mode != "host":
        return None
    external = conn.network.find_network(config.external.name)
    port = next(iter(conn.network.ports(device_id=server.id)))
    fip = conn.network.create_ip(floating_network_id=external.id, port_id=port.id)
    try:
        out, _ = _banner_waiter(None, fip.floating_ip_address, timeout).communicate(timeout=timeout + 60)
        return float(out) - created if out.strip() else None
    finally:
        conn.network.delete_ip(fip)


class PeakMemory(threading.Thread):
    def __init__(self, interval=2.0):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = {"rss_mib": 0.0, "pss_mib": 0.0}
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            sample = memory()
            for key in self.peak:
                self.peak[key] = max(self.peak[key], sample[key])
            self.stopping.wait(self.interval)


def _bench_flavor(admin):
    flavor = admin.compute.find_flavor(FLAVOR)
    if flavor is None:
        flavor = admin.compute.create_flavor(name=FLAVOR, ram=128, vcpus=1, disk=1)
    return flavor


def burst(count, keep=False, wait=900.0):
    """``keep``: leave the instances running (the VM bench measures memory with them and
    reboots with them)."""
    config = site()
    admin, conn = connect("admin"), connect("lxc")
    flavor = _bench_flavor(admin)
    project = admin.identity.find_project("lxc", domain_id="default")
    # The project's quota (sized from the host at first boot: 4 per CPU here) is below the
    # burst; the bench appliance is throwaway. RAM only ever goes up, for small hosts.
    ram = max(admin.get_compute_quotas(project.id).ram, (count + 10) * flavor.ram)
    admin.set_compute_quotas(project.id, instances=count + 10, cores=count + 10, ram=ram)
    prefix = "bench-burst"
    network, request = _request(conn, config, prefix, flavor.id, min_count=count, max_count=count)
    sampler = PeakMemory()
    sampler.start()
    start = time.monotonic()
    conn.compute.create_server(**request)
    states = {}
    while time.monotonic() - start < wait:
        states = {s.id: s.status for s in conn.compute.servers(name=f"^{prefix}")}
        if len(states) >= count and all(v in ("ACTIVE", "ERROR") for v in states.values()):
            break
        time.sleep(1)
    elapsed = time.monotonic() - start
    sampler.stopping.set()
    sampler.join()
    active = sum(1 for v in states.values() if v == "ACTIVE")
    failed = len(states) - active + max(0, count - len(states))
    # Where the scheduler put them (an admin's attribute): one host, or spread over nodes.
    hosts: dict[str, int] = {}
    for server in admin.compute.servers(all_projects=True, name=f"^{prefix}"):
        host = (server.compute_host or "none").split(".")[0]
        hosts[host] = hosts.get(host, 0) + 1
    if keep:
        emit("burst", count=count, all_active_s=round(elapsed, 2), active=active, failed=failed, hosts=hosts,
             peak_rss_mib=sampler.peak["rss_mib"], peak_pss_mib=sampler.peak["pss_mib"], delete_all_s=None)
        return
    start = time.monotonic()
    servers = list(conn.compute.servers(name=f"^{prefix}"))
    for server in servers:
        conn.compute.delete_server(server)
    for server in servers:
        conn.compute.wait_for_delete(server, interval=1, wait=600)
    emit("burst", count=count, all_active_s=round(elapsed, 2), active=active, failed=failed, hosts=hosts,
         peak_rss_mib=sampler.peak["rss_mib"], peak_pss_mib=sampler.peak["pss_mib"],
         delete_all_s=round(time.monotonic() - start, 2))
