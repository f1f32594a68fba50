"""The checks of a profile's ``roles`` (and of its ``steps``), which profiles.parse_profile
runs. Apart from roles.py, which imports profiles.py to turn a role into a Profile: these
checks need only the profile's data, so profiles.py can call them without an import circle.
"""

from __future__ import annotations

from .errors import ConfigError

# The controller's role: the whole profile (Profile.CONTROLLER).
CONTROLLER = "controller"


def check_roles(profile, source: str) -> None:
    """``profile``: a profiles.Profile, not imported (it imports this module). Each role
    names services of the profile once, and of each only units, file paths and
    ports that service has (``roles.profile_for_role`` relies on it), and its first-boot steps,
    each once (whether agent/steps.py has them is the agent's check: this module runs on the
    build host too). A profile's own ``steps`` are refused: the controller's are the agent's
    whole list. ConfigError naming the field."""
    if profile.steps is not None:
        raise ConfigError(source, "steps", "a profile's own steps are the controller's (the agent's whole list); "
                                           "only a role says which steps it runs")
    for role_name, role in profile.roles.items():
        where = f"roles.{role_name}"
        if role_name == CONTROLLER:
            raise ConfigError(source, where, "the controller's role is the whole profile; only other roles are declared")
        if not role_name.isidentifier() or not role_name.islower():
            raise ConfigError(source, where, "expected a lower-case word as the role's name")
        if not role.steps:
            raise ConfigError(source, f"{where}.steps", "expected the first-boot steps this role runs, in order")
        for i, step in enumerate(role.steps):
            if step in role.steps[:i]:
                raise ConfigError(source, f"{where}.steps[{i}]", f"step {step!r} is named twice")
        seen: set[str] = set()
        for i, part in enumerate(role.services):
            at = f"{where}.services[{i}]"
            if part.name in seen:
                raise ConfigError(source, f"{at}.name", f"service {part.name!r} is named twice")
            seen.add(part.name)
            if not profile.has_service(part.name):
                raise ConfigError(source, f"{at}.name", f"no service {part.name!r} in this profile")
            svc = profile.service(part.name)
            for kind, have in (("units", svc.units), ("files", tuple(f.path for f in svc.files)),
                               ("ports", tuple(p.port for p in svc.ports))):
                for j, item in enumerate(getattr(part, kind) or ()):
                    if item not in have:
                        raise ConfigError(source, f"{at}.{kind}[{j}]", f"service {svc.name} has no {item}")
            kept = part.files if part.files is not None else tuple(f.path for f in svc.files)
            for path in part.templates:
                if path not in kept:
                    raise ConfigError(source, f"{at}.templates", f"{path} is not a file this role writes")
