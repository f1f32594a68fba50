"""Running the first-boot steps in order, with the journal and progress on stdout."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Callable

from ..errors import ApplianceError
from .journal import Journal

Say = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    run: Callable[[], None]
    # When set, a step the journal calls done is re-run if this says its result is gone
    # (a database dropped by hand, a file deleted); it must be cheap.
    still_done: Callable[[], bool] | None = None


class StepFailed(ApplianceError):
    def __init__(self, step: str, reason: str, log_hint: str):
        self.step = step
        super().__init__(f"step {step} failed: {reason} (see {log_hint})")


def run_steps(steps: list[Step], journal: Journal, say: Say, *, log_hint: str,
              rerun_all: bool = False) -> dict[str, float]:
    """Run every step not yet done (every step with ``rerun_all``); stop at the first
    failure. Returns seconds per step run."""
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError("step names must be unique")
    timings: dict[str, float] = {}
    total = len(steps)
    began = time.monotonic()
    for index, step in enumerate(steps, 1):
        prefix = f"[firstboot] ({index}/{total}) {step.name}"
        if not rerun_all and journal.is_done(step.name) and (step.still_done is None or step.still_done()):
            say(f"{prefix}: done already")
            continue
        say(f"{prefix}: {step.description} ...")
        journal.start(step.name)
        started = time.monotonic()
        try:
            step.run()
        except Exception as exc:  # any failure is recorded and ends the run
            reason = str(exc) or type(exc).__name__
            journal.fail(step.name, reason)
            say(f"{prefix}: FAILED after {time.monotonic() - started:.1f} s: {reason}")
            if not isinstance(exc, ApplianceError):
                say(traceback.format_exc())
            raise StepFailed(step.name, reason, log_hint) from exc
        journal.finish(step.name)
        timings[step.name] = round(time.monotonic() - started, 2)
        say(f"{prefix}: done in {timings[step.name]:.1f} s")
    journal.complete()
    say(f"[firstboot] cloud ready; this run took {time.monotonic() - began:.1f} s")
    return timings
