"""The step journal: which first-boot steps finished, which failed and why.

Stored as JSON and replaced atomically on every change, so a power cut leaves either the
old or the new journal, never a torn one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..files import atomic_write

DONE, RUNNING, FAILED, PENDING = "done", "running", "failed", "pending"


@dataclass
class StepRecord:
    state: str = PENDING
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None
    error: str | None = None
    runs: int = 0


@dataclass
class Journal:
    path: Path
    steps: dict[str, StepRecord] = field(default_factory=dict)
    completed_at: float | None = None
    # The latest run: {"pid": int, "started_at": epoch seconds, "command": str}. Whether it
    # is still alive is the run lock's answer (lock.current_holder), not this record's.
    run: dict | None = None

    @classmethod
    def load(cls, path: Path) -> "Journal":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path=path)
        steps = {name: StepRecord(**record) for name, record in data.get("steps", {}).items()}
        return cls(path=path, steps=steps, completed_at=data.get("completed_at"), run=data.get("run"))

    def record(self, name: str) -> StepRecord:
        return self.steps.setdefault(name, StepRecord())

    def is_done(self, name: str) -> bool:
        return self.record(name).state == DONE

    def start(self, name: str) -> None:
        rec = self.record(name)
        rec.state, rec.started_at, rec.finished_at, rec.seconds, rec.error = RUNNING, time.time(), None, None, None
        rec.runs += 1
        self.completed_at = None
        self.save()

    def finish(self, name: str) -> None:
        rec = self.record(name)
        rec.state, rec.finished_at = DONE, time.time()
        rec.seconds = round(rec.finished_at - (rec.started_at or rec.finished_at), 2)
        self.save()

    def fail(self, name: str, error: str) -> None:
        rec = self.record(name)
        rec.state, rec.finished_at, rec.error = FAILED, time.time(), error
        rec.seconds = round(rec.finished_at - (rec.started_at or rec.finished_at), 2)
        self.save()

    def abandon(self, name: str) -> None:
        """A step left unfinished by a run that stopped at another step's failure."""
        rec = self.record(name)
        rec.state, rec.finished_at, rec.seconds = PENDING, None, None
        self.save()

    def begin_run(self, pid: int, command: str) -> None:
        self.run = {"pid": pid, "started_at": time.time(), "command": command}
        self.save()

    def complete(self) -> None:
        self.completed_at = time.time()
        self.save()

    def save(self) -> None:
        data = {"steps": {n: asdict(r) for n, r in self.steps.items()}, "completed_at": self.completed_at,
                "run": self.run}
        atomic_write(self.path, json.dumps(data, indent=2, sort_keys=True))
