"""Paths of the project, for tests (a module of its own: every folder's conftest.py is
imported as `conftest`, so names cannot be shared through it)."""

import os
from pathlib import Path

from pipeline.profiles import DEFAULT_PROFILE

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
# The profile the real build and the end-to-end tests use: CI runs the default profile's
# whole suite, and the other shipped profile's first boot and smoke with this set.
PROFILE = os.environ.get("APPLIANCE_TEST_PROFILE") or DEFAULT_PROFILE
