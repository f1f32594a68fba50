"""Pure logic of the first-boot agent: journal, resumable step runner, fact detection."""

import json

import pytest

from appliance.agent.facts import pick_management_address
from appliance.agent.journal import DONE, FAILED, RUNNING, Journal
from appliance.agent.runner import Step, StepFailed, run_steps
from appliance.errors import ApplianceError


def make_steps(calls, fail_at=None, still_done=None):
    def action(name):
        def run():
            calls.append(name)
            if name == fail_at:
                raise ApplianceError(f"{name} broke")
        return run

    return [Step(n, f"do {n}", action(n), still_done=(still_done or {}).get(n)) for n in ("a", "b", "c")]


def test_runs_all_then_nothing(tmp_path):
    journal_path = tmp_path / "journal.json"
    calls, lines = [], []
    run_steps(make_steps(calls), Journal.load(journal_path), lines.append, log_hint="log")
    assert calls == ["a", "b", "c"]
    assert any("cloud ready" in line for line in lines)
    run_steps(make_steps(calls), Journal.load(journal_path), lines.append, log_hint="log")
    assert calls == ["a", "b", "c"], "a finished appliance must be left unchanged"


def test_failure_is_recorded_and_resume_starts_at_failed_step(tmp_path):
    journal_path = tmp_path / "journal.json"
    calls = []
    with pytest.raises(StepFailed, match="step b failed: b broke \\(see log\\)"):
        run_steps(make_steps(calls, fail_at="b"), Journal.load(journal_path), lambda _: None, log_hint="log")
    journal = Journal.load(journal_path)
    assert journal.record("a").state == DONE
    assert journal.record("b").state == FAILED and journal.record("b").error == "b broke"
    assert journal.completed_at is None
    calls.clear()
    run_steps(make_steps(calls), Journal.load(journal_path), lambda _: None, log_hint="log")
    assert calls == ["b", "c"]
    assert Journal.load(journal_path).record("b").runs == 2


def test_step_interrupted_while_running_is_run_again(tmp_path):
    journal_path = tmp_path / "journal.json"
    journal = Journal.load(journal_path)
    journal.start("a")
    journal.finish("a")
    journal.start("b")  # power cut here
    assert Journal.load(journal_path).record("b").state == RUNNING
    calls = []
    run_steps(make_steps(calls), Journal.load(journal_path), lambda _: None, log_hint="log")
    assert calls == ["b", "c"]


def test_done_step_whose_result_vanished_runs_again(tmp_path):
    journal_path = tmp_path / "journal.json"
    run_steps(make_steps([]), Journal.load(journal_path), lambda _: None, log_hint="log")
    calls = []
    run_steps(make_steps(calls, still_done={"b": lambda: False}), Journal.load(journal_path), lambda _: None,
              log_hint="log")
    assert calls == ["b"]


def test_journal_file_is_valid_json_with_timings(tmp_path):
    journal_path = tmp_path / "journal.json"
    run_steps(make_steps([]), Journal.load(journal_path), lambda _: None, log_hint="log")
    data = json.loads(journal_path.read_text())
    assert data["completed_at"] is not None
    assert all(rec["seconds"] is not None and rec["state"] == "done" for rec in data["steps"].values())


def test_duplicate_step_names_are_a_bug(tmp_path):
    steps = make_steps([]) + make_steps([])[:1]
    with pytest.raises(ValueError):
        run_steps(steps, Journal.load(tmp_path / "j.json"), lambda _: None, log_hint="log")


ADDRS = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "scope": "host"}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet6", "local": "fe80::1", "scope": "link"},
                                     {"family": "inet", "local": "10.0.0.5", "scope": "global"}]},
    {"ifname": "eth1", "addr_info": [{"family": "inet", "local": "172.16.9.9", "scope": "global"}]},
]


def test_default_route_interface_wins():
    routes = [{"dst": "default", "gateway": "172.16.9.1", "dev": "eth1"}]
    assert pick_management_address(routes, ADDRS, None) == ("eth1", "172.16.9.9")


def test_without_default_route_first_global_address():
    assert pick_management_address([], ADDRS, None) == ("eth0", "10.0.0.5")


def test_named_interface_wins():
    routes = [{"dst": "default", "dev": "eth0"}]
    assert pick_management_address(routes, ADDRS, "eth1") == ("eth1", "172.16.9.9")


def test_no_address_names_the_fix():
    with pytest.raises(ApplianceError, match="set management_ip"):
        pick_management_address([], ADDRS[:1], None)


def test_rerun_all_runs_every_step_again(tmp_path):
    journal_path = tmp_path / "journal.json"
    run_steps(make_steps([]), Journal.load(journal_path), lambda _: None, log_hint="log")
    calls = []
    run_steps(make_steps(calls), Journal.load(journal_path), lambda _: None, log_hint="log", rerun_all=True)
    assert calls == ["a", "b", "c"]
