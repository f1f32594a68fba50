"""The one site config loader, used alike by ``invoke render``, the first-boot agent and the
VM harness.

``load_site(path, profile)`` layers the file's values over the profile's ``site_defaults``
(top-level fields) over the model's built-in defaults, checks types (``schema``), then
meaning (``site_checks``), with the profile's secret names as the only secrets a site may fix.
Errors: ConfigError naming the file, the field and what was expected.
"""

from __future__ import annotations

from pathlib import Path

from .credentials import secret_names
from .errors import ConfigError
from .profiles import Profile
from .schema import from_mapping, load_yaml_mapping
from .site import SiteConfig
from .site_checks import CONTROLLER_ONLY, validate_site

# The role a site's `join` turns first boot into.
JOIN_ROLE = "compute"


def load_site(path: Path | None, profile: Profile) -> SiteConfig:
    """Read and validate a site config for ``profile``; ``None`` means the profile's defaults."""
    defaults = dict(profile.site_defaults)
    if path is None:
        return from_mapping(SiteConfig, defaults, "profile site_defaults")
    given = load_yaml_mapping(path)
    site = from_mapping(SiteConfig, {**defaults, **given}, str(path))
    if site.join is not None:
        _check_join(given, profile, str(path))
    validate_site(site, str(path), secret_names=set(secret_names(profile)), base_dir=path.parent)
    if site.provider_interface and not profile.network.provider_interface:
        raise ConfigError(str(path), "provider_interface",
                          f"not offered with ML2/{profile.network.backend} (profile {profile.name}); "
                          "put the LAN on external.interface with external.mode provider instead")
    return site


def _check_join(given: dict, profile: Profile, source: str) -> None:
    """A site that joins a cloud: the profile offers the compute role, and the file says
    nothing only a controller's site config says (``given``: the file's own keys)."""
    if JOIN_ROLE not in profile.roles:
        raise ConfigError(source, "join", f"profile {profile.name} has no {JOIN_ROLE} role: its appliances cannot "
                                          "join another's cloud (scale-out needs ML2/OVN, e.g. trixie-epoxy)")
    for key in CONTROLLER_ONLY:
        if key in given:
            raise ConfigError(source, key, "only a controller's site config says this; a node that joins takes "
                                           "the cloud's from the controller (leave it out, or drop join)")
