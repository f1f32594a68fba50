import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def appliance_image():
    """The bookworm-zed appliance, built once per test session into artifacts/ (warm caches):
    the build tests inspect it and the end-to-end tests boot it."""
    from pipeline.build import run_build

    out = ROOT / "artifacts" / "bookworm-zed"
    lines: list[str] = []
    manifest = run_build("bookworm-zed", out, log=lines.append)
    return out, manifest, lines
