import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def appliance_image():
    """The appliance of the profile under test (APPLIANCE_TEST_PROFILE, default the default
    profile), built once per test session into artifacts/ (warm caches):
    the build tests inspect it and the end-to-end tests boot it."""
    import json
    import os

    from project import PROFILE

    from pipeline.imagebuild import run_build

    out = ROOT / "artifacts" / PROFILE
    if os.environ.get("APPLIANCE_TEST_REUSE_IMAGE") == "1" and (out / "manifest.json").is_file():
        # Development only (CI never sets it): test the image built last, as it is.
        return out, json.loads((out / "manifest.json").read_text()), []
    lines: list[str] = []
    manifest = run_build(PROFILE, out, log=lines.append)
    return out, manifest, lines
