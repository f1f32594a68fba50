"""What every first-boot step works with: paths, profile, site, facts and secrets.

The profile is the one this machine's role runs (roles.profile_for_role): a controller's is
the whole profile; a machine that joined another's cloud, or whose site config says it joins
(``join:``), runs the role a join gives (sitefile.JOIN_ROLE), whose steps, units and files its
role's data say. No step asks which role it is in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..cluster.node import NodeFiles
from ..credentials import load_secret_file
from ..errors import ApplianceError
from ..profiles import Profile, parse_profile
from ..render import HostFacts
from ..roles import profile_for_role
from ..schema import load_yaml_mapping
from ..site import SiteConfig
from ..sitefile import JOIN_ROLE, load_site
from .facts import load_facts
from .system import set_patience


@dataclass(frozen=True)
class Paths:
    profile: Path = Path("/usr/share/appliance/profile.yaml")
    images: Path = Path("/var/lib/appliance/images")
    config_dir: Path = Path("/etc/appliance")
    state_dir: Path = Path("/var/lib/appliance")
    # tmpfs: a lock (and its holder record) never survives a reboot.
    run_dir: Path = Path("/run/appliance")

    @property
    def site(self) -> Path:
        return self.config_dir / "appliance.yaml"

    @property
    def secrets(self) -> Path:
        return self.config_dir / "secrets.yaml"

    @property
    def facts(self) -> Path:
        return self.state_dir / "facts.json"

    @property
    def journal(self) -> Path:
        return self.state_dir / "firstboot.json"

    @property
    def done_marker(self) -> Path:
        """Exists once first boot finished; the unit's ConditionPathExists checks it."""
        return self.state_dir / "firstboot.done"

    @property
    def lock(self) -> Path:
        """Held (flock) by the one agent run allowed at a time; see lock.py."""
        return self.run_dir / "agent.lock"

    @property
    def private_key(self) -> Path:
        return self.config_dir / "lxckey"

    @classmethod
    def from_environment(cls) -> "Paths":
        """APPLIANCE_PROFILE may point at another profile file (tests, hand runs)."""
        profile = os.environ.get("APPLIANCE_PROFILE")
        return cls(profile=Path(profile)) if profile else cls()


def machine_role(paths: Paths) -> str:
    """The role this machine runs: the one a join gives once it joined (the join left
    node.yaml) or while its site config says ``join:``; else the controller's. What cannot be
    read says nothing here (a user but root cannot enter /etc/appliance, 0700): reading the
    site config for the run refuses it, naming why."""
    try:
        if NodeFiles(config_dir=paths.config_dir).credentials.exists():
            return JOIN_ROLE
        joins = paths.site.exists() and "join" in load_yaml_mapping(paths.site)
    except (ApplianceError, OSError):
        joins = False
    return JOIN_ROLE if joins else Profile.CONTROLLER


@dataclass
class AgentContext:
    paths: Paths
    profile: Profile  # as this machine's role runs it
    _site: SiteConfig | None = field(default=None, repr=False)
    role: str = Profile.CONTROLLER
    # The whole profile, roles and all, which the site config is checked against (its join:
    # needs the role it joins as); None: ``profile`` is the whole one.
    whole_profile: Profile | None = field(default=None, repr=False)

    @classmethod
    def load(cls, paths: Paths) -> "AgentContext":
        if not paths.profile.is_file():
            raise ApplianceError(f"{paths.profile} is missing; this image was not built by the appliance pipeline")
        profile = parse_profile(load_yaml_mapping(paths.profile), str(paths.profile))
        # A profile without the role: the site check refuses its join, naming the field.
        role = machine_role(paths) if JOIN_ROLE in profile.roles else Profile.CONTROLLER
        return cls(paths=paths, profile=profile_for_role(profile, role), role=role, whole_profile=profile)

    @property
    def site(self) -> SiteConfig:
        if self._site is None:
            path = self.paths.site if self.paths.site.exists() else None
            self._site = load_site(path, self.whole_profile or self.profile)
            set_patience(self._site.timeouts.scale)
        return self._site

    @property
    def active_profile(self) -> Profile:
        """The profile without the services the site switches off (``Profile.active``)."""
        return self.profile.active(self.site)

    @property
    def facts(self) -> HostFacts:
        facts = load_facts(self.paths.facts)
        if facts is None:
            raise ApplianceError("host facts are not recorded yet (the host step has not run)")
        return facts

    @property
    def secrets(self) -> dict[str, str]:
        values = load_secret_file(self.paths.secrets)
        if not values:
            raise ApplianceError(f"{self.paths.secrets} is missing (the secrets step has not run)")
        return values

    @property
    def controller(self) -> str:
        return self.facts.hostname

    def keystone_url(self, admin: bool = False) -> str:
        port = self.profile.identity.admin_port if admin else self.profile.identity.public_port
        return f"http://{self.controller}:{port}/{self.profile.identity.api_version}"
