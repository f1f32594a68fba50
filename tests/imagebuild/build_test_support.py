"""Helpers of the image-build tests (a plain module: tests/ has no packages)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def can_use_loop_devices() -> bool:
    return os.geteuid() == 0 and shutil.which("losetup") is not None and os.path.exists("/dev/loop-control")


needs_loop = pytest.mark.skipif(not can_use_loop_devices(), reason="needs root and loop devices")


def host_loop_devices() -> str:
    return subprocess.run(["losetup", "--list", "--noheadings"], capture_output=True, text=True).stdout.strip()
