"""One agent run at a time: an exclusive flock on a file under /run.

Two runs at once (``appliance run --again`` while first boot works) would execute steps in
parallel, one undoing the other's work. The lock is an flock(2): the kernel drops it when
its holder exits however it exits (even ``kill -9``), so a stale lock cannot outlive its run
and "is a run alive?" is answered by trying the lock, never by trusting a recorded pid.
The file records who holds it (pid, start time, command) for the refusal message and for
``appliance status``.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ApplianceError

PROBE_GRACE = 1.0  # seconds


@dataclass(frozen=True)
class Holder:
    """Who holds the lock: ``pid``, ``since`` (epoch seconds), ``command`` (argv words)."""

    pid: int
    since: float
    command: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} ({self.command}) since {when}"


class AlreadyRunning(ApplianceError):
    def __init__(self, path: Path, holder: Holder | None):
        who = holder.describe() if holder else "another process"
        super().__init__(f"another agent run holds {path}: {who}; wait for it or see `appliance status`")


class RunLock:
    """``with RunLock(path, command):`` holds the lock for the block, or raises AlreadyRunning."""

    def __init__(self, path: Path, command: str):
        self.path = path
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # `appliance status` probes the lock for an instant: a run starting just then
        # retries briefly rather than refusing. A real holder keeps it far longer.
        deadline = time.monotonic() + PROBE_GRACE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise AlreadyRunning(self.path, read_holder(self.path)) from None
                time.sleep(0.05)
        record = json.dumps({"pid": os.getpid(), "since": time.time(), "command": self.command})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            # Truncate first: a reader that wins the lock next must not see our record.
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
        return Holder(pid=int(data["pid"]), since=float(data["since"]), command=str(data.get("command", "")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def current_holder(path: Path) -> Holder | None:
    """The live holder of the lock, or None when no process holds it (none ever did, or
    the last holder exited or was killed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_holder(path) or Holder(pid=0, since=0.0, command="unknown")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
