"""Every server action the compute API offers a project member, called as the `lxc` user on
one instance. Each either works (the instance reaches the state the action promises and,
when it runs, still answers SSH) or is refused at once with a 4xx; never ERROR, never a task
state left set, and once the instance is deleted nothing of it is left: no image, port,
loop device, placement allocation or instance directory.

`appliance selftest lifecycle` on the appliance (tests/e2e runs it over SSH).
Prints one JSON line per action, {"name", "passed", "seconds", "detail", "outcome"}, where
outcome is "works" or "refused" and detail says what happened (the refusal's message).
"""

import json
import subprocess
import time
from dataclasses import dataclass, field

from appliance.selftest.guest import as_instance_root, boot_server, connect, patience, ssh_argv

INSTANCE = "lxc_lifecycle"
REFUSED_WITHIN = 10.0  # s: "at once"; Nova's policy check answers in well under a second
SETTLE = 180.0  # s: the longest a working action may take (hard reboot, rebuild)


@dataclass
class Action:
    """One API call. ``path`` is under /servers/{id} ("/action" for server actions);
    ``expect`` is "refused" or the status the instance must reach ("ACTIVE", "SHUTOFF",
    "PAUSED"); ``answer`` the HTTP status a working call returns."""

    name: str
    body: dict | None
    expect: str = "refused"
    method: str = "POST"
    path: str = "/action"
    microversion: str = "2.1"
    answer: tuple = (200, 201, 202, 204)
    ssh: bool = False  # the instance must answer SSH afterwards
    check: object = None  # extra check(server) -> detail, raises AssertionError
    fields: dict = field(default_factory=dict)


def actions(image_id, flavor_id, network_id):
    refuse = [
        Action("suspend", {"suspend": None}), Action("resume", {"resume": None}),
        Action("rescue", {"rescue": None}), Action("unrescue", {"unrescue": None}),
        Action("shelve", {"shelve": None}), Action("shelve offload", {"shelveOffload": None}),
        Action("unshelve", {"unshelve": None}),
        Action("snapshot (createImage)", {"createImage": {"name": f"{INSTANCE}-snapshot"}}),
        Action("backup", {"createBackup": {"name": f"{INSTANCE}-backup", "backup_type": "daily", "rotation": 1}}),
        Action("resize", {"resize": {"flavorRef": flavor_id}}),
        Action("confirm resize", {"confirmResize": None}), Action("revert resize", {"revertResize": None}),
        Action("cold migration", {"migrate": None}),
        Action("live migration", {"os-migrateLive": {"host": None, "block_migration": "auto"}}, microversion="2.25"),
        Action("evacuate", {"evacuate": {}}, microversion="2.29"),
        Action("VNC console", {"os-getVNCConsole": {"type": "novnc"}}),
        Action("SPICE console", {"os-getSPICEConsole": {"type": "spice-html5"}}),
        Action("RDP console", {"os-getRDPConsole": {"type": "rdp-html5"}}),
        Action("serial console", {"os-getSerialConsole": {"type": "serial"}}),
        Action("remote console (VNC)", {"remote_console": {"protocol": "vnc", "type": "novnc"}},
               path="/remote-consoles", microversion="2.6"),
        Action("remote console (MKS)", {"remote_console": {"protocol": "mks", "type": "webmks"}},
               path="/remote-consoles", microversion="2.8"),
        Action("trigger crash dump", {"trigger_crash_dump": None}, microversion="2.17"),
        Action("change admin password", {"changePassword": {"adminPass": "not-used-4711"}}),
        Action("attach volume", {"volumeAttachment": {"volumeId": "00000000-0000-4000-8000-000000000000"}},
               path="/os-volume_attachments"),
        Action("add fixed IP (multinic)", {"addFixedIp": {"networkId": network_id}}),
        Action("remove fixed IP (multinic)", {"removeFixedIp": {"address": "192.0.2.1"}}),
        # Deprecated proxies and admin actions: a member's call must still end at once.
        Action("add floating IP (proxy)", {"addFloatingIp": {"address": "192.0.2.1"}}),
        Action("remove floating IP (proxy)", {"removeFloatingIp": {"address": "192.0.2.1"}}),
        # Soft delete is off (reclaim_instance_interval = 0): nothing to restore.
        Action("restore (soft delete)", {"restore": None}),
        Action("reset state (admin)", {"os-resetState": {"state": "active"}}),
        Action("inject network info (admin)", {"injectNetworkInfo": None}),
        Action("reset network (admin)", {"resetNetwork": None}),
        Action("diagnostics (admin)", None, method="GET", path="/diagnostics"),
    ]
    work = [
        # First, while the linuxbridge agent is idle: a security group change that lands while
        # it still rewires the port of a reboot or rebuild was once seen to leave the port
        # without its filter (no SSH for minutes; Neutron's race, not LXC's).
        Action("remove security group", {"removeSecurityGroup": {"name": "default"}}, expect="ACTIVE"),
        Action("add security group", {"addSecurityGroup": {"name": "default"}}, expect="ACTIVE", ssh=True),
        Action("stop", {"os-stop": None}, expect="SHUTOFF"),
        Action("start", {"os-start": None}, expect="ACTIVE", ssh=True),
        Action("soft reboot", {"reboot": {"type": "SOFT"}}, expect="ACTIVE", ssh=True),
        Action("hard reboot", {"reboot": {"type": "HARD"}}, expect="ACTIVE", ssh=True),
        Action("pause", {"pause": None}, expect="PAUSED"),
        Action("unpause", {"unpause": None}, expect="ACTIVE", ssh=True),
        Action("lock", {"lock": None}, expect="ACTIVE", check=lambda s: _locked(s, True)),
        Action("unlock", {"unlock": None}, expect="ACTIVE", check=lambda s: _locked(s, False)),
        Action("rebuild", {"rebuild": {"imageRef": image_id}}, expect="ACTIVE", ssh=True),
        Action("console log", {"os-getConsoleOutput": {"length": 20}}, expect="ACTIVE"),
        Action("rename", {"server": {"name": INSTANCE}}, expect="ACTIVE", method="PUT", path=""),
        Action("set metadata", {"metadata": {"purpose": "lifecycle"}}, expect="ACTIVE", path="/metadata"),
        Action("delete metadata", None, expect="ACTIVE", method="DELETE", path="/metadata/purpose"),
        Action("add tag", None, expect="ACTIVE", method="PUT", path="/tags/lifecycle", microversion="2.26"),
        Action("delete tag", None, expect="ACTIVE", method="DELETE", path="/tags/lifecycle", microversion="2.26"),
        Action("clear password", None, expect="ACTIVE", method="DELETE", path="/os-server-password"),
        Action("attach interface", {"interfaceAttachment": {"net_id": network_id}}, expect="ACTIVE",
               path="/os-interface"),
    ]
    # Refusals first, on the freshly booted instance; then the actions that change it.
    return refuse + work


