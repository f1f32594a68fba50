"""The agent's guards: one run at a time (a real flock held by a real second process), the
status line telling a live run from a dead one, the wait that a failed unit ends at once,
and the management-network check the agent adds to the site checks."""

import ipaddress
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from project import ROOT

from appliance.agent.facts import address_network
from appliance.agent.journal import DONE, FAILED, PENDING, RUNNING, StepRecord
from appliance.agent.lock import AlreadyRunning, Holder, RunLock, current_holder
from appliance.agent.status import summarize
from appliance.agent.system import SOCKET_IDLE, classify, wait_units
from appliance.errors import ApplianceError, ConfigError
from appliance.site import SiteConfig
from appliance.site_checks import check_management_network
from pipeline.profiles import load_profile


def _holder_process(lock_path):
    """A real other process that takes the lock and keeps it until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from appliance.agent.lock import RunLock
        with RunLock(Path({str(lock_path)!r}), "appliance run --again"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_is_refused_naming_the_holder(tmp_path):
    lock = tmp_path / "agent.lock"
    proc = _holder_process(lock)
    try:
        holder = current_holder(lock)
        assert holder is not None and holder.pid == proc.pid and holder.command == "appliance run --again"
        with pytest.raises(AlreadyRunning, match=rf"holds {lock}: pid {proc.pid} \(appliance run --again\) since "):
            with RunLock(lock, "appliance run"):
                pytest.fail("two runs held the lock at once")
    finally:
        proc.kill()  # like kill -9: no clean-up code runs in the holder
        proc.wait()
    assert current_holder(lock) is None, "the kernel drops an flock when its holder dies"
    with RunLock(lock, "appliance run"):
        assert current_holder(lock).command == "appliance run"
    assert current_holder(lock) is None


def test_status_probe_does_not_refuse_a_starting_run(tmp_path):
    lock = tmp_path / "agent.lock"
    with RunLock(lock, "appliance run"):
        pass
    for _ in range(20):  # a status probe and a run start racing: the run waits out the probe
        current_holder(lock)
        with RunLock(lock, "appliance run"):
            pass


def records(**states):
    return {name: StepRecord(state=state, error="boom" if state == FAILED else None) for name, state in states.items()}


RUN = {"pid": 4242, "started_at": time.time() - 60, "command": "run"}
LIVE = Holder(pid=4242, since=RUN["started_at"], command="appliance run")

STATUS_ROWS = [
    ("running, lock held", records(a=DONE, b=RUNNING, c=PENDING), None, LIVE, RUN,
     "first boot in progress: step b (1/3 done), agent pid 4242 (appliance run) since "),
    ("running, lock free: died", records(a=DONE, b=RUNNING, c=PENDING), None, None, RUN,
     "first boot run DIED during step b (agent pid 4242 started "),
    ("re-run in progress", records(a=DONE, b=RUNNING, c=DONE), 1.0, LIVE, RUN, "re-run in progress: step b"),
    ("re-run, lock held", records(a=DONE, b=RUNNING, c=DONE), None, Holder(4242, 0.0, "appliance run --again"), RUN,
     "re-run in progress: step b (2/3 done), agent pid 4242 (appliance run --again)"),
    ("failed", records(a=DONE, b=FAILED, c=PENDING), None, None, RUN, "first boot FAILED at step b: boom"),
    ("ready", records(a=DONE, b=DONE, c=DONE), 1.0, None, RUN, "cloud ready"),
    ("not started", records(a=PENDING, b=PENDING, c=PENDING), None, None, None, "first boot not finished (0/3"),
]


@pytest.mark.parametrize("label,recs,completed,holder,run,expected", STATUS_ROWS, ids=[r[0] for r in STATUS_ROWS])
def test_status_summary(label, recs, completed, holder, run, expected):
    assert expected in summarize(recs, completed_at=completed, down=[], holder=holder, last_run=run)


def test_socket_activated_idle_unit_is_up_but_failed_is_failed():
    assert classify("inactive", {"libvirtd.socket": "active", "libvirtd-ro.socket": "active"}) == SOCKET_IDLE
    assert classify("inactive", {"libvirtd.socket": "active", "libvirtd-tcp.socket": "inactive"}) == SOCKET_IDLE
    assert classify("inactive", {"libvirtd.socket": "inactive"}) == "inactive"
    assert classify("inactive", {}) == "inactive"
    assert classify("failed", {"libvirtd.socket": "active"}) == "failed"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_failed_unit_ends_the_wait_at_once_with_its_log():
    clock = FakeClock()
    states = iter([{"a": "activating", "b": "activating"}, {"a": "active", "b": "failed"}])
    with pytest.raises(ApplianceError, match=r"unit b failed: ERROR bind: Address in use \(see journalctl -u b\)"):
        wait_units(["a", "b"], timeout=900, states=lambda units: next(states), tail=lambda u: "ERROR bind: Address in use",
                   clock=clock, sleep=clock.sleep)
    assert clock.now == 1, "one poll interval, not the 900 s timeout"


def test_restarting_unit_is_waited_for_and_idle_socket_unit_counts_as_up():
    clock = FakeClock()
    states = iter([{"a": "activating", "b": SOCKET_IDLE}] * 3 + [{"a": "active", "b": SOCKET_IDLE}])
    wait_units(["a", "b"], timeout=900, states=lambda units: next(states), tail=lambda u: "", clock=clock,
               sleep=clock.sleep)
    assert clock.now == 3


def test_wait_times_out_naming_the_units():
    clock = FakeClock()
    with pytest.raises(ApplianceError, match="units not active after 5 s: a activating"):
        wait_units(["a"], timeout=5, states=lambda units: {"a": "activating"}, tail=lambda u: "", clock=clock,
                   sleep=clock.sleep)


ADDRS = [{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
         {"ifname": "host0", "addr_info": [{"family": "inet", "local": "192.168.0.10", "prefixlen": 16}]}]


def test_detected_management_network_against_tenant_and_external():
    interface, network = address_network(ADDRS, "192.168.0.10")
    assert (interface, network) == ("host0", ipaddress.IPv4Interface("192.168.0.10/16"))
    # The default tenant range 192.168.0.0/24 lies inside this /16.
    with pytest.raises(ConfigError, match=r"site.yaml: network.cidr: 192.168.0.0/24 overlaps the management network "
                                          r"192.168.0.0/16 \(192.168.0.10 on host0\)"):
        check_management_network(SiteConfig(), "site.yaml", interface, network)
    _, narrow = address_network([{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.254.0.10",
                                                                   "prefixlen": 24}]}], "10.254.0.10")
    check_management_network(SiteConfig(), "site.yaml", "eth0", narrow)
    with pytest.raises(ConfigError, match="external.cidr: 10.20.20.0/24 overlaps the management network 10.20.0.0/16"):
        check_management_network(SiteConfig(), "site.yaml", "eth0", ipaddress.IPv4Interface("10.20.1.1/16"))


def test_seed_site_is_copied_0600_and_bounded(tmp_path, monkeypatch):
    from appliance.agent import steps_host

    monkeypatch.setenv("APPLIANCE_AGENT_LOG", str(tmp_path / "log"))
    seed = tmp_path / "seed.yaml"
    seed.write_text("secrets: {admin_password: abcdefgh12}\n")
    target = tmp_path / "etc/appliance/appliance.yaml"
    steps_host.copy_seed_site(seed, target, "/dev/sr0:appliance.yaml")
    assert (target.stat().st_mode & 0o777) == 0o600
    assert target.read_text() == seed.read_text()
    target.unlink()
    with pytest.raises(ConfigError, match="/dev/sr0:appliance.yaml: expected a regular file, got a character device"):
        steps_host.copy_seed_site(Path("/dev/zero"), target, "/dev/sr0:appliance.yaml")
    assert not target.exists()


@pytest.mark.parametrize("site_text, factor", [
    (None, 1.0),  # no site config: bounds as on hardware
    ("region: RegionOne\n", 1.0),
    ("timeouts: {scale: 4}\n", 4.0),
    ("timeouts: {scale: 2.5}\n", 2.5),
], ids=["no-site", "site-without-timeouts", "scale-4", "scale-2.5"])
def test_patience_is_the_sites_timeout_scale(tmp_path, monkeypatch, site_text, factor):
    """The agent's factor comes from the site config alone (no detection of the machine)."""
    from appliance.agent import system
    from appliance.agent.context import AgentContext, Paths

    monkeypatch.setattr(system, "_TIMEOUT_SCALE", [7.0])  # whatever an earlier load left
    if site_text is not None:
        (tmp_path / "appliance.yaml").write_text(site_text)
    ctx = AgentContext(paths=Paths(config_dir=tmp_path), profile=load_profile("bookworm-zed"))
    _ = ctx.site
    assert system.patience() == factor
