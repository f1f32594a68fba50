"""First boot's DHCP check: a network's dnsmasq is found by Neutron's pid file, and a DHCP
agent that gave up on a network gets each recovery (reschedule, restart) once, in order."""

import pytest

from appliance.agent import dhcp
from appliance.errors import ApplianceError

NET = "6085211b-44e1-419b-8b56-467c8602ebd1"


@pytest.mark.parametrize("pid_file, comm, runs", [
    ("4242\n", "dnsmasq\n", True),
    ("4242\n", "haproxy\n", False),   # the pid was reused by another program
    ("4242\n", None, False),          # no such process: dnsmasq died
    (None, None, False),              # Neutron never got as far as starting it
    ("garbage", None, False),
])
def test_dnsmasq_runs_reads_neutrons_pid_file(tmp_path, pid_file, comm, runs):
    state, proc = tmp_path / "dhcp", tmp_path / "proc"
    if pid_file is not None:
        (state / NET).mkdir(parents=True)
        (state / NET / "pid").write_text(pid_file)
    if comm is not None:
        (proc / "4242").mkdir(parents=True)
        (proc / "4242" / "comm").write_text(comm)
    assert dhcp.dnsmasq_runs(NET, state=state, proc=proc) is runs


class FakeMachine:
    """A DHCP agent whose dnsmasq appears after ``ready_after`` polls of its current run,
    or never in the runs listed in ``stuck_runs``; a stuck run logs its give-up once, after
    ``gives_up_after`` polls (None: it never says so). A reschedule starts a new run of the
    same agent process (its log keeps the earlier give-ups); a restart starts a new process."""

    def __init__(self, ready_after, stuck_runs=(), gives_up_after=None):
        self.ready_after, self.stuck_runs, self.gives_up_after = ready_after, set(stuck_runs), gives_up_after
        self.run, self.polls, self.now, self.said, self.applied = 0, 0, 0.0, [], []
        self.logged, self.logged_this_run = 0, False

    def runs(self, network):
        self.polls += 1
        return self.run not in self.stuck_runs and self.polls > self.ready_after

    def gave_up(self):
        stuck = self.run in self.stuck_runs and self.gives_up_after is not None
        if stuck and self.polls > self.gives_up_after and not self.logged_this_run:
            self.logged, self.logged_this_run = self.logged + 1, True
        return {NET: self.logged} if self.logged else {}

    def recovery(self, kind):
        def apply(missing):
            assert missing == [NET]
            self.applied.append(kind)
            if kind == "unappli":  # e.g. Neutron's API refused the reschedule: nothing changed
                raise ApplianceError("not hosted by DHCP agent a1")
            self.run, self.polls, self.logged_this_run = self.run + 1, 0, False
            if kind == "restart":
                self.logged = 0
        return dhcp.Recovery(f"{kind}ing", apply)

    def sleep(self, seconds):
        self.now += seconds


FIRST_BOOT = ("reschedul", "restart")  # the shape of first boot's recoveries, shortened
AT_BOOT = ("restart", "restart")


