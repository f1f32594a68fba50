"""The harness tells a running systemd-nspawn from one that has exited but was not reaped."""

import subprocess
import sys
import time

from pipeline.harness.nspawn import pid_alive


def test_running_process_is_alive():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_exited_unreaped_process_is_not_alive():
    # A zombie until waited for: what a power-off looks like when nobody reaps nspawn.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        assert not pid_alive(child.pid)
    finally:
        child.wait()


def test_no_such_process_is_not_alive():
    assert not pid_alive(0)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
