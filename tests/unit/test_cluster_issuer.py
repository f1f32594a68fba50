"""The cloud side of a join on the controller (appliance/cluster/issuer.py) over a recording
rabbitmqctl and a recording Keystone: the commands and calls in order, a "done already?"
before each change, the password only ever on stdin, and a failure half-way undoing what
that attempt made and nothing that was there before it."""

import json

import pytest

from appliance.cluster.changes import Change, apply
from appliance.cluster.issuer import ControllerIssuer, Keystone, RabbitMQ
from appliance.cluster.rabbitmq import node_permissions
from appliance.errors import ApplianceError

PASSWORD = "Rabbit-pass-0123"
PERMS = node_permissions("c2")
P, T = PERMS["permissions"], PERMS["topic_permissions"]
SET_PERMS = ["rabbitmqctl", "set_permissions", "-p", "/", "node-c2", P["configure"], P["write"], P["read"]]
SET_TOPIC = ["rabbitmqctl", "set_topic_permissions", "-p", "/", "node-c2", "nova", T["write"], T["read"]]


class FakeCtl:
    """rabbitmqctl over a little broker state; ``fail``: the subcommand that exits non-zero."""

    def __init__(self, users=(), perms=None, topic=None, fail=None):
        self.users = {u: "old" for u in users}
        self.perms, self.topic = dict(perms or {}), dict(topic or {})
        self.fail, self.calls = fail, []

    def __call__(self, argv, stdin):
        self.calls.append((argv, stdin))
        args = [a for a in argv[1:] if not a.startswith("--")]
        command, rest = args[0], args[1:]
        if command == self.fail:
            raise ApplianceError(f"rabbitmqctl {command} exited 70: failed")
        if command == "list_users":
            return json.dumps([{"user": u, "tags": []} for u in self.users])
        if command == "list_user_permissions":
            entry = self.perms.get(rest[0])
            return json.dumps([{"vhost": "/", **entry}] if entry else [])
        if command == "list_user_topic_permissions":
            entry = self.topic.get(rest[0])
            return json.dumps([{"vhost": "/", **entry}] if entry else [])
        if command in ("add_user", "change_password"):
            self.users[rest[0]] = stdin.strip()
        elif command == "delete_user":
            self.users.pop(rest[0])
            self.perms.pop(rest[0], None)
            self.topic.pop(rest[0], None)
        elif command == "set_permissions":
            self.perms[rest[2]] = dict(zip(("configure", "write", "read"), rest[3:]))
        elif command == "clear_permissions":
            self.perms.pop(rest[2], None)
        elif command == "set_topic_permissions":
            self.topic[rest[2]] = dict(zip(("exchange", "write", "read"), rest[3:]))
        elif command == "clear_topic_permissions":
            self.topic.pop(rest[2], None)
        return ""

    def changed(self):
        """The commands that changed something (every one but the quiet listings), with stdin."""
        return [(argv, stdin) for argv, stdin in self.calls if argv[1] != "--quiet"]


HAS_PERMS = {"node-c2": {k: P[k] for k in ("configure", "write", "read")}}
HAS_TOPIC = {"node-c2": {k: T[k] for k in ("exchange", "write", "read")}}
USER, PERMISSIONS, TOPIC = ("RabbitMQ user node-c2", "RabbitMQ permissions of node-c2",
                            "RabbitMQ topic permissions of node-c2 on nova")
ADD = (["rabbitmqctl", "add_user", "node-c2"], PASSWORD + "\n")
CHANGE = (["rabbitmqctl", "change_password", "node-c2"], PASSWORD + "\n")
# One row per state the broker may be in: (label, broker, the changing commands with their
# stdin, what this attempt made and would undo).
RABBITMQ = [
    ("a fresh node", FakeCtl(), [ADD, (SET_PERMS, None), (SET_TOPIC, None)], [USER, PERMISSIONS, TOPIC]),
    ("the user there, permissions not", FakeCtl(users=["node-c2"]), [CHANGE, (SET_PERMS, None), (SET_TOPIC, None)],
     [PERMISSIONS, TOPIC]),
    ("all done already: only the password is set anew", FakeCtl(users=["node-c2"], perms=HAS_PERMS, topic=HAS_TOPIC),
     [CHANGE], []),
    ("permissions wider than decided are set back",
     FakeCtl(users=["node-c2"], perms={"node-c2": {"configure": ".*", "write": ".*", "read": ".*"}}, topic=HAS_TOPIC),
     [CHANGE, (SET_PERMS, None)], [PERMISSIONS]),
]


