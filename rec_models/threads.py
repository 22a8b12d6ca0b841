"""PyTorch's CPU thread count, set on purpose: once per task from the work's size, or for a block of
code that must run single-threaded (and is given back afterwards)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

# Below this many views a run's steps are small: one thread was measured faster than two on this
# class of machine; above it, large batches ran 1.45x faster on two (bench/scale.py, M world).
THREADS_ABOVE_VIEWS = 500_000


def auto_threads(n_views: int, tasks_per_machine: int = 1) -> int:
    """One thread for small work; for large, this process's share of the cores when ``tasks_per_machine``
    tasks run at once (three training processes with every core each ran 3x slower than one after another)."""
    if n_views < THREADS_ABOVE_VIEWS:
        return 1
    return max(1, len(os.sched_getaffinity(0)) // tasks_per_machine)


def set_torch_threads(threads: int, n_views: int = 0, tasks_per_machine: int = 1) -> int:
    """Set PyTorch's CPU threads for this process (0: by the work's size and the tasks sharing the
    machine); returns the number set."""
    threads = threads or auto_threads(n_views, tasks_per_machine)
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch runs on ``threads`` CPU threads inside the block; the previous count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