def _locked(server, want):
    assert server.is_locked == want, f"locked is {server.is_locked}"
    return f"locked={want}"


def emit(name, passed, seconds, detail, outcome=""):
    print(json.dumps({"name": name, "passed": passed, "seconds": round(seconds, 2), "detail": detail,
                      "outcome": outcome}), flush=True)


def sh(cmd, timeout=60, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * patience(), **kw)


class Lifecycle:
    def __init__(self, via=None):
        """``via``: the id of an instance on this host to reach the suite's instance through,
        when that one runs on a compute node (guest.ssh_cmd: OVN's metadata namespace reaches
        only this chassis' instances)."""
        from appliance.agent.context import AgentContext, Paths

        context = AgentContext.load(Paths())
        self.site, self.network_profile = context.site, context.profile.network
        self.lxc = connect(cloud="lxc")
        self.admin = connect(cloud="admin")
        self.server = None
        self.via_id, self.via_ip = via, None

    # -- the instance ------------------------------------------------------------------
    def create(self):
        lxc = self.lxc
        for old in lxc.compute.servers(name=INSTANCE):
            lxc.compute.delete_server(old)
            lxc.compute.wait_for_delete(old, wait=120 * patience())
        self.network = lxc.network.find_network(self.site.network.name)
        self.image = lxc.image.find_image(self.site.image_name)
        self.flavor = lxc.compute.find_flavor(self.site.flavors[0].name)
        self.images_before = {i.id for i in self.admin.image.images()}
        self.server = boot_server(lxc, self.site, INSTANCE)
        self.ip = [a["addr"] for a in self.server.addresses[self.network.name] if a.get("version") == 4][0]
        if self.via_id:
            via = self.admin.compute.get_server(self.via_id)
            self.via_ip = [a["addr"] for a in via.addresses[self.network.name] if a.get("version") == 4][0]
        self.ports = {p.id for p in self.admin.network.ports(device_id=self.server.id)}
        self.host = self.admin.compute.get_server(self.server.id).compute_host  # an admin's attribute
        self.wait_ssh()

    def wait_ssh(self, timeout=120):
        timeout *= patience()
        argv = ssh_argv(self.network_profile.namespace(self.network.id), self.ip, as_instance_root("true"),
                        via=self.via_ip)
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if sh(argv, timeout=30).returncode == 0:
                return time.monotonic() - start
            time.sleep(2)
        raise AssertionError(f"no SSH answer within {timeout} s")

    def settled(self, expect, timeout=SETTLE):
        """Poll until no task state is set; the instance must then be in ``expect``."""
        timeout *= patience()
        start = time.monotonic()
        while True:
            server = self.lxc.compute.get_server(self.server.id)
            assert server.status != "ERROR", f"ERROR: {server.fault or ''}"
            if server.task_state is None and server.status == expect:
                return server
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{server.status}, task state {server.task_state} after {timeout:.0f} s")
            time.sleep(1)

    # -- one action --------------------------------------------------------------------
    def call(self, action):
        url = f"/servers/{self.server.id}{action.path}"
        kwargs = {"microversion": action.microversion, "raise_exc": False}
        if action.body is not None:
            kwargs["json"] = action.body
        return getattr(self.lxc.compute, action.method.lower())(url, **kwargs)

    def run(self, action):
        start = time.monotonic()
        response = self.call(action)
        took = time.monotonic() - start
        message = _message(response)
        if action.expect == "refused":
            assert 400 <= response.status_code < 500, f"HTTP {response.status_code}: {message}"
            assert took <= REFUSED_WITHIN, f"refused only after {took:.1f} s"
            time.sleep(1)  # a refusal that still cast something would show here
            self.settled("ACTIVE", timeout=5)
            return f"HTTP {response.status_code}: {message}"
        assert response.status_code in action.answer, f"HTTP {response.status_code}: {message}"
        detail = [f"HTTP {response.status_code}"]
        if action.name == "attach interface":
            port = response.json()["interfaceAttachment"]["port_id"]
            self.settled("ACTIVE")
            detail.append(self.detach(port))
        server = self.settled(action.expect)
        detail.append(server.status)
        if action.check:
            detail.append(action.check(server))
        if action.ssh:
            detail.append(f"SSH after {self.wait_ssh():.1f} s")
        return ", ".join(detail)

    def detach(self, port):
        start = time.monotonic()
        response = self.lxc.compute.delete(f"/servers/{self.server.id}/os-interface/{port}", raise_exc=False)
        assert response.status_code == 202, f"detach: HTTP {response.status_code}: {_message(response)}"
        while any(p.id == port for p in self.admin.network.ports(device_id=self.server.id)):
            assert time.monotonic() - start < SETTLE, f"port {port} still attached after {SETTLE:.0f} s"
            time.sleep(1)
        return f"detached in {time.monotonic() - start:.1f} s"

    # -- nothing left behind -----------------------------------------------------------
    def delete_and_check(self):
        """Delete through forceDelete (which, soft delete being off, deletes at once like
        DELETE, which the smoke covers), then look for what could be left."""
        server_id = self.server.id
        response = self.call(Action("force delete", {"forceDelete": None}))
        assert response.status_code == 202, f"forceDelete: HTTP {response.status_code}: {_message(response)}"
        self.lxc.compute.wait_for_delete(self.server, interval=1, wait=180 * patience())
        problems = []
        new_images = {i.id: i.name for i in self.admin.image.images()}
        leaked = {k: v for k, v in new_images.items() if k not in self.images_before}
        if leaked:
            problems.append(f"images left: {sorted(leaked.values())}")
        ports = [p.id for p in self.admin.network.ports(device_id=server_id)]
        if ports:
            problems.append(f"ports left: {ports}")
        loops = [line for line in sh(["losetup", "-l", "-n"]).stdout.splitlines() if server_id in line]
        if loops:
            problems.append(f"loop devices left: {loops}")
        # nova-compute destroys the instance record, then deletes its allocations
        # (ComputeManager._complete_deletion): the server can be gone a moment before them.
        allocations = {}
        deadline = time.monotonic() + 30 * patience()
        while time.monotonic() < deadline:
            allocations = self.admin.placement.get(f"/allocations/{server_id}").json().get("allocations")
            if not allocations:
                break
            time.sleep(1)
        if allocations:
            problems.append(f"placement allocations left: {allocations}")
        if sh(["test", "-e", f"/var/lib/nova/instances/{server_id}"]).returncode == 0:
            problems.append(f"/var/lib/nova/instances/{server_id} left")
        assert not problems, "; ".join(problems)
        return "no image, port, loop device, allocation or instance directory left"


