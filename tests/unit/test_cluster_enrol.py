"""Enrolment and removal over fake CA and cloud: the order of things, and one line for every
refusal. The `appliance` verbs as a user types them: parsed, and refused before any state
or network is touched where the input alone is wrong."""

import io
import re
import sys

import pytest

from appliance.cluster import enrol
from appliance.cluster.errors import ClusterError
from appliance.cluster.registry import NodeRegistry
from appliance.cluster.token import JoinToken, ca_fingerprint, new_secret, parse_token
from appliance.errors import ApplianceError
from pipeline.profiles import load_profile

NOW = 1_800_000_000
CA_DER = b"the controller CA, DER"


class FakeCA:
    asked = 0

    def ca_sha256(self):
        FakeCA.asked += 1
        return ca_fingerprint(CA_DER)


@pytest.fixture
def registry(tmp_path):
    return NodeRegistry(tmp_path / "cluster")


@pytest.fixture(scope="module")
def epoxy():
    return load_profile("trixie-epoxy")


def add(registry, profile, name="c2", ca_of=FakeCA):
    return enrol.add_node(name, profile=profile, registry=registry, controller="c1", host="10.254.0.10",
                          ca_of=ca_of, now=NOW, lifetime=3600)


def test_add_node_gives_a_token_that_pins_the_ca(registry, epoxy):
    token = parse_token(add(registry, epoxy).text())
    assert (token.name, token.host, token.port, token.expires) == ("c2", "10.254.0.10", 9777, NOW + 3600)
    assert enrol.join_port(epoxy) == 9777  # the join service's declared port
    assert token.ca_sha256 == ca_fingerprint(CA_DER)
    assert registry.get("c2").state == "invited"


def test_name_refusals_come_before_the_ca_is_asked(registry, epoxy):
    add(registry, epoxy)
    asked = FakeCA.asked
    for name, kind in (("c1", "clash"), ("c2", "clash"), ("-x", "name")):
        with pytest.raises(ClusterError) as caught:
            add(registry, epoxy, name=name)
        assert caught.value.kind == kind
    assert FakeCA.asked == asked


def test_without_the_ca_nothing_is_recorded(registry, epoxy, tmp_path):
    from appliance.cluster.ca import controller_ca, tls_paths

    with pytest.raises(ClusterError, match="cannot sign node certificates: No such file") as caught:
        add(registry, epoxy, ca_of=lambda: controller_ca(tls_paths(tmp_path / "etc", tmp_path / "var")))
    assert caught.value.kind == "ca" and not registry.has_nodes()


def test_the_token_pins_the_real_ca(registry, epoxy, tmp_path):
    from appliance import tls
    from appliance.cluster.ca import controller_ca, tls_paths

    paths = tls_paths(tmp_path / "etc", tmp_path / "var")
    tls.ensure_certificates(paths, "c1", "10.254.0.10")
    token = parse_token(add(registry, epoxy, ca_of=lambda: controller_ca(paths)).text())
    assert token.ca_sha256 == tls.fingerprint(paths.ca_cert.read_bytes()).replace(":", "").lower()


def test_a_profile_without_a_compute_role_takes_no_nodes(registry):
    with pytest.raises(ClusterError, match="profile bookworm-zed has no compute role") as caught:
        add(registry, load_profile("bookworm-zed"))
    assert caught.value.kind == "role"


def test_a_profile_without_a_join_service_takes_no_nodes(registry):
    from appliance.profile_delta import resolve_profile_file
    from appliance.profiles import parse_profile
    from pipeline.profiles import profile_path

    data = resolve_profile_file(profile_path("trixie-epoxy"))
    data["services"] = [s for s in data["services"] if s["name"] != enrol.JOIN_SERVICE]
    with pytest.raises(ClusterError, match="profile t declares no 'join' service with a port") as caught:
        add(registry, parse_profile({**data, "name": "t"}, "t.yaml"))
    assert caught.value.kind == "role" and not registry.has_nodes()


@pytest.mark.parametrize("text,seconds", [("1h", 3600), ("30m", 1800), ("1d", 86400), ("600", 600), (" 5m ", 300)])
def test_lifetimes(text, seconds):
    assert enrol.parse_lifetime(text) == seconds


@pytest.mark.parametrize("text,message", [("2w", "expected a duration like 30m"), ("1.5h", "expected a duration"),
                                          ("", "expected a duration"), ("4m", "expected 5m to 1d, got 4m (240 s)"),
                                          ("2d", "expected 5m to 1d")])
def test_bad_lifetimes(text, message):
    with pytest.raises(ApplianceError, match=re.escape(message)):
        enrol.parse_lifetime(text)


def token(expires=NOW + 3600):
    return JoinToken(name="c2", host="10.254.0.10", port=9777, expires=expires, ca_sha256="b" * 64, secret=new_secret())


