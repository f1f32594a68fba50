"""The cloud side of a join on the controller (joinservice.Issuer) and its removal
counterpart: a node's RabbitMQ user and its Keystone user, each ``node-<name>``.

- RabbitMQ, with ``rabbitmqctl`` (RabbitMQ's rabbitmqctl(8)): ``add_user NAME`` with the
  password on stdin, never on a command line (the agent logs every command line, and every
  local user can read them in /proc), then exactly the permissions rabbitmq.py decided,
  ``set_permissions`` and ``set_topic_permissions`` on vhost ``/``. Each change asks first
  whether it is done already (``list_users``, ``list_user_permissions``,
  ``list_user_topic_permissions``, JSON with ``--formatter=json``).
- Keystone, with openstacksdk as the controller's admin (as the agent's identity step): the
  user in domain Default with project ``service`` as its default, and role ``service`` on
  that project only (docs/scale-out.md, "What a node receives"), which the controller's own
  identity step made. Done already: ``find_user``, ``validate_user_has_project_role``.

Each user's changes are all made or none (changes.apply); a user there already keeps its
place and gets the new password. Removal deletes the user, and its permissions or role
assignments go with it (RabbitMQ's delete_user, Keystone's user deletion). The node-facing
listeners and their allow-list (``allow_node``) are a ``NodeAccess`` (listeners.py), whose
``ready()`` refuses before any invitation is recorded where a node could not be let in.

Errors: ApplianceError, one line, never a password.
"""

from __future__ import annotations

import json
from typing import Callable, Protocol

from ..errors import ApplianceError
from .changes import Change, apply
from .rabbitmq import EXCHANGE, VHOST, node_permissions

# (argv, stdin or None) -> stdout; raises ApplianceError when the command fails.
Run = Callable[[list[str], "str | None"], str]
CTL = "rabbitmqctl"
# Keystone's project and role of a node's user (made by the controller's identity step).
PROJECT = "service"
ROLE = "service"
DOMAIN = "default"
PERMISSION_KEYS = ("configure", "write", "read")
TOPIC_KEYS = ("exchange", "write", "read")


class RabbitMQ:
    """Node users in the controller's RabbitMQ, through ``run``."""

    def __init__(self, run: Run):
        self.run = run

    def _list(self, *args: str) -> list[dict]:
        out = self.run([CTL, "--quiet", *args, "--formatter=json"], None)
        # The JSON document starts at its first "[": anything before it is not ours to parse.
        start = out.find("[")
        try:
            data = json.loads(out[start:]) if start >= 0 else []
        except ValueError:
            raise ApplianceError(f"{CTL} {args[0]}: its answer is not JSON") from None
        return [entry for entry in data if isinstance(entry, dict)]

    def users(self) -> set[str]:
        return {entry.get("user") for entry in self._list("list_users")}

    def _has(self, command: str, user: str, wanted: dict, keys: tuple[str, ...]) -> bool:
        return any(entry.get("vhost") == VHOST and all(entry.get(k) == wanted[k] for k in keys)
                   for entry in self._list(command, user))

    def user_changes(self, user: str, password: str, node: str) -> list[Change]:
        """The user ``user`` of node ``node`` with ``password`` and rabbitmq.node_permissions."""
        wanted = node_permissions(node)
        perms, topic = wanted["permissions"], wanted["topic_permissions"]
        return [
            Change(f"RabbitMQ user {user}", done=lambda: user in self.users(),
                   make=lambda: self.run([CTL, "add_user", user], password + "\n"),
                   undo=lambda: self.run([CTL, "delete_user", user], None),
                   converge=lambda: self.run([CTL, "change_password", user], password + "\n")),
            Change(f"RabbitMQ permissions of {user}",
                   done=lambda: self._has("list_user_permissions", user, perms, PERMISSION_KEYS),
                   make=lambda: self.run([CTL, "set_permissions", "-p", VHOST, user,
                                          *(perms[k] for k in PERMISSION_KEYS)], None),
                   undo=lambda: self.run([CTL, "clear_permissions", "-p", VHOST, user], None)),
            Change(f"RabbitMQ topic permissions of {user} on {EXCHANGE}",
                   done=lambda: self._has("list_user_topic_permissions", user, topic, TOPIC_KEYS),
                   make=lambda: self.run([CTL, "set_topic_permissions", "-p", VHOST, user,
                                          *(topic[k] for k in TOPIC_KEYS)], None),
                   undo=lambda: self.run([CTL, "clear_topic_permissions", "-p", VHOST, user, EXCHANGE], None)),
        ]

    def delete_user(self, user: str) -> None:
        """Gone already is no error (a removal that failed half-way runs again)."""
        if user in self.users():
            self.run([CTL, "delete_user", user], None)