@pytest.mark.parametrize("label,ctl,changed,made", RABBITMQ, ids=[r[0] for r in RABBITMQ])
def test_a_nodes_rabbitmq_user(label, ctl, changed, made):
    assert apply(RabbitMQ(ctl).user_changes("node-c2", PASSWORD, "c2")) == made
    assert ctl.changed() == changed
    assert ctl.users["node-c2"] == PASSWORD
    assert ctl.perms["node-c2"] == HAS_PERMS["node-c2"] and ctl.topic["node-c2"] == HAS_TOPIC["node-c2"]
    # Each change asked first; JSON, quietly.
    asked = [argv for argv, _ in ctl.calls if argv[1] == "--quiet"]
    assert [a[2] for a in asked] == ["list_users", "list_user_permissions", "list_user_topic_permissions"]
    assert all(a[1] == "--quiet" and a[-1] == "--formatter=json" for a in asked)
    assert not any(PASSWORD in " ".join(argv) for argv, _ in ctl.calls)


# One row per step a RabbitMQ user's making fails at: (label, broker, failing subcommand,
# the undo commands, whether the user is left).
RABBITMQ_FAILURES = [
    ("topic permissions: both made before are undone", [], "set_topic_permissions",
     [["rabbitmqctl", "clear_permissions", "-p", "/", "node-c2"], ["rabbitmqctl", "delete_user", "node-c2"]], False),
    ("permissions: the user made before is deleted", [], "set_permissions",
     [["rabbitmqctl", "delete_user", "node-c2"]], False),
    ("the user itself: nothing to undo", [], "add_user", [], False),
    ("a user that was there is kept", ["node-c2"], "set_permissions", [], True),
]


@pytest.mark.parametrize("label,users,fail,undone,kept", RABBITMQ_FAILURES, ids=[r[0] for r in RABBITMQ_FAILURES])
def test_a_rabbitmq_user_is_made_whole_or_not_at_all(label, users, fail, undone, kept):
    ctl = FakeCtl(users=users, fail=fail)
    with pytest.raises(ApplianceError, match=f"rabbitmqctl {fail} exited 70"):
        apply(RabbitMQ(ctl).user_changes("node-c2", PASSWORD, "c2"))
    failed_at = next(i for i, (argv, _) in enumerate(ctl.calls) if argv[1] == fail)
    assert [argv for argv, _ in ctl.calls[failed_at + 1:]] == undone
    assert ("node-c2" in ctl.users) is kept and "node-c2" not in ctl.perms and "node-c2" not in ctl.topic


@pytest.mark.parametrize("users,deleted", [(["node-c2"], True), ([], False)], ids=["there", "gone already"])
def test_removing_a_rabbitmq_user(users, deleted):
    ctl = FakeCtl(users=users)
    RabbitMQ(ctl).delete_user("node-c2")
    assert (["rabbitmqctl", "delete_user", "node-c2"] in [argv for argv, _ in ctl.calls]) is deleted
    assert "node-c2" not in ctl.users


def test_rabbitmqctl_output_that_is_not_json_is_refused():
    with pytest.raises(ApplianceError, match="rabbitmqctl list_users: its answer is not JSON"):
        RabbitMQ(lambda argv, stdin: "[oops").users()


class FakeIdentity:
    """openstacksdk's identity proxy over a little Keystone; ``fail``: the call that raises."""

    def __init__(self, users=(), roles=(), project=True, role=True, fail=None):
        self.users = {u: {"password": "old"} for u in users}
        self.assigned = set(roles)
        self.project = {"service": type("P", (), {"id": "p-service"})()} if project else {}
        self.role = {"service": "r-service"} if role else {}
        self.fail, self.calls = fail, []

    def _call(self, name, *args):
        self.calls.append(name)
        if name == self.fail:
            raise RuntimeError(f"{name} failed")

    def find_project(self, name, domain_id):
        self._call("find_project")
        return self.project.get(name)

    def find_role(self, name):
        self._call("find_role")
        return self.role.get(name)

    def find_user(self, name, domain_id):
        assert domain_id == "default"
        return name if name in self.users else None

    def create_user(self, *, name, password, domain_id, default_project_id):
        self._call("create_user")
        assert (domain_id, default_project_id) == ("default", "p-service")
        self.users[name] = {"password": password}

    def update_user(self, user, *, password):
        self._call("update_user")
        self.users[user]["password"] = password

    def delete_user(self, user, ignore_missing):
        self._call("delete_user")
        self.users.pop(user)
        self.assigned.discard(user)

    def validate_user_has_project_role(self, project, user, role):
        return (project.id, role) == ("p-service", "r-service") and user in self.assigned

    def assign_project_role_to_user(self, project, user, role):
        self._call("assign_project_role_to_user")
        assert (project.id, role) == ("p-service", "r-service")
        self.assigned.add(user)

    def unassign_project_role_from_user(self, project, user, role):
        self._call("unassign_project_role_from_user")
        self.assigned.discard(user)


def keystone(identity):
    return Keystone(type("Conn", (), {"identity": identity})())


# One row per state of Keystone: (label, identity, the changing calls).
KEYSTONE = [
    ("a fresh node", FakeIdentity(), ["create_user", "assign_project_role_to_user"]),
    ("the user there without its role", FakeIdentity(users=["node-c2"]),
     ["update_user", "assign_project_role_to_user"]),
    ("all done already: only the password is set anew", FakeIdentity(users=["node-c2"], roles=["node-c2"]),
     ["update_user"]),
]


