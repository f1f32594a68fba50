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
from .site_checks import validate_site


def load_site(path: Path | None, profile: Profile) -> SiteConfig:
    """Read and validate a site config for ``profile``; ``None`` means the profile's defaults."""
    defaults = dict(profile.site_defaults)
    if path is None:
        return from_mapping(SiteConfig, defaults, "profile site_defaults")
    site = from_mapping(SiteConfig, {**defaults, **load_yaml_mapping(path)}, str(path))
    validate_site(site, str(path), secret_names=set(secret_names(profile)), base_dir=path.parent)
    if site.provider_interface and not profile.network.provider_interface:
        raise ConfigError(str(path), "provider_interface",
                          f"not offered with ML2/{profile.network.backend} (profile {profile.name}); "
                          "put the LAN on external.interface with external.mode provider instead")
    return site
