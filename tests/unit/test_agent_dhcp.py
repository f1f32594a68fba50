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
    or never (None) in the runs listed in ``stuck_runs``."""

    def __init__(self, ready_after, stuck_runs=()):
        self.ready_after, self.stuck_runs = ready_after, set(stuck_runs)
        self.run, self.polls, self.now, self.said = 0, 0, 0.0, []

    def runs(self, network):
        self.polls += 1
        return self.run not in self.stuck_runs and self.polls > self.ready_after

    def restart(self):
        self.run, self.polls = self.run + 1, 0

    def sleep(self, seconds):
        self.now += seconds


@pytest.mark.parametrize("ready_after, stuck_runs, restarts, error", [
    (0, (), 0, None),                     # served already
    (10, (), 0, None),                    # served within the wait (50 s of polls)
    (0, (0,), 1, None),                   # Neutron gave up; served after one restart
    (0, (0, 1), 2, None),                 # served after the second restart
    (0, (0, 1, 2), None, "after 2 restarts"),  # never: one line naming the network and the log
])
def test_ensure_served_restarts_the_agent_a_bounded_number_of_times(ready_after, stuck_runs, restarts, error):
    machine = FakeMachine(ready_after, stuck_runs)
    call = lambda: dhcp.ensure_served(lambda: [NET], machine.runs, machine.restart, machine.said.append,
                                      wait_s=360, poll_s=5, clock=lambda: machine.now, sleep=machine.sleep)
    if error:
        with pytest.raises(ApplianceError, match=error) as caught:
            call()
        assert NET in str(caught.value) and dhcp.LOG_HINT in str(caught.value)
        assert machine.run == 2
    else:
        assert call() == restarts
        assert machine.run == restarts
        assert len(machine.said) == restarts and all("restarting neutron-dhcp-agent" in s for s in machine.said)


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
