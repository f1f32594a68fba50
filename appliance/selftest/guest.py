"""What the smoke's scripts share on the appliance: one JSON line per check, bounded waits,
and SSH to an instance as the guest image's login user with the keypair's key."""

import json
import subprocess
import time

# Who logs in to a guest: the image's default user (Debian's cloud-image convention); root's
# key only prints a hint. Probes that need root run through `sudo -n`.
LOGIN_USER = "debian"


# The names of the checks that failed in this process, in order (emit appends them), so a
# suite's exit status covers the checks its helpers ran too.
FAILED: list = []


def emit(name, passed, seconds, detail=""):
    if not passed:
        FAILED.append(name)
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


def patience():
    """The agent's factor for every timeout, the site config's ``timeouts.scale`` (read with
    the site on the first call). The smoke's waits on the appliance use it too: such an
    appliance is slower, not broken."""
    from appliance.agent.context import AgentContext, Paths
    from appliance.agent.system import patience as agent_patience

    if not _SITE_READ:
        _SITE_READ.append(AgentContext.load(Paths()).site)
    return agent_patience()


_SITE_READ: list = []


def wait(what, probe, timeout, interval=1.0):
    timeout *= patience()
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout} s")


def connect(cloud, timeout=120, authorize=False):
    """An openstacksdk connection to ``cloud`` (a clouds.yaml entry on the appliance) whose
    every request is bounded by ``timeout`` s × patience(), and retried when the API drops
    the connection before answering (keystoneauth's connect_retries): a hung request must
    fail, not hang the run. ``authorize``: get the token now (Keystone's errors here, not at
    the first call). The selftests' and the measurements' one way to the APIs; the agent,
    which runs before clouds.yaml exists, has its own (agent.steps_openstack.connect)."""
    import openstack

    conn = openstack.connect(cloud=cloud, api_timeout=timeout * patience(), connect_retries=3)
    if authorize:
        conn.authorize()
    return conn


def boot_server(conn, site, name, wait_s=300):
    """Server ``name`` (openstacksdk Server, ACTIVE) of the site's first flavor, its image and
    keypair, on its tenant network, awaited for up to ``wait_s`` s × patience(). One that ends
    in ERROR or is not ACTIVE in time is deleted (best effort) before the error is raised, so
    a failed check leaves no instance holding the project's quota."""
    network = conn.network.find_network(site.network.name)
    server = conn.compute.create_server(
        name=name, flavor_id=conn.compute.find_flavor(site.flavors[0].name).id,
        image_id=conn.image.find_image(site.image_name).id, networks=[{"uuid": network.id}],
        key_name=site.keypair_name)
    try:
        return conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1,
                                            wait=wait_s * patience())
    except Exception:
        try:
            conn.compute.delete_server(server)
        except Exception:  # the wait's error is the one to report
            pass
        raise


def console_tail(conn, server, lines=12):
    """The last ``lines`` lines of ``server``'s console log (Nova's os-getConsoleOutput), as
    one string for an error message; what a guest that cannot be reached said while it
    booted (its DHCP lease, cloud-init's metadata tries). Never raises."""
    try:
        text = conn.compute.get_server_console_output(server, length=lines)["output"]
    except Exception as exc:  # a diagnostic must not hide the failure it explains
        return f"(no console log: {exc})"
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def wait_ssh(conn, server, cmd, timeout, what="SSH to the instance", per_try=30):
    """Run ssh ``cmd`` (each try bounded by ``per_try`` s × patience()) until it exits 0, for
    up to ``timeout`` s × patience(); the finished process. On timeout the AssertionError
    carries the tail of the server's console log."""
    try:
        return wait(what, lambda: (r := sh(cmd, timeout=per_try)).returncode == 0 and r, timeout=timeout, interval=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; console: {console_tail(conn, server)}") from None


def sh(cmd, timeout=60):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * patience())


KEY = "/etc/appliance/lxckey"


_SSH_OPTIONS = ["-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]


def ssh_cmd(user, address, command, netns=None, timeout=5, via=None):
    """ssh to an instance with the keypair's key, from ``netns`` or the appliance host itself;
    ``via``: through that instance first (an address reachable from there), which then opens
    the TCP connection to ``address`` on the tenant network. OVN's metadata port is a
    localport, reaching only the instances of its own chassis: an instance on another host
    is reached through one on this host."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    # -o options do not reach a ProxyJump's ssh, so the hop is spelt out.
    hop = ["-o", "ProxyCommand=" + " ".join(["ssh", *_SSH_OPTIONS, "-o", f"ConnectTimeout={timeout}", "-W", "%h:%p",
                                              f"{user}@{via}"])] if via else []
    return [*prefix, "ssh", *_SSH_OPTIONS, "-o", f"ConnectTimeout={timeout}", *hop, f"{user}@{address}", command]


def ssh_outcome(cmd, timeout=20):
    """What the ssh command ``cmd`` did: "ran" (its remote command exited 0), "failed" (ssh or
    the command exited non-zero) or "hung" (still running after ``timeout`` s × patience: the
    TCP connection was made, then went silent, as when a security group change cuts it during
    the key exchange)."""
    try:
        return "ran" if sh(cmd, timeout=timeout).returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        return "hung"


def ssh_argv(namespace, ip, remote, user=LOGIN_USER, via=None):
    """ssh from the DHCP namespace to an instance as its login user, running ``remote``
    (``via``: ssh_cmd's)."""
    return ssh_cmd(user, ip, remote, netns=namespace, via=via)


def as_instance_root(command):
    return command if LOGIN_USER == "root" else f"sudo -n {command}"
