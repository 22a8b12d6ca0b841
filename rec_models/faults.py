"""Named fault points for resilience tests and `make bench-faults`: a task raises InjectedFault at a
point listed in RECS_FAULTS (comma-separated), as a crash there would. No effect when unset."""

from __future__ import annotations

import os


class InjectedFault(RuntimeError):
    """A failure injected on purpose at a named point."""


POINTS = (
    "validate:done", "extract:done", "train:done", "evaluate:done", "score:done",
    "publish:after_stage", "publish:before_swap", "publish:after_swap", "serving:before_switch",
)


def checkpoint(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    if name in os.environ.get("RECS_FAULTS", "").split(","):
        raise InjectedFault(f"fault injected at {name}")
