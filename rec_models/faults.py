"""Named fault points for resilience tests and the fault benchmarks.

Two ways to use a point, both without effect when their variable is unset:
- ``RECS_FAULTS`` (comma-separated points): the task raises InjectedFault there, as a crash would;
- ``RECS_PAUSE_DIR`` (a folder): a bench *arms* a point by creating ``<point>.armed`` in it; the first
  task to reach that point claims it (an atomic rename, so exactly one task pauses), writes
  ``<point>.paused`` (its pid and worker name) and waits there until ``<point>.release`` appears, so
  the bench can kill its machine, its scheduler or its database at a known moment
  (`make bench-chaos`). The folder is local: the bench and the workers share one machine.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from rec_models.names import PAUSE_DIR_ENV, WORKER_NAME_ENV


class InjectedFault(RuntimeError):
    """A failure injected on purpose at a named point."""


POINTS = (
    "validate:done", "extract:done", "train:epoch", "train:done", "evaluate:done", "score:done",
    "publish:after_stage", "publish:before_swap", "publish:after_swap", "serving:before_switch", "retention:prune",
    "erasure:after_tables",
)
# Points after the night's run serves: a failure there leaves it serving (the retention step).
AFTER_SERVING = ("retention:prune",)
# Points of the erasure step, reached only when a request is open (tests/erasure).
ERASURE_POINTS = ("erasure:after_tables",)
MAX_PAUSE_S = 1800.0  # a bench that died does not hold a task forever


def checkpoint(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    if name in os.environ.get("RECS_FAULTS", "").split(","):
        raise InjectedFault(f"fault injected at {name}")
    folder = os.environ.get(PAUSE_DIR_ENV)
    if folder:
        if (Path(folder) / _file_name(name, "fail")).exists():
            raise InjectedFault(f"fault injected at {name}")
        _pause_if_armed(Path(folder), name)


def _file_name(point: str, suffix: str) -> str:
    return f"{point.replace(':', '-')}.{suffix}"


def _pause_if_armed(folder: Path, point: str) -> None:
    claimed = folder / _file_name(point, f"claimed-{os.getpid()}")
    try:
        (folder / _file_name(point, "armed")).rename(claimed)
    except FileNotFoundError:
        return  # not armed, or another task took it
    info = {"point": point, "pid": os.getpid(), "worker": os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()}
    claimed.write_text(json.dumps(info))
    claimed.rename(folder / _file_name(point, "paused"))
    release = folder / _file_name(point, "release")
    deadline = time.monotonic() + MAX_PAUSE_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


class PauseControl:
    """The bench's side of ``RECS_PAUSE_DIR``: arm a point, wait until a task pauses there, release it."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def arm(self, point: str) -> None:
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}")
        for suffix in ("paused", "release"):
            (self.folder / _file_name(point, suffix)).unlink(missing_ok=True)
        (self.folder / _file_name(point, "armed")).touch()

    def wait_paused(self, point: str, timeout: float, alive=lambda: True) -> dict:
        """{"point", "pid", "worker"} of the task paused at ``point``."""
        paused = self.folder / _file_name(point, "paused")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if paused.exists():
                return json.loads(paused.read_text())
            if not alive():
                break
            time.sleep(0.2)
        raise TimeoutError(f"no task reached {point} within {timeout:.0f} s")

    def fail(self, point: str, failing: bool = True) -> None:
        """Every task reaching ``point`` fails there while ``failing``."""
        if point not in POINTS:
            raise ValueError(f"unknown fault point {point!r}")
        marker = self.folder / _file_name(point, "fail")
        marker.touch() if failing else marker.unlink(missing_ok=True)

    def release(self, point: str) -> None:
        (self.folder / _file_name(point, "armed")).unlink(missing_ok=True)
        (self.folder / _file_name(point, "release")).touch()
