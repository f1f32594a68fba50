"""Running the first-boot steps, with the journal and progress on stdout.

A step waits for the steps it names in ``after`` (by default the one listed before it);
every step whose prerequisites are done runs at once, each in its own thread, so a step
that mostly waits (a daemon starting, an API answering) overlaps the others. The list's
order stays a valid order to run them one by one: a step may only wait for steps listed
before it.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from ..errors import ApplianceError
from .journal import Journal

Say = Callable[[str], None]

# ``after`` for a step that waits for every step listed before it.
EVERY_EARLIER = ("*",)


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    run: Callable[[], None]
    # When set, a step the journal calls done is re-run if this says its result is gone
    # (a database dropped by hand, a file deleted); it must be cheap.
    still_done: Callable[[], bool] | None = None
    # The names of the steps this one waits for; None: the step listed before it;
    # EVERY_EARLIER: all of them.
    after: tuple[str, ...] | None = None


class StepFailed(ApplianceError):
    def __init__(self, step: str, reason: str, log_hint: str):
        self.step = step
        super().__init__(f"step {step} failed: {reason} (see {log_hint})")


def prerequisites(steps: list[Step]) -> dict[str, set[str]]:
    """Each step's name -> the names it waits for. Raises ValueError for a repeated name or
    for a step that waits for one not listed before it."""
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError("step names must be unique")
    needs: dict[str, set[str]] = {}
    for index, step in enumerate(steps):
        earlier = names[:index]
        if step.after is None:
            needs[step.name] = set(earlier[-1:])
        elif step.after == EVERY_EARLIER:
            needs[step.name] = set(earlier)
        else:
            unknown = [n for n in step.after if n not in earlier]
            if unknown:
                raise ValueError(f"step {step.name} waits for {', '.join(unknown)}, not listed before it")
            needs[step.name] = set(step.after)
    return needs


@dataclass
class _Outcome:
    step: Step
    seconds: float
    error: BaseException | None = None
    trace: str = ""


def _work(step: Step, outcomes: "queue.Queue[_Outcome]") -> None:
    started = time.monotonic()
    try:
        step.run()
    except Exception as exc:  # reported by the main thread, which owns the journal
        outcomes.put(_Outcome(step, time.monotonic() - started, exc, traceback.format_exc()))
        return
    outcomes.put(_Outcome(step, time.monotonic() - started))


def run_steps(steps: list[Step], journal: Journal, say: Say, *, log_hint: str,
              rerun_all: bool = False) -> dict[str, float]:
    """Run every step not yet done (every step with ``rerun_all``), each as soon as the
    steps it waits for are done; stop at the first failure. Returns seconds per step run.

    Only this thread touches the journal and says progress. When a step fails, the steps
    still running are recorded as pending again (they run at the next `appliance run`; each
    is idempotent) and left to end with the process: their threads are daemons.
    """
    needs = prerequisites(steps)
    number = {s.name: i for i, s in enumerate(steps, 1)}
    total = len(steps)

    def prefix(step: Step) -> str:
        return f"[firstboot] ({number[step.name]}/{total}) {step.name}"

    outcomes: queue.Queue[_Outcome] = queue.Queue()
    waiting = list(steps)
    finished: set[str] = set()
    running: dict[str, Step] = {}
    timings: dict[str, float] = {}
    began = time.monotonic()
    while waiting or running:
        ready = [s for s in waiting if needs[s.name] <= finished]
        for step in ready:
            waiting.remove(step)
            if not rerun_all and journal.is_done(step.name) and (step.still_done is None or step.still_done()):
                say(f"{prefix(step)}: done already")
                finished.add(step.name)
                continue
            say(f"{prefix(step)}: {step.description} ...")
            journal.start(step.name)
            running[step.name] = step
            threading.Thread(target=_work, args=(step, outcomes), name=step.name, daemon=True).start()
        if ready and not running:
            continue  # every ready step was done already: look again
        outcome = outcomes.get()
        step = outcome.step
        del running[step.name]
        if outcome.error is not None:
            reason = str(outcome.error) or type(outcome.error).__name__
            journal.fail(step.name, reason)
            say(f"{prefix(step)}: FAILED after {outcome.seconds:.1f} s: {reason}")
            if not isinstance(outcome.error, ApplianceError):
                say(outcome.trace)
            for name in running:
                journal.abandon(name)
                say(f"{prefix(running[name])}: left unfinished (runs again with the next `appliance run`)")
            raise StepFailed(step.name, reason, log_hint) from outcome.error
        journal.finish(step.name)
        finished.add(step.name)
        timings[step.name] = round(outcome.seconds, 2)
        say(f"{prefix(step)}: done in {timings[step.name]:.1f} s")
    journal.complete()
    say(f"[firstboot] cloud ready; this run took {time.monotonic() - began:.1f} s")
    return timings
