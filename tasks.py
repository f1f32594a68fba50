"""Entry points of the appliance pipeline. Each task is thin: the work is in pipeline/.

Run them through ./inv (which prepares .venv), e.g. `./inv build`, `./inv test`.
"""

import functools
import sys
from pathlib import Path

from invoke import Exit, task

from pipeline.errors import ApplianceError
from pipeline.profiles import DEFAULT_PROFILE, available_profiles

ROOT = Path(__file__).resolve().parent
ARTIFACTS = ROOT / "artifacts"
PROFILE_HELP = f"release profile: {', '.join(available_profiles())} (default {DEFAULT_PROFILE})"


def operator_errors(func):
    """Turn an ApplianceError into one clear line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ApplianceError as exc:
            raise Exit(f"error: {exc}", code=2) from None

    return wrapper


def not_built_yet(what: str, issue: int):
    raise Exit(f"invoke {what}: not built yet; issue #{issue} brings it.", code=3)


@task(help={"profile": PROFILE_HELP, "site": "site config (appliance.yaml); default: all defaults",
            "out": "output directory (default artifacts/render/<profile>)"})
@operator_errors
def render(c, profile=DEFAULT_PROFILE, site=None, out=None):
    """Render every configuration file of the appliance for a profile and site."""
    from pipeline.render import render_site

    out_dir = Path(out) if out else ARTIFACTS / "render" / profile
    written = render_site(profile, Path(site) if site else None, out_dir)
    print(f"rendered {len(written)} files for {profile} into {out_dir}")
    if not site or "secrets" not in Path(site).read_text(encoding="utf-8"):
        print("note: secrets are placeholders; the appliance generates real ones at first boot")


@task(help={"profile": PROFILE_HELP})
@operator_errors
def build(c, profile=DEFAULT_PROFILE):
    """Build the appliance image and the LXC rootfs image with diskimage-builder."""
    try:
        from pipeline.build import run_build
    except ImportError:
        not_built_yet("build", 3)
    run_build(profile, ARTIFACTS / profile)


@task
def boot(c):
    """Boot the built appliance locally (systemd-nspawn or qemu)."""
    not_built_yet("boot", 5)


@task
def smoke(c, target=None):
    """Check a booted appliance: host checks and the reference workflow."""
    not_built_yet("smoke", 5)


@task
def e2e(c):
    """Build, boot, wait for first boot, smoke, tear down."""
    not_built_yet("e2e", 5)


@task
def bench(c):
    """Measure build, boot and instance timings and memory into artifacts/bench/."""
    not_built_yet("bench", 6)


@task(help={"k": "only tests matching this pytest -k expression", "fast": "skip the real image build"})
def test(c, k=None, fast=False):
    """Run the test suite (unit, integration, build)."""
    args = [sys.executable, "-m", "pytest", str(ROOT / "tests")]
    if k:
        args += ["-k", k]
    if fast:
        args += ["-m", "not build"]
    result = c.run(" ".join(_quote(a) for a in args), pty=False, warn=True)
    if result.exited != 0:
        raise Exit(code=result.exited)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