def test_the_token_is_read_from_a_file_or_stdin(tmp_path):
    path = tmp_path / "t"
    path.write_text(token().text() + "\n")
    assert enrol.read_token(token_file=path, stdin_text=lambda: "").name == "c2"
    assert enrol.read_token(token_file=None, stdin_text=lambda: token().text()).name == "c2"
    with pytest.raises(ClusterError, match="more than 4096 characters on stdin"):
        enrol.read_token(token_file=None, stdin_text=lambda: "x" * 5000)
    with pytest.raises(ApplianceError, match="expected a regular file, got a directory"):
        enrol.read_token(token_file=tmp_path, stdin_text=lambda: "")


JOINABLE = [
    ("expired", dict(now=NOW + 3600), "expired", "expired at 2027-01-15 09:00:00 UTC"),
    ("a controller already", dict(first_boot_done=True), "role", "finished its first boot as the controller"),
    ("no compute role", dict(profile="bookworm-zed"), "role", "has no compute role"),
]


@pytest.mark.parametrize("label,change,kind,message", JOINABLE, ids=[j[0] for j in JOINABLE])
def test_what_a_machine_checks_before_it_joins(epoxy, label, change, kind, message):
    args = dict(profile=epoxy, first_boot_done=False, now=NOW)
    args.update(change)
    if isinstance(args["profile"], str):
        args["profile"] = load_profile(args["profile"])
    with pytest.raises(ClusterError, match=message) as caught:
        enrol.check_joinable(token(), **args)
    assert caught.value.kind == kind


class FakeCloud:
    def __init__(self, instances=(), fail_at=None):
        self.instances, self.fail_at, self.calls = list(instances), fail_at, []

    def instances_on(self, host):
        return self.instances

    def __getattr__(self, name):
        def call(*args):
            if name == self.fail_at:
                raise ApplianceError(f"{name} failed")
            self.calls.append((name, *args))
        return call


def _joining(registry, epoxy):
    text = add(registry, epoxy).text()
    registry.redeem("c2", parse_token(text).secret, now=NOW + 1, address="10.254.0.11")


def test_removing_an_invitation_touches_no_cloud(registry, epoxy):
    add(registry, epoxy)
    lines, cloud = [], FakeCloud()
    enrol.remove_node("c2", registry=registry, cloud=cloud, force=False, now=NOW, say=lines.append)
    assert "invitation of node c2" in lines[0] and not registry.has_nodes()
    assert cloud.calls == [("close_node_listeners",), ("stop_join_service",)]


def test_listeners_close_with_the_last_member_the_join_service_with_the_last_invitation(registry, epoxy):
    _joining(registry, epoxy)
    add(registry, epoxy, name="c3")
    cloud = FakeCloud()
    enrol.remove_node("c2", registry=registry, cloud=cloud, force=False, now=NOW, say=lambda line: None)
    # No member left, but c3 may still redeem its token: the join service stays.
    assert [c[0] for c in cloud.calls][-1] == "close_node_listeners"
    cloud.calls.clear()
    text = add(registry, epoxy, name="c4").text()
    registry.redeem("c4", parse_token(text).secret, now=NOW + 1, address="10.254.0.12")
    enrol.remove_node("c3", registry=registry, cloud=cloud, force=False, now=NOW, say=lambda line: None)
    # c4 is a member: the listeners stay; no invitation is left: the join service stops.
    assert cloud.calls == [("stop_join_service",)]


def test_removal_is_refused_while_instances_live_there(registry, epoxy):
    _joining(registry, epoxy)
    cloud = FakeCloud(instances=[f"vm{i}" for i in range(7)])
    with pytest.raises(ClusterError, match="still hosts 7 instance.*vm4 and 2 more; delete them first, or give --force"):
        enrol.remove_node("c2", registry=registry, cloud=cloud, force=False, now=NOW, say=print)
    assert cloud.calls == [] and registry.get("c2").state == "joining"


def test_forced_removal_cleans_everything_then_forgets_the_node(registry, epoxy):
    _joining(registry, epoxy)
    cloud = FakeCloud(instances=["vm1"])
    enrol.remove_node("c2", registry=registry, cloud=cloud, force=True, now=NOW, say=lambda line: None)
    # Its instances first, then it is cut off (a node still running would register again).
    assert [c[0] for c in cloud.calls] == ["delete_instances_on", "forget_certificate", "delete_compute_service",
                                           "delete_resource_provider", "delete_network_agents",
                                           "delete_chassis", "delete_rabbitmq_user", "delete_keystone_user",
                                           "close_node_listeners", "stop_join_service"]
    assert ("delete_rabbitmq_user", "node-c2") in cloud.calls and not registry.has_nodes()


def test_a_failed_removal_keeps_the_node_to_run_again(registry, epoxy):
    _joining(registry, epoxy)
    with pytest.raises(ApplianceError, match="delete_chassis failed"):
        enrol.remove_node("c2", registry=registry, cloud=FakeCloud(fail_at="delete_chassis"), force=False, now=NOW, say=print)
    assert registry.get("c2").state == "joining"


# The verbs as typed: (label, argv, stdin, exit code, what stderr says).
def _valid():
    return token(expires=4_000_000_000).text()


