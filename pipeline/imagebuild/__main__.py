"""`python -m pipeline.imagebuild [--profile P] [--out DIR] [--guest-only]`: build the appliance images
(or, with --guest-only, only the LXC guest root filesystem)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.errors import ApplianceError

from ..profiles import DEFAULT_PROFILE
from . import run_build, run_guest_build
from .settings import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.imagebuild", description=__doc__)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"release profile (default {DEFAULT_PROFILE})")
    parser.add_argument("--out", type=Path, help="output directory (default artifacts/<profile>)")
    parser.add_argument("--guest-only", action="store_true",
                        help="build only the LXC guest rootfs (lxc-rootfs.img and .zst) into --out")
    args = parser.parse_args(argv)
    out = args.out or REPO_ROOT / "artifacts" / args.profile
    try:
        (run_guest_build if args.guest_only else run_build)(args.profile, out)
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted (mounts and loop devices were released)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