def _message(response):
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and "message" in inner:
            return inner["message"]
    return json.dumps(data)[:200]


def main(via=None):
    life = Lifecycle(via)
    start = time.monotonic()
    try:
        life.create()
    except Exception as exc:
        emit("create -> ACTIVE, SSH", False, time.monotonic() - start, str(exc).splitlines()[0][:400])
        return 1
    emit("create -> ACTIVE, SSH", True, time.monotonic() - start, f"{life.server.id} on {life.host}")
    image_id, flavor_id, network_id = life.image.id, life.flavor.id, life.network.id
    failed = 0
    for action in actions(image_id, flavor_id, network_id):
        start = time.monotonic()
        outcome = "refused" if action.expect == "refused" else "works"
        try:
            detail = life.run(action)
            emit(action.name, True, time.monotonic() - start, detail, outcome)
        except Exception as exc:
            failed += 1
            emit(action.name, False, time.monotonic() - start, (str(exc) or type(exc).__name__).splitlines()[0][:400],
                 outcome)
            try:  # leave the next action an ACTIVE instance if this one can be brought back
                life.settled("ACTIVE", timeout=60)
            except Exception:
                pass
    start = time.monotonic()
    try:
        detail = life.delete_and_check()
        emit("force delete -> nothing left", True, time.monotonic() - start, detail)
    except Exception as exc:
        failed += 1
        emit("force delete -> nothing left", False, time.monotonic() - start, str(exc).splitlines()[0][:400])
    return 1 if failed else 0