class Keystone:
    """Node users in Keystone, through an openstacksdk connection as the admin."""

    def __init__(self, conn):
        self.identity = conn.identity

    def _find(self, user: str):
        return self.identity.find_user(user, domain_id=DOMAIN)

    def _need(self, found, what: str):
        if found is None:
            raise ApplianceError(f"Keystone has no {what}; the controller's first boot makes it (appliance run --again)")
        return found

    def user_changes(self, user: str, password: str) -> list[Change]:
        identity = self.identity
        project = self._need(identity.find_project(PROJECT, domain_id=DOMAIN), f"project {PROJECT!r}")
        role = self._need(identity.find_role(ROLE), f"role {ROLE!r}")
        return [
            Change(f"Keystone user {user}", done=lambda: self._find(user) is not None,
                   make=lambda: identity.create_user(name=user, password=password, domain_id=DOMAIN,
                                                     default_project_id=project.id),
                   undo=lambda: self.delete_user(user),
                   converge=lambda: identity.update_user(self._find(user), password=password)),
            Change(f"role {ROLE} of Keystone user {user} in project {PROJECT}",
                   done=lambda: bool(identity.validate_user_has_project_role(project, self._find(user), role)),
                   make=lambda: identity.assign_project_role_to_user(project, self._find(user), role),
                   undo=lambda: identity.unassign_project_role_from_user(project, self._find(user), role)),
        ]

    def delete_user(self, user: str) -> None:
        """Its role assignments go with it; gone already is no error."""
        found = self._find(user)
        if found is not None:
            self.identity.delete_user(found, ignore_missing=True)


class NodeAccess(Protocol):
    """The node-facing listeners and the allow-list in front of them (docs/scale-out.md,
    "Listeners")."""

    def ready(self) -> None:
        """Raise ApplianceError (one line) when a node cannot be let in."""

    def allow(self, node: str, address: str, overlay_ip: str) -> None: ...


class ControllerIssuer:
    """joinservice.Issuer on the controller, and the removal of what it made (the names
    enrol.CloudOps gives them). ``keystone``: called when Keystone is first needed, so a
    RabbitMQ failure does not wait on an API connection."""

    def __init__(self, *, rabbitmq: RabbitMQ, keystone: Callable[[], Keystone], access: NodeAccess):
        self.rabbitmq, self._keystone, self.access = rabbitmq, keystone, access
        self._connected: Keystone | None = None

    def keystone(self) -> Keystone:
        if self._connected is None:
            self._connected = self._keystone()
        return self._connected

    def ready(self) -> None:
        self.access.ready()

    def create_rabbitmq_user(self, user: str, password: str, node: str) -> None:
        apply(self.rabbitmq.user_changes(user, password, node))

    def create_keystone_user(self, user: str, password: str) -> None:
        apply(self.keystone().user_changes(user, password))

    def allow_node(self, node: str, address: str, overlay_ip: str) -> None:
        self.access.allow(node, address, overlay_ip)

    def delete_rabbitmq_user(self, user: str) -> None:
        self.rabbitmq.delete_user(user)

    def delete_keystone_user(self, user: str) -> None:
        self.keystone().delete_user(user)
