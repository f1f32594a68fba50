"""The `appliance` command (python3 -m appliance) as the units, the smoke and the bench call
it: its subcommands parse, and a wrong one is refused with a usage line and exit 2."""

import subprocess
import sys

import pytest
from project import ROOT

from appliance import __version__


def appliance(*args):
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.parametrize("args, rc, out, err", [
    (["--version"], 0, f"appliance {__version__}", ""),
    (["--help"], 0, "selftest", ""),
    (["selftest", "--help"], 0, "{api,lifecycle,rabbitmq-node}", ""),
    (["selftest", "everything"], 2, "", "invalid choice: 'everything'"),
    (["measure", "nonsense"], 1, "", "appliance measure: unknown measurement 'nonsense' (memory, instances, burst)"),
    (["image"], 2, "", "the following arguments are required: image_command"),
    (["frobnicate"], 2, "", "invalid choice: 'frobnicate'"),
], ids=["version", "help", "selftest-help", "selftest-unknown", "measure-unknown", "image-without-verb", "unknown"])
def test_appliance_command_parses(args, rc, out, err):
    result = appliance(*args)
    assert result.returncode == rc, result.stdout + result.stderr
    assert out in result.stdout and err in result.stderr