@pytest.mark.parametrize("kinds, ready_after, stuck_runs, gives_up_after, used, error, waited_s", [
    (FIRST_BOOT, 0, (), None, 0, None, 0),            # served already
    (FIRST_BOOT, 10, (), None, 0, None, 50),          # served within the wait (50 s of polls)
    (FIRST_BOOT, 0, (0,), None, 1, None, 360),        # stuck without a word: rescheduled when the wait ends
    (FIRST_BOOT, 0, (0,), 6, 1, None, 30),            # the agent logged its give-up: rescheduled at once
    (FIRST_BOOT, 0, (0, 1), None, 2, None, 720),      # served after the restart
    (FIRST_BOOT, 0, (0, 1), 2, 2, None, 20),          # the same agent's second give-up counts, not its first again
    (FIRST_BOOT, 0, (0, 1, 2), None, None, "after reschedul", 1080),  # never: one line naming the network, the log
    (FIRST_BOOT, 0, (0, 1, 2), 2, None, "then restarting", 30),       # gave up every time: the error at once
    (AT_BOOT, 0, (0,), 6, 1, None, 30),               # at boot: restarted at once
    (AT_BOOT, 0, (0, 1), 2, 2, None, 20),             # a new process: its own give-up counts
    (AT_BOOT, 0, (0, 1, 2), 2, None, "after restarting then restarting", 30),
    ((), 0, (0,), 2, None, "after waiting", 10),      # no recovery to try
    (("unappli", "restart"), 0, (0,), 2, 2, None, 10),  # a recovery that cannot be applied: the next at once
    (("unappli", "unappli"), 0, (0,), 2, None, "after unappliing then unappliing", 10),
])
def test_ensure_served_applies_each_recovery_once_in_order(kinds, ready_after, stuck_runs, gives_up_after,
                                                          used, error, waited_s):
    machine = FakeMachine(ready_after, stuck_runs, gives_up_after)
    recoveries = [machine.recovery(kind) for kind in kinds]
    def call():
        return dhcp.ensure_served(lambda: [NET], machine.runs, recoveries, machine.said.append,
                                  gave_up=machine.gave_up, wait_s=360, poll_s=5, clock=lambda: machine.now,
                                  sleep=machine.sleep)
    if error:
        with pytest.raises(ApplianceError, match=error) as caught:
            call()
        assert NET in str(caught.value) and dhcp.LOG_HINT in str(caught.value)
        assert machine.applied == list(kinds)
    else:
        assert call() == used
        assert machine.applied == list(kinds[:used])
        progress = [line for line in machine.said if " failed: " not in line]
        assert len(progress) == used
        assert all(NET in s and s.endswith(f"{kind}ing") for s, kind in zip(progress, kinds))
        # Each wait that ended on a give-up says so; a recovery right after one that could
        # not be applied followed no wait.
        waited = progress if "unappli" not in kinds else progress[:1]
        assert all(("gave up" in s) == (gives_up_after is not None) for s in waited)
    assert machine.now == waited_s


def test_first_boot_reschedules_before_it_restarts():
    recoveries = dhcp.first_boot_recoveries(conn=None)
    assert [r.doing for r in recoveries] == ["scheduling it on its DHCP agent again"] * dhcp.RESCHEDULES + [
        dhcp.RESTART.doing]


class FakeNetworkApi:
    """The agent-scheduler calls of openstacksdk's network proxy that reschedule() uses, on a
    table of network → hosting agent IDs. Like openstacksdk 0.101's, remove and add do not
    raise on Neutron's refusals; ``refuse_add`` makes Neutron refuse every add."""

    def __init__(self, hosting, alive_agents=(), refuse_add=False, api_down=False):
        self.hosting, self.alive, self.refuse_add, self.calls = hosting, list(alive_agents), refuse_add, []
        self.api_down = api_down

    def network_hosting_dhcp_agents(self, network):
        if self.api_down:
            from openstack import exceptions
            raise exceptions.HttpException("503 Service Unavailable")
        return [type("HostingAgent", (), {"id": a})() for a in self.hosting.get(network, [])]

    def remove_dhcp_agent_from_network(self, agent, network):
        assert isinstance(agent, str), "agents go by ID (the hosting-agent objects carry the wrong base path)"
        self.calls.append(("remove", agent, network))
        self.hosting[network] = [a for a in self.hosting.get(network, []) if a != agent]

    def add_dhcp_agent_to_network(self, agent, network):
        assert isinstance(agent, str)
        self.calls.append(("add", agent, network))
        if not self.refuse_add:
            self.hosting.setdefault(network, []).append(agent)

    def agents(self, agent_type):
        assert agent_type == "DHCP agent"
        return [type("Agent", (), {"id": a, "is_alive": a != "dead"})() for a in self.alive]


