"""A profile as one role runs it: the controller all of it, a compute node a subset.

A profile's ``roles`` (data, checked by role_checks.py) say what a machine of each role other
than the controller runs of each service: which systemd units it starts, which files it
writes (and from which template, where the role's file differs), which declared ports it
listens on. ``profile_for_role`` turns that into an ordinary Profile, so rendering, the unit
list, the listener check and every other consumer of a profile work on a node unchanged and
no code asks which role it is in.

What no role but the controller has: databases, Keystone service users and catalog entries
(the controller creates them; a node receives only its own credentials at the join, see
docs/scale-out.md), the RPC gate of units it does not run, and the tenant quotas. What a role
runs at first boot is data too: its ``steps`` (names of agent/steps.py's catalogue), which
the role's Profile carries as ``Profile.steps``.
"""

from __future__ import annotations

import dataclasses

from .errors import ApplianceError
from .profiles import Profile, RoleService, Service


def profile_for_role(profile: Profile, name: str) -> Profile:
    """The profile as a machine of role ``name`` runs it; the controller's is ``profile``
    itself. ApplianceError (one line) for a role the profile does not have."""
    if name == Profile.CONTROLLER:
        return profile
    role = profile.roles.get(name)
    if role is None:
        raise ApplianceError(f"profile {profile.name} has no role {name!r} (roles: {', '.join(profile.role_names())})")
    wanted = {part.name: part for part in role.services}
    # The profile's order, not the role's: services start in the order they are listed.
    services = tuple(_subset(svc, wanted[svc.name]) for svc in profile.services if svc.name in wanted)
    units = {u for svc in services for u in svc.units}
    gate = profile.rpc_gate
    if gate is not None:
        kept = tuple(u for u in gate.units if u in units)
        gate = dataclasses.replace(gate, units=kept) if kept else None
    return dataclasses.replace(profile, services=services, rpc_gate=gate, tenant_quota=None, roles={},
                               steps=role.steps)


def _subset(svc: Service, part: RoleService) -> Service:
    files = svc.files if part.files is None else tuple(f for f in svc.files if f.path in part.files)
    files = tuple(dataclasses.replace(f, template=part.templates[f.path]) if f.path in part.templates else f
                  for f in files)
    return dataclasses.replace(
        svc,
        units=svc.units if part.units is None else tuple(u for u in svc.units if u in part.units),
        ports=svc.ports if part.ports is None else tuple(p for p in svc.ports if p.port in part.ports),
        files=files,
        databases=(), db_user="", service_user="", endpoint=None)