COMMANDS = [
    ("join refuses a token argument", ["join", "aj1.x"], "", 2, "does not go on the command line"),
    ("join: malformed stdin", ["join"], "hello\n", 2, "not a join token: it does not start with 'aj1.'"),
    ("join: empty stdin", ["join"], "", 2, "not a join token: it is empty"),
    ("join: missing token file", ["join", "--token-file", "/nonexistent/t"], "", 2, "/nonexistent/t: file not found"),
    ("join: expired", ["join"], token(expires=1_000_000).text(), 2, "expired at 1970-01-12"),
    ("add-node: bad name", ["add-node", "C_2"], "", 2, "node name 'C_2' is not valid"),
    ("add-node: bad lifetime", ["add-node", "c2", "--expires", "2w"], "", 2, "--expires: expected a duration"),
    ("add-node: before first boot", ["add-node", "c2"], "", 2, "first boot has not completed"),
    ("add-node: no name", ["add-node"], "", 2, "the following arguments are required: name"),
    ("remove-node: bad name", ["remove-node", "c2!"], "", 2, "node name 'c2!' is not valid"),
    ("remove-node: unknown", ["remove-node", "c2"], "", 2, "no node 'c2' on this controller"),
    ("join-service: before first boot", ["join-service"], "", 2, "facts"),
]


@pytest.mark.parametrize("label,argv,stdin,rc,message", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_verbs_refuse_with_one_line(tmp_path, monkeypatch, capsys, label, argv, stdin, rc, message):
    from appliance import cli
    from appliance.agent.context import Paths

    from .joinharness import controller_paths

    # Every path of the appliance under tmp_path: nothing of this host's is read or written.
    paths = controller_paths(tmp_path, finished=False)
    monkeypatch.setattr(Paths, "from_environment", classmethod(lambda cls: paths))
    stdin = _valid() if stdin == "VALID" else stdin
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    out, err = capsys.readouterr()
    assert code == rc, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert message in err, err
    if not message.startswith("the following"):
        assert len(lines) == 1, err
    assert "Traceback" not in err and out == ""
    if stdin.strip():
        assert stdin.strip() not in err
    assert not (tmp_path / "state" / "cluster" / "nodes.json").exists()


@pytest.fixture
def appliance_paths(tmp_path, monkeypatch):
    """A finished controller's paths under tmp_path, as `appliance` sees them."""
    from appliance.agent.context import Paths

    from .joinharness import controller_paths

    paths = controller_paths(tmp_path)
    monkeypatch.setattr(Paths, "from_environment", classmethod(lambda cls: paths))
    return paths


def test_add_node_without_a_ca_says_so_and_records_nothing(appliance_paths, capsys):
    from appliance import cli

    assert cli.main(["add-node", "c2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("appliance add-node: the appliance CA (") and err.count("\n") == 1
    assert "cannot sign node certificates: No such file or directory; first boot's certificates step makes it" in err
    assert not NodeRegistry(appliance_paths.state_dir / "cluster").has_nodes()


def test_add_node_where_the_node_listeners_cannot_open_records_nothing(appliance_paths, capsys, monkeypatch):
    from appliance import cli, tls
    from appliance.cluster import listeners
    from appliance.cluster.ca import tls_paths

    tls.ensure_certificates(tls_paths(appliance_paths.config_dir, appliance_paths.state_dir), "c1", "10.254.0.10")
    monkeypatch.setattr(listeners.shutil, "which", lambda tool: None if tool == "ovn-sbctl" else f"/usr/sbin/{tool}")
    assert cli.main(["add-node", "c2"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "appliance add-node: this controller cannot let a node in: ovn-sbctl is not installed"
    assert not NodeRegistry(appliance_paths.state_dir / "cluster").has_nodes()


def test_add_node_records_the_invitation_and_starts_the_join_service(appliance_paths, capsys, monkeypatch):
    from appliance import cli, tls
    from appliance.agent import system
    from appliance.cluster import listeners
    from appliance.cluster.ca import tls_paths
    from appliance.cluster.token import parse_token

    tls.ensure_certificates(tls_paths(appliance_paths.config_dir, appliance_paths.state_dir), "c1", "10.254.0.10")
    monkeypatch.setattr(listeners.shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    started = []
    monkeypatch.setattr(system, "systemctl", lambda *args, **kw: started.append(args))
    assert cli.main(["add-node", "c2"]) == 0
    out, err = capsys.readouterr()
    token = parse_token(out.strip())
    assert (token.name, token.host, token.port) == ("c2", "10.254.0.10", 9777)
    assert started == [("enable", "--now", "appliance-join")]
    assert "join token for node c2 printed above: single use" in err and token.secret not in err
    assert NodeRegistry(appliance_paths.state_dir / "cluster").get("c2").state == "invited"


def test_remove_node_cancels_an_invitation(appliance_paths, capsys):
    from appliance import cli

    registry = NodeRegistry(appliance_paths.state_dir / "cluster")
    registry.invite("c2", controller="c1", now=NOW, lifetime=3600)
    assert cli.main(["remove-node", "c2"]) == 0
    assert "invitation of node c2 (valid until 2027-01-15 09:00:00 UTC) cancelled" in capsys.readouterr().out
    assert not registry.has_nodes()
