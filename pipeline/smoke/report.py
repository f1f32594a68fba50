"""Check results: printed one per line with durations, and the closing count line."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Result:
    name: str
    passed: bool
    seconds: float
    detail: str = ""


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    say: Callable[[str], None] = print

    def add(self, result: Result) -> None:
        self.results.append(result)
        mark = "PASS" if result.passed else "FAIL"
        detail = f": {result.detail}" if result.detail else ""
        self.say(f"{mark} {result.name} ({result.seconds:.1f} s){detail}")

    def check(self, name: str, func: Callable[[], str | None]) -> bool:
        """Run one check; an AssertionError (or any error) fails it with its message."""
        start = time.monotonic()
        try:
            note = func() or ""
            self.add(Result(name, True, time.monotonic() - start, note))
            return True
        except Exception as exc:  # every failure is reported, none ends the run
            self.add(Result(name, False, time.monotonic() - start, str(exc) or type(exc).__name__))
            return False

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

    def summary(self) -> str:
        passed = len(self.results) - self.failed
        return f"{passed} passed, {self.failed} failed"
