"""Changes to the running cloud that are all made or none: each knows whether it is done
already and how to undo itself, and a failure half-way undoes, newest first, what this
attempt made, so a join never leaves half a node behind (docs/scale-out.md, "Join flow").

What was there before an attempt is never undone by it: a change that is done already is
only converged (``converge``: what cannot be checked, such as a password, is set anew) and
left in place. An undo that fails itself is logged and the original failure raised all the
same; what it left is what `appliance remove-node` removes (each of its steps idempotent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    what: str  # one phrase for the log: "RabbitMQ user node-c2"
    done: Callable[[], bool]  # asked when the change's turn comes, after the changes before it
    make: Callable[[], None]
    undo: Callable[[], None]
    converge: Callable[[], None] | None = None  # instead of ``make`` when done already


def apply(changes: Iterable[Change]) -> list[str]:
    """Make each change in order that is not done already (converging those that are).
    Returns what this call made. On any exception, undoes what it made, newest first, then
    raises that exception."""
    made: list[Change] = []
    try:
        for change in changes:
            if change.done():
                if change.converge is not None:
                    change.converge()
                continue
            change.make()
            made.append(change)
    except BaseException:
        undo(made)
        raise
    return [change.what for change in made]


def undo(made: list[Change]) -> None:
    """Undo ``made``, newest first; an undo that fails is logged (never its exception's
    arguments, which may hold a secret) and the others still run."""
    for change in reversed(made):
        try:
            change.undo()
        except Exception as exc:
            log.error("could not undo %s after a failed join (%s); appliance remove-node removes it",
                      change.what, type(exc).__name__)
