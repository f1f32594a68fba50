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
    (["selftest", "--help"], 0, "{api,lifecycle,nodes,rabbitmq-node}", ""),
    # --help of a suite or a measurement prints help and starts nothing (no server created).
    (["selftest", "lifecycle", "--help"], 0, "creates", ""),
    (["selftest", "rabbitmq-node", "--help"], 0, "Erlang node", ""),
    (["selftest", "api", "--help"], 0, "--outbound-probe", ""),
    (["measure", "burst", "--help"], 0, "--keep", ""),
    (["selftest", "lifecycle", "extra"], 2, "", "unrecognized arguments: extra"),
    (["selftest", "everything"], 2, "", "invalid choice: 'everything'"),
    (["measure", "nonsense"], 2, "", "invalid choice: 'nonsense'"),
    (["measure", "instances", "three"], 2, "", "invalid int value: 'three'"),
    (["measure", "burst"], 2, "", "the following arguments are required: count"),
    (["image"], 2, "", "the following arguments are required: image_command"),
    (["frobnicate"], 2, "", "invalid choice: 'frobnicate'"),
], ids=["version", "help", "selftest-help", "lifecycle-help", "rabbitmq-node-help", "api-help", "burst-help",
        "lifecycle-extra", "selftest-unknown", "measure-unknown", "instances-not-int", "burst-without-count",
        "image-without-verb", "unknown"])
def test_appliance_command_parses(args, rc, out, err):
    result = appliance(*args)
    assert result.returncode == rc, result.stdout + result.stderr
    assert out in result.stdout and err in result.stderr
