"""The step runner's prerequisites: steps run side by side once what they wait for is done,
a failure stops the run and leaves the steps still running pending, and every shipped
profile's step list is valid."""

import threading
from types import SimpleNamespace

import pytest

from appliance.agent.journal import DONE, FAILED, PENDING, Journal
from appliance.agent.runner import EVERY_EARLIER, Step, StepFailed, prerequisites, run_steps
from appliance.agent.steps import first_boot_steps
from appliance.errors import ApplianceError
from pipeline.profiles import load_profile


def noop():
    return None


@pytest.mark.parametrize("after_b, after_c, expected", [
    (None, None, {"a": set(), "b": {"a"}, "c": {"b"}}),
    (None, ("a",), {"a": set(), "b": {"a"}, "c": {"a"}}),
    (("a",), EVERY_EARLIER, {"a": set(), "b": {"a"}, "c": {"a", "b"}}),
    ((), None, {"a": set(), "b": set(), "c": {"b"}}),
], ids=["default: the one before", "named", "every earlier", "none"])
def test_prerequisites(after_b, after_c, expected):
    steps = [Step("a", "", noop), Step("b", "", noop, after=after_b), Step("c", "", noop, after=after_c)]
    assert prerequisites(steps) == expected


@pytest.mark.parametrize("steps, message", [
    ([Step("a", "", noop), Step("a", "", noop)], "step names must be unique"),
    ([Step("a", "", noop, after=("b",)), Step("b", "", noop)], "step a waits for b, not listed before it"),
    ([Step("a", "", noop, after=("a",))], "step a waits for a, not listed before it"),
    ([Step("a", "", noop), Step("b", "", noop, after=("x",))], "step b waits for x, not listed before it"),
], ids=["repeated name", "a later step", "itself", "unknown step"])
def test_bad_prerequisites_are_refused(steps, message):
    with pytest.raises(ValueError, match=message):
        prerequisites(steps)


def test_steps_waiting_for_the_same_step_run_side_by_side(tmp_path):
    # b can finish only while c runs: run one after the other, b times out.
    c_started = threading.Event()
    order = []

    def b():
        if not c_started.wait(timeout=10):
            raise ApplianceError("c never ran beside b")
        order.append("b")

    def c():
        c_started.set()
        order.append("c")

    steps = [Step("a", "", lambda: order.append("a")), Step("b", "", b, after=("a",)),
             Step("c", "", c, after=("a",)), Step("d", "", lambda: order.append("d"), after=EVERY_EARLIER)]
    timings = run_steps(steps, Journal.load(tmp_path / "j.json"), lambda _: None, log_hint="log")
    assert order[0] == "a" and order[-1] == "d" and sorted(order[1:3]) == ["b", "c"]
    assert set(timings) == {"a", "b", "c", "d"}


def test_a_failure_stops_the_run_and_leaves_running_steps_pending(tmp_path):
    release = threading.Event()
    ran = []

    def slow():
        release.wait(timeout=10)
        ran.append("slow")

    def broken():
        raise ApplianceError("broken broke")

    steps = [Step("a", "", noop), Step("slow", "", slow, after=("a",)), Step("broken", "", broken, after=("a",)),
             Step("last", "", lambda: ran.append("last"), after=EVERY_EARLIER)]
    path = tmp_path / "j.json"
    lines = []
    with pytest.raises(StepFailed, match="step broken failed: broken broke"):
        run_steps(steps, Journal.load(path), lines.append, log_hint="log")
    release.set()
    journal = Journal.load(path)
    assert [journal.record(n).state for n in ("a", "slow", "broken", "last")] == [DONE, PENDING, FAILED, PENDING]
    assert "last" not in ran
    assert any("slow: left unfinished" in line for line in lines)


def test_a_resumed_run_skips_done_steps_and_runs_their_dependents(tmp_path):
    path = tmp_path / "j.json"
    calls = []
    steps = [Step(n, "", (lambda n=n: calls.append(n)), after=after)
             for n, after in (("a", None), ("b", ("a",)), ("c", ("a",)), ("d", EVERY_EARLIER))]
    journal = Journal.load(path)
    for name in ("a", "b"):
        journal.start(name)
        journal.finish(name)
    run_steps(steps, Journal.load(path), lambda _: None, log_hint="log")
    assert sorted(calls) == ["c", "d"] and calls[-1] == "d"


@pytest.mark.parametrize("profile", ["trixie-epoxy", "bookworm-zed", "xenial-newton"])
def test_every_profiles_steps_have_valid_prerequisites(profile):
    steps = first_boot_steps(SimpleNamespace(profile=load_profile(profile)))
    needs = prerequisites(steps)
    # The servers start only after everything before them; cloud ready only after all.
    assert needs["services"] == {s.name for s in steps[:[s.name for s in steps].index("services")]}
    assert needs["services-up"] >= {"agents", "image", "network", "external", "keypair", "quotas"}
    assert "agents-alive" in needs["network"], "the tenant network is made once the agents are alive"


def test_a_roles_steps_are_its_data_in_its_order():
    from appliance.roles import profile_for_role

    compute = profile_for_role(load_profile("trixie-epoxy"), "compute")
    steps = first_boot_steps(SimpleNamespace(profile=compute))
    assert [s.name for s in steps] == list(compute.steps)
    needs = prerequisites(steps)
    assert needs["node-services"] == {"node-chassis", "instance-ids"} and needs["node-up"] == {"node-services"}
    # None of the controller's: no secrets, CA, databases, servers or cloud resources.
    assert not {"secrets", "certificates", "configs", "mariadb", "keystone", "services", "network"} & set(needs)


def test_a_role_naming_a_step_nobody_has_is_refused_naming_it():
    import dataclasses

    profile = dataclasses.replace(load_profile("trixie-epoxy"), steps=("host", "fly"))
    with pytest.raises(ApplianceError, match="profile trixie-epoxy: no first-boot step 'fly' \\(a role names steps "
                                             "of: host, secrets"):
        first_boot_steps(SimpleNamespace(profile=profile))


def _documented_after() -> dict[str, str]:
    """docs/operations.md's step table: step -> its "after" cell."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    table = text[text.index("| step | after |"):].split("\n\n")[0].splitlines()[2:]
    rows = {}
    for line in table:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1]
    return rows


def _after_cell(step: Step) -> str:
    if step.after is None:
        return ""
    if step.after == EVERY_EARLIER:
        return "every step above"
    return ", ".join(f"`{name}`" for name in step.after)


def test_the_operators_step_table_says_what_each_step_waits_for():
    documented = _documented_after()
    steps = {}
    for profile in ("trixie-epoxy", "bookworm-zed"):
        listed = first_boot_steps(SimpleNamespace(profile=load_profile(profile)))
        for step in listed:
            steps.setdefault(step.name, step)
    assert set(documented) == set(steps)
    assert {name: _after_cell(step) for name, step in steps.items()} == documented
