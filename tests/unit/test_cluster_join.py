"""`appliance join` on a new machine (appliance/cluster/commands.py), the host and the network
replaced by fakes: it redeems the token and then runs the first boot of the role a join
gives, and where the machine is not a fresh one it refuses in one line before anything is
sent or run."""

import io
import json
import sys

import pytest

from appliance.agent.context import Paths
from appliance.agent.journal import Journal
from appliance.agent.steps import first_boot_steps
from appliance.cluster import commands
from appliance.cluster.bundle import NodeBundle
from appliance.cluster.errors import ClusterError
from appliance.cluster.node import NodeFiles, write_bundle, write_key
from appliance.cluster.token import JoinToken, new_secret
from appliance.errors import ApplianceError
from pipeline.profiles import resolved_profile_yaml

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
BUNDLE = NodeBundle(node="c2", controller="c1", controller_ip="10.254.0.10", region="RegionOne",
                    keystone_url="http://c1:5000/v3", rabbitmq_user="node-c2", rabbitmq_password="Rabbit-pass-0123",
                    keystone_user="node-c2", keystone_password="Keystone-pass-0123",
                    metadata_secret="Metadata-secret-0123", ca_pem=PEM, certificate_pem=PEM)


def token(expires=4_000_000_000):
    return JoinToken(name="c2", host="10.254.0.10", port=9777, expires=expires, ca_sha256="b" * 64,
                     secret=new_secret())


@pytest.fixture
def machine(tmp_path):
    """A fresh machine's paths under tmp_path."""
    paths = Paths(profile=tmp_path / "profile.yaml", images=tmp_path, config_dir=tmp_path / "etc",
                  state_dir=tmp_path / "state", run_dir=tmp_path / "run")
    paths.profile.write_text(resolved_profile_yaml("trixie-epoxy"))
    paths.config_dir.mkdir()
    paths.state_dir.mkdir()
    return paths


class Host:
    """What `appliance join` does to the host and the network, recorded."""

    def __init__(self):
        self.done = []

    def check_host(self, ctx):
        self.done.append(("preflight", ctx.role))

    def overlay_ip(self, ctx, name):
        self.done.append(("overlay", name))
        return "10.254.1.11"

    def redeem(self, token, *, files, overlay_ip):
        self.done.append(("redeem", token.name, overlay_ip))
        write_key(files, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        write_bundle(files, BUNDLE)
        return BUNDLE

    def first_boot(self, ctx, journal, say):
        self.done.append(("first boot", ctx.role, tuple(s.name for s in first_boot_steps(ctx))))


def join(paths, host, text, *, token_arg=None):
    token_file = paths.state_dir / "token"
    token_file.write_text(text)
    said = []
    code = commands.join(paths, token_arg=token_arg, token_file=token_file, say=said.append, redeem=host.redeem,
                         first_boot=host.first_boot, check_host=host.check_host, overlay_ip=host.overlay_ip)
    return code, said


def test_a_fresh_machine_redeems_then_boots_as_a_compute_node(machine):
    host = Host()
    code, said = join(machine, host, token().text())
    assert code == 0 and machine.done_marker.exists()
    assert host.done == [("preflight", "controller"), ("overlay", "c2"), ("redeem", "c2", "10.254.1.11"),
                         ("first boot", "compute", ("host", "bundle", "node-configs", "instance-ids", "node-chassis",
                                                    "node-services", "node-up"))]
    assert said == ["joined the cloud of c1 (10.254.0.10) as node c2; its first boot follows"]


def _joined(paths):
    write_bundle(NodeFiles(config_dir=paths.config_dir), BUNDLE)


def _began(paths):
    journal = Journal.load(paths.journal)
    journal.start("host")


def _site_joins(paths):
    paths.site.write_text(f"join: {{token: '{token().text()}'}}\n")


def _finished(paths):
    paths.done_marker.touch()


# One row per machine that is not a fresh one, or token that will not do: (label, setup,
# token text, kind, the one line's words). Nothing is redeemed or run for any.
REFUSED = [
    ("joined already", _joined, None, "used", "this machine joined already, as node c2 of c1's cloud; `appliance "
                                             "run` resumes its first boot"),
    ("first boot began as a controller", _began, None, "role", "first boot began on this machine (step host) as the "
                                                               "controller of a cloud of its own"),
    ("its site config joins with its own token", _site_joins, None, "role", "joins with a token of its own (join:)"),
    ("first boot finished", _finished, None, "role", "finished its first boot as the controller"),
    ("expired", None, token(expires=1_000_000).text(), "expired", "expired at 1970-01-12"),
    ("not a token", None, "hello", "malformed", "not a join token"),
]


@pytest.mark.parametrize("label,setup,text,kind,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_machine_that_is_not_fresh_is_refused_before_anything_is_sent(machine, label, setup, text, kind, words):
    if setup is not None:
        setup(machine)
    host = Host()
    with pytest.raises(ClusterError) as caught:
        join(machine, host, text or token().text())
    assert caught.value.kind == kind and words in str(caught.value) and "\n" not in str(caught.value)
    assert not [d for d in host.done if d[0] in ("redeem", "first boot")]


def test_the_token_on_the_command_line_is_refused(machine):
    with pytest.raises(ApplianceError, match="does not go on the command line"):
        join(machine, Host(), token().text(), token_arg="aj1.x")


@pytest.mark.parametrize("verb", [["add-node", "c9"], ["remove-node", "c9"], ["join-service"]])
def test_a_node_sends_the_controllers_verbs_to_its_controller(machine, monkeypatch, capsys, verb):
    from appliance import cli

    _joined(machine)
    machine.done_marker.touch()
    machine.facts.write_text(json.dumps({"hostname": "c2", "management_ip": "10.254.0.11",
                                         "overlay_ip": "10.254.0.11"}))
    monkeypatch.setattr(Paths, "from_environment", classmethod(lambda cls: machine))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert cli.main(verb) == 2
    err = capsys.readouterr().err
    assert err == (f"appliance {verb[0]}: this machine is a compute node, not a controller: nodes are added and "
                   "removed on the controller of its cloud\n")
