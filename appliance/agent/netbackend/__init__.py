"""Network backends: what differs on the appliance between ML2 mechanisms, one module each.

A profile names its backend (``network.backend``); every backend module offers the same
functions, so the first-boot agent never asks which one it has:

* ``choose_datapath() -> str``: the Open vSwitch datapath for this host ("" without OVS);
  called once, at the first boot's ``host`` step, and recorded in the host facts;
* ``host_bridge(facts) -> external.HostBridge``: how the external network's bridge is made;
* ``chassis_steps(ctx) -> list[Step]``: run after the configuration files are written and
  before the external network's host side (which may need the switch running);
* ``final_steps(ctx) -> list[Step]``: run last, once services and agents report up;
* ``AGENTS_BEFORE_NETWORKS``: the Neutron agents that must report alive before the tenant
  network is made (the ``agents-alive`` step waits for those of them the profile runs).
"""

from __future__ import annotations

from types import ModuleType

from ...profiles import Profile
from . import linuxbridge, ovn

BACKENDS: dict[str, ModuleType] = {"linuxbridge": linuxbridge, "ovn": ovn}


def backend_of(profile: Profile) -> ModuleType:
    """The module of ``profile.network.backend`` (the profile check refused unknown names)."""
    return BACKENDS[profile.network.backend]
