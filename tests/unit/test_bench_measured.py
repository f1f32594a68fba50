"""The bench reads `appliance measure`'s JSON lines; a failure names the measurement, the
harness kind and the traceback's last frame."""

import subprocess

import pytest

from appliance.errors import ApplianceError
from pipeline.bench.measured import measure, parse

TRACEBACK = """Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/appliance/measure.py", line 57, in _name
    head = os.path.basename(words[0])
IndexError: list index out of range
"""


def _result(rc, out, err=""):
    return subprocess.CompletedProcess([], rc, out, err)


@pytest.mark.parametrize("rc, out, err, message", [
    (1, "", TRACEBACK, r"appliance measure burst 5 failed in the container \(exit 1\): "
                       r'File "/usr/lib/python3/dist-packages/appliance/measure.py", line 57, in _name \| '
                       r"head = os.path.basename\(words\[0\]\) \| IndexError: list index out of range"),
    (0, "no json here\n", "", r"failed in the container \(exit 0\): no output"),
    (255, "", "timed out after 60 s", r"\(exit 255\): timed out after 60 s"),
], ids=["traceback", "no-json-lines", "ssh-timeout"])
def test_failures_carry_the_traceback(rc, out, err, message):
    with pytest.raises(ApplianceError, match=message):
        parse(_result(rc, out, err), ("burst", "5"), "container")


def test_measure_runs_the_appliance_command_on_the_target():
    class Target:
        kind = "vm"
        argv = None

        def run(self, argv, *, timeout=600, stdin=None):
            self.argv = argv
            return _result(0, 'noise\n{"kind": "memory", "rss_mib": 1.5}\n')

    target = Target()
    assert measure(target, "memory") == [{"kind": "memory", "rss_mib": 1.5}]
    assert target.argv == ["python3", "-m", "appliance", "measure", "memory"]
