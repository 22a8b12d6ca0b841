"""PyTorch's CPU thread count, set on purpose: from the work's size and the tasks sharing the machine's
cores now (counted again as the task goes, so the last task running gets every core), or for a block
of code that must run single-threaded (and is given back afterwards)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch

# Below this many views a run's steps are small: one thread was measured faster than two on this
# class of machine; above it, large batches ran 1.45x faster on two (bench/scale.py, M world).
THREADS_ABOVE_VIEWS = 500_000
# Where each process doing PyTorch work holds a locked file: the count of held files is how many
# share the cores (a lock dies with its process, so a killed task counts no longer).
SHARE_DIR = Path(tempfile.gettempdir()) / "recs-core-share"

REBALANCE_SECONDS = 1.0

_held: list = []  # (open locked file, its path, owner pid) of this process, once it has a share
_policy: dict = {}  # the last automatic choice's inputs, for rebalance_torch_threads


def tasks_sharing_cores() -> int:
    """Processes holding a share of this machine's cores now, this one included (it takes one)."""
    _take_share()
    others = 0
    for path in SHARE_DIR.glob("*.share"):
        if path == _held[0][1]:
            continue
        try:
            with open(path, "rb") as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    others += 1  # held: its process is alive
                    continue
                path.unlink(missing_ok=True)  # nobody holds it: left by a process that died
        except FileNotFoundError:
            continue
    return 1 + others


def _take_share() -> None:
    if _held and _held[0][2] == os.getpid():
        return
    _held.clear()  # a forked child takes its own share, not its parent's
    SHARE_DIR.mkdir(parents=True, exist_ok=True)
    # Locked before it is visible (renamed in), so no counter can take it for a dead process's file.
    pending = SHARE_DIR / f".{os.getpid()}-{uuid.uuid4().hex}"
    file = open(pending, "wb")  # noqa: SIM115 - held open (and locked) for the life of the process
    fcntl.flock(file, fcntl.LOCK_EX)
    final = pending.with_name(pending.name[1:] + ".share")
    pending.rename(final)
    _held.append((file, final, os.getpid()))


def auto_threads(n_views: int, tasks_per_machine: int = 1) -> int:
    """One thread for small work; for large, this process's share of the cores among ``tasks_per_machine``
    tasks, or (0) among the tasks doing PyTorch work on this machine now (three training processes with
    every core each ran 3x slower than one after another)."""
    if n_views < THREADS_ABOVE_VIEWS:
        return 1
    tasks = tasks_per_machine or tasks_sharing_cores()
    return max(1, len(os.sched_getaffinity(0)) // tasks)


def set_torch_threads(threads: int, n_views: int = 0, tasks_per_machine: int = 1) -> int:
    """Set PyTorch's CPU threads for this process (0: by the work's size and the tasks sharing the
    machine); returns the number set. :func:`rebalance_torch_threads` repeats an automatic choice."""
    _policy.clear()
    if not threads:
        _policy.update(n_views=n_views, tasks_per_machine=tasks_per_machine)
    threads = threads or auto_threads(n_views, tasks_per_machine)
    torch.set_num_threads(threads)
    return threads


def rebalance_torch_threads() -> None:
    """Choose the thread count again when it was chosen automatically from the tasks running now (a
    task that outlives the others sharing the machine takes the cores they freed; one that starts
    beside it gets its share back within a second). Cheap to call often: it counts at most once a second."""
    if not _policy or _policy["tasks_per_machine"]:
        return
    now = time.monotonic()
    if now - _policy.get("counted_at", -REBALANCE_SECONDS) < REBALANCE_SECONDS:
        return
    _policy["counted_at"] = now
    threads = auto_threads(_policy["n_views"], 0)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch runs on ``threads`` CPU threads inside the block; the previous count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
