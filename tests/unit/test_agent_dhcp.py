"""First boot's DHCP check: a network's dnsmasq is found by Neutron's pid file, and a DHCP
agent that gave up on a network is restarted, a bounded number of times."""

import pytest

from pipeline.agent import dhcp
from pipeline.errors import ApplianceError

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
    or never in the runs listed in ``stuck_runs``; a stuck run logs its give-up after
    ``gives_up_after`` polls (None: it never says so)."""

    def __init__(self, ready_after, stuck_runs=(), gives_up_after=None):
        self.ready_after, self.stuck_runs, self.gives_up_after = ready_after, set(stuck_runs), gives_up_after
        self.run, self.polls, self.now, self.said = 0, 0, 0.0, []

    def runs(self, network):
        self.polls += 1
        return self.run not in self.stuck_runs and self.polls > self.ready_after

    def gave_up(self):
        stuck = self.run in self.stuck_runs and self.gives_up_after is not None
        return {NET} if stuck and self.polls > self.gives_up_after else set()

    def restart(self):
        self.run, self.polls = self.run + 1, 0

    def sleep(self, seconds):
        self.now += seconds


@pytest.mark.parametrize("ready_after, stuck_runs, gives_up_after, restarts, error, waited_s", [
    (0, (), None, 0, None, 0),                  # served already
    (10, (), None, 0, None, 50),                # served within the wait (50 s of polls)
    (0, (0,), None, 1, None, 360),              # stuck without a word: restarted when the wait ends
    (0, (0,), 6, 1, None, 30),                  # the agent logged its give-up: restarted at once
    (0, (0, 1), None, 2, None, 720),            # served after the second restart
    (0, (0, 1), 2, 2, None, 20),
    (0, (0, 1, 2), None, None, "after 2 restarts", 1080),  # never: one line naming the network and the log
    (0, (0, 1, 2), 2, None, "after 2 restarts", 30),       # gave up every time: the error at once
])
def test_ensure_served_restarts_the_agent_a_bounded_number_of_times(ready_after, stuck_runs, gives_up_after,
                                                                   restarts, error, waited_s):
    machine = FakeMachine(ready_after, stuck_runs, gives_up_after)
    call = lambda: dhcp.ensure_served(lambda: [NET], machine.runs, machine.restart, machine.said.append,
                                      gave_up=machine.gave_up, wait_s=360, poll_s=5, clock=lambda: machine.now,
                                      sleep=machine.sleep)
    if error:
        with pytest.raises(ApplianceError, match=error) as caught:
            call()
        assert NET in str(caught.value) and dhcp.LOG_HINT in str(caught.value)
        assert machine.run == 2
    else:
        assert call() == restarts
        assert machine.run == restarts
        assert len(machine.said) == restarts and all("restarting" in s and NET in s for s in machine.said)
        assert all(("gave up" in s) == (gives_up_after is not None) for s in machine.said)
    assert machine.now == waited_s


AGENT_PID = 810
GIVE_UP_LINE = ("2026-12-01 11:58:00.123 {pid} ERROR neutron.agent.linux.dhcp [-] "
                "Failed to start DHCP process for network {net}")
# As the appliance's agent (Zed, Debian) wrote it in a TCG VM: oslo.log appends the exception
# being handled when the error was logged.
GIVE_UP_SEEN = ("2026-12-01 13:50:23.302 {pid} ERROR neutron.agent.linux.dhcp [None req-818c5fd8-2df3-4694-9299-"
                "951c35ab7fde - - - - - -] Failed to start DHCP process for network {net}: "
                "neutron.common.utils.WaitTimeout: Timed out after 300 seconds")
OTHER = "0c6f2bbd-6b4e-4b0a-9d51-3a3b4ee0f1f0"


@pytest.mark.parametrize("lines, pid, gave_up", [
    ([], AGENT_PID, set()),
    ([GIVE_UP_LINE.format(pid=AGENT_PID, net=NET)], AGENT_PID, {NET}),
    ([GIVE_UP_SEEN.format(pid=AGENT_PID, net=NET)], AGENT_PID, {NET}),
    ([GIVE_UP_SEEN.format(pid=AGENT_PID, net=NET) + "\r"], AGENT_PID, {NET}),
    ([GIVE_UP_LINE.format(pid=799, net=NET)], AGENT_PID, set()),     # an agent since restarted
    ([GIVE_UP_LINE.format(pid=AGENT_PID, net=NET)], None, set()),   # the agent does not run
    ([GIVE_UP_LINE.format(pid=AGENT_PID, net=NET), GIVE_UP_LINE.format(pid=AGENT_PID, net=OTHER)],
     AGENT_PID, {NET, OTHER}),
    (["2026-12-01 11:58:00.123 810 INFO neutron.agent.dhcp.agent [-] Starting network " + NET + " dhcp configuration",
      "2026-12-01 11:58:01.001 810 INFO neutron.agent.dhcp.agent [-] Finished network " + NET + " dhcp configuration",
      "a traceback line", ""], AGENT_PID, set()),
])
def test_given_up_reads_the_running_agents_log_lines(lines, pid, gave_up):
    assert dhcp.given_up("\n".join(lines), pid) == gave_up


def test_agent_given_up_without_a_log_is_nothing(tmp_path):
    assert dhcp.agent_given_up(tmp_path / "missing.log") == set()


def test_no_network_with_dhcp_needs_nothing():
    restarted = []
    assert dhcp.ensure_served(lambda: [], lambda n: False, lambda: restarted.append(1), print) == 0
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
