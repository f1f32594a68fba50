"""Image build: the appliance disk image and the LXC guest rootfs, via diskimage-builder.

``run_build`` drives the whole build of one profile into ``artifacts/<profile>/``;
``ensure_host_prerequisites`` readies the build host (tools, device-mapper stand-ins).
"""

from .host import ensure_host_prerequisites

__all__ = ["ensure_host_prerequisites", "run_build", "run_guest_build"]


def run_build(profile_name, out_dir, *, log=print, **options):
    # Imported lazily so that `pipeline.imagebuild.host` stays importable on its own.
    from .driver import run_build as _run_build

    return _run_build(profile_name, out_dir, log=log, **options)


def run_guest_build(profile_name, out_dir, *, log=print, **options):
    from .driver import run_guest_build as _run_guest_build

    return _run_guest_build(profile_name, out_dir, log=log, **options)
