"""Paths of the project, for tests (a module of its own: every folder's conftest.py is
imported as `conftest`, so names cannot be shared through it)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