@pytest.mark.parametrize("hosting, alive, refuse_add, api_down, calls, error", [
    ({NET: ["a1"]}, [], False, False, [("remove", "a1", NET), ("add", "a1", NET)], None),
    ({}, ["a1", "dead"], False, False, [("add", "a1", NET)], None),    # hosted nowhere: the alive agents
    ({NET: ["a1"]}, [], True, False, [("remove", "a1", NET), ("add", "a1", NET)], "not hosted by DHCP agent a1"),
    ({}, ["dead"], False, False, [], "not hosted by DHCP agent [(]none alive[)]"),
    ({NET: ["a1"]}, [], False, True, [], "Neutron's API failed .*503"),  # an SDK error becomes one line
])
def test_reschedule_removes_and_adds_the_network_and_reads_the_result_back(hosting, alive, refuse_add, api_down,
                                                                         calls, error):
    api = FakeNetworkApi(hosting, alive, refuse_add, api_down)
    conn = type("Conn", (), {"network": api})()
    if error:
        with pytest.raises(ApplianceError, match=error):
            dhcp.reschedule(conn, [NET])
    else:
        dhcp.reschedule(conn, [NET])
    assert api.calls == calls


AGENT_PID = 810
GIVE_UP_LINE = ("2026-12-01 11:58:00.123 {pid} ERROR neutron.agent.linux.dhcp [-] "
                "Failed to start DHCP process for network {net}")
# As Neutron's DHCP agent (Zed, Debian) writes it: oslo.log appends the exception
# being handled when the error was logged.
GIVE_UP_SEEN = ("2026-12-01 13:50:23.302 {pid} ERROR neutron.agent.linux.dhcp [None req-818c5fd8-2df3-4694-9299-"
                "951c35ab7fde - - - - - -] Failed to start DHCP process for network {net}: "
                "neutron.common.utils.WaitTimeout: Timed out after 300 seconds")
OTHER = "0c6f2bbd-6b4e-4b0a-9d51-3a3b4ee0f1f0"


@pytest.mark.parametrize("lines, pid, gave_up", [
    ([], AGENT_PID, {}),
    ([GIVE_UP_LINE.format(pid=AGENT_PID, net=NET)], AGENT_PID, {NET: 1}),
    ([GIVE_UP_SEEN.format(pid=AGENT_PID, net=NET)], AGENT_PID, {NET: 1}),
    ([GIVE_UP_SEEN.format(pid=AGENT_PID, net=NET) + "\r"], AGENT_PID, {NET: 1}),
    ([GIVE_UP_LINE.format(pid=799, net=NET)], AGENT_PID, {}),     # an agent since restarted
    ([GIVE_UP_LINE.format(pid=AGENT_PID, net=NET)], None, {}),   # the agent does not run
    ([GIVE_UP_LINE.format(pid=AGENT_PID, net=NET), GIVE_UP_LINE.format(pid=AGENT_PID, net=OTHER)],
     AGENT_PID, {NET: 1, OTHER: 1}),
    ([GIVE_UP_LINE.format(pid=AGENT_PID, net=NET)] * 2, AGENT_PID, {NET: 2}),  # given up again after a reschedule
    (["2026-12-01 11:58:00.123 810 INFO neutron.agent.dhcp.agent [-] Starting network " + NET + " dhcp configuration",
      "2026-12-01 11:58:01.001 810 INFO neutron.agent.dhcp.agent [-] Finished network " + NET + " dhcp configuration",
      "a traceback line", ""], AGENT_PID, {}),
])
def test_given_up_reads_the_running_agents_log_lines(lines, pid, gave_up):
    assert dhcp.given_up("\n".join(lines), pid) == gave_up


def test_agent_given_up_without_a_log_is_nothing(tmp_path):
    assert dhcp.agent_given_up(tmp_path / "missing.log") == {}


def test_no_network_with_dhcp_needs_nothing():
    restarted = []
    assert dhcp.ensure_served(lambda: [], lambda n: False, [dhcp.Recovery("restarting", restarted.append)], print) == 0
    assert not restarted


@pytest.mark.parametrize("entries, known", [
    (None, set()),                                   # the agent never ran
    ([], set()),
    ([NET], {NET}),
    ([NET, "stray-file"], {NET}),                    # only directories are networks
])
def test_known_networks_are_the_agents_network_directories(tmp_path, entries, known):
    state = tmp_path / "dhcp"
    if entries is not None:
        state.mkdir()
        for name in entries:
            (state / name).mkdir() if name == NET else (state / name).write_text("x")
    assert dhcp.known_networks(state) == known
