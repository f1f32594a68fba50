"""The appliance's own code: what ships in the image and runs there.

First-boot agent (``appliance.agent``), ``appliance status``, image import, the site and
profile models and the rendering of ``/etc`` from the overlays, and the checks the build
host's smoke and bench ask for (``appliance.selftest``, ``appliance.measure``). It runs on the
appliance's system python3 with Debian's libraries and imports nothing of the build host's
``pipeline`` package.
"""

__version__ = "0.2.0"