@pytest.mark.parametrize("label,identity,calls", KEYSTONE, ids=[r[0] for r in KEYSTONE])
def test_a_nodes_keystone_user(label, identity, calls):
    apply(keystone(identity).user_changes("node-c2", "Keystone-pass-0123"))
    assert [c for c in identity.calls if not c.startswith("find_")] == calls
    assert identity.users["node-c2"]["password"] == "Keystone-pass-0123" and identity.assigned == {"node-c2"}


# One row per way the Keystone side fails: (label, identity, message, the calls after it).
KEYSTONE_FAILURES = [
    ("the role: the user made before is deleted", FakeIdentity(fail="assign_project_role_to_user"),
     "assign_project_role_to_user failed", ["delete_user"]),
    ("a user that was there is kept", FakeIdentity(users=["node-c2"], fail="assign_project_role_to_user"),
     "assign_project_role_to_user failed", []),
    ("no project service: nothing made", FakeIdentity(project=False),
     "Keystone has no project 'service'; the controller's first boot makes it", None),
    ("no role service: nothing made", FakeIdentity(role=False), "Keystone has no role 'service'", None),
]


@pytest.mark.parametrize("label,identity,message,after", KEYSTONE_FAILURES, ids=[r[0] for r in KEYSTONE_FAILURES])
def test_a_keystone_user_is_made_whole_or_not_at_all(label, identity, message, after):
    had = set(identity.users)
    with pytest.raises((ApplianceError, RuntimeError), match=message):
        apply(keystone(identity).user_changes("node-c2", "Keystone-pass-0123"))
    assert set(identity.users) == had and not identity.assigned
    if after is not None:
        assert identity.calls[identity.calls.index(identity.fail) + 1:] == after


def test_removing_a_keystone_user():
    identity = FakeIdentity(users=["node-c2"], roles=["node-c2"])
    keystone(identity).delete_user("node-c2")
    keystone(identity).delete_user("node-c2")  # gone already: no error, nothing called
    assert identity.calls == ["delete_user"] and not identity.users


class FakeAccess:
    def __init__(self, refuse=None):
        self.calls, self.refuse = [], refuse

    def ready(self):
        self.calls.append("ready")
        if self.refuse:
            raise ApplianceError(self.refuse)

    def allow(self, node, address, overlay_ip):
        self.ready()
        self.calls.append(("allow", node, address, overlay_ip))


def test_the_issuer_makes_both_users_and_lets_a_node_in_through_its_access():
    ctl, identity, access = FakeCtl(), FakeIdentity(), FakeAccess()
    issuer = ControllerIssuer(rabbitmq=RabbitMQ(ctl), keystone=lambda: keystone(identity), access=access)
    issuer.create_rabbitmq_user("node-c2", PASSWORD, "c2")
    issuer.create_keystone_user("node-c2", "Keystone-pass-0123")
    assert "node-c2" in ctl.users and "node-c2" in identity.users
    issuer.ready()
    issuer.allow_node("c2", "10.254.0.11", "10.254.1.11")
    assert access.calls == ["ready", "ready", ("allow", "c2", "10.254.0.11", "10.254.1.11")]
    refusing = ControllerIssuer(rabbitmq=RabbitMQ(ctl), keystone=lambda: keystone(identity),
                                access=FakeAccess("cannot let a node in"))
    for call in (refusing.ready, lambda: refusing.allow_node("c2", "10.254.0.11", "10.254.1.11")):
        with pytest.raises(ApplianceError, match="cannot let a node in"):
            call()
    issuer.delete_rabbitmq_user("node-c2")
    issuer.delete_keystone_user("node-c2")
    assert "node-c2" not in ctl.users and "node-c2" not in identity.users


def test_keystone_is_reached_only_when_first_needed():
    connected = []
    issuer = ControllerIssuer(rabbitmq=RabbitMQ(FakeCtl()), keystone=lambda: connected.append(1) or
                              keystone(FakeIdentity()), access=FakeAccess())
    issuer.create_rabbitmq_user("node-c2", PASSWORD, "c2")
    assert connected == []
    issuer.create_keystone_user("node-c2", "Keystone-pass-0123")
    issuer.delete_keystone_user("node-c2")
    assert connected == [1]


def test_an_undo_that_fails_is_logged_and_the_failure_raised(caplog):
    def boom():
        raise RuntimeError("secret-looking detail")

    def fail():
        raise ValueError("the change failed")

    with pytest.raises(ValueError, match="the change failed"):
        apply([Change("first", done=lambda: False, make=lambda: None, undo=boom),
               Change("second", done=lambda: False, make=fail, undo=lambda: None)])
    assert "could not undo first after a failed join (RuntimeError)" in caplog.text
    assert "secret-looking detail" not in caplog.text
