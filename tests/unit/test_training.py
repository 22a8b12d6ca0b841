"""The shared trainer's pieces: the row-sparse optimizer and the sizes chosen from the data."""

from __future__ import annotations

import itertools
import os

import numpy as np
import torch
from torch import nn

from rec_models.threads import auto_threads
from rec_models.training import RowSparseAdam, auto_batch_size, auto_patience


def test_row_sparse_adam_matches_torch_sparse_adam():
    """The same lazy-Adam updates as torch.optim.SparseAdam, with repeated rows in a batch."""
    torch.manual_seed(0)
    ours, theirs = nn.Embedding(50, 8, sparse=True), nn.Embedding(50, 8, sparse=True)
    theirs.weight.data.copy_(ours.weight.data)
    opt_ours, opt_theirs = RowSparseAdam(ours.parameters(), lr=0.05), torch.optim.SparseAdam(theirs.parameters(), lr=0.05)
    for step in range(6):
        rows = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(step))  # repeats on purpose
        target = torch.randn(40, 8, generator=torch.Generator().manual_seed(100 + step))
        for table, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            ((table(rows) - target) ** 2).sum().backward()
            opt.step()
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-5, atol=1e-6)
    untouched = np.setdiff1d(np.arange(50), np.concatenate(
        [torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(s)).numpy() for s in range(6)]))
    assert len(untouched) and opt_ours.state[ours.weight]["exp_avg"][untouched].abs().sum() == 0


def test_row_sparse_adam_refuses_dense_gradients():
    table = nn.Embedding(5, 2)
    table(torch.tensor([1])).sum().backward()
    try:
        RowSparseAdam(table.parameters(), lr=0.1).step()
    except TypeError as exc:
        assert "sparse" in str(exc)
    else:
        raise AssertionError("a dense gradient was accepted")


def test_batch_size_and_threads_scale_with_the_data():
    assert auto_batch_size("pointwise", 80_000) == 2048  # MovieLens 100K keeps its small steps
    assert auto_batch_size("pointwise", 2_000_000) == 15_625
    assert auto_batch_size("pointwise", 20_000_000) == 16_384
    assert auto_batch_size("multinomial", 943) == 64
    assert auto_batch_size("multinomial", 1_000_000) == 1024
    assert auto_patience("pointwise", 40) == 5 and auto_patience("pointwise", 128) == 2
    assert auto_patience("multinomial", 15) == 15 and auto_patience("multinomial", 1000) == 2
    assert auto_threads(60_000) == 1
    assert auto_threads(2_000_000) == len(os.sched_getaffinity(0))  # every core this process may use
    # Tasks sharing the machine split its cores, never below one thread each.
    assert auto_threads(2_000_000, tasks_per_machine=2) == max(1, len(os.sched_getaffinity(0)) // 2)
    assert auto_threads(2_000_000, tasks_per_machine=64) == 1


def test_the_cores_are_shared_among_the_tasks_running_now(monkeypatch, tmp_path):
    """tasks_per_machine 0: the processes holding a share now, counted again as the work goes; a task
    that ended (or was killed) counts no longer."""
    import subprocess
    import sys

    from rec_models import threads

    monkeypatch.setattr(threads, "SHARE_DIR", tmp_path)
    monkeypatch.setattr(threads, "_held", [])
    assert threads.tasks_sharing_cores() == 1
    script = (f"import sys, time; from pathlib import Path; from rec_models import threads; "
              f"threads.SHARE_DIR = Path({str(tmp_path)!r}); print(threads.tasks_sharing_cores(), flush=True); "
              f"sys.stdin.readline()")
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "2"  # it sees this process
        assert threads.tasks_sharing_cores() == 2
        cores = len(os.sched_getaffinity(0))
        assert threads.auto_threads(2_000_000, tasks_per_machine=0) == max(1, cores // 2)
    finally:
        other.kill()
        other.wait()
    assert threads.tasks_sharing_cores() == 1
    assert threads.auto_threads(2_000_000, tasks_per_machine=0) == cores
    assert threads.auto_threads(60_000, tasks_per_machine=0) == 1  # small work stays on one thread



def test_training_is_deaf_to_random_draws_made_by_validation(small_dataset):
    """Same data and seed give the same model even when validation draws from the global RNG (a
    one-off kernel benchmark inside the top-N did, and a nightly rerun then published other rows)."""
    from rec_models.config import TwoTowerConfig
    from rec_models.models.two_tower import TwoTower  # its towers draw dropout noise while training
    from rec_models.training import TrainSettings, train_multinomial

    def fit(validate):
        model = TwoTower(TwoTowerConfig(epochs=3), seed=5)
        model.fit(small_dataset, epochs=1)  # builds the module; the fit below starts from fixed weights
        torch.manual_seed(0)
        for parameter in model.module.parameters():
            parameter.data.normal_(std=0.01)
        settings = TrainSettings(epochs=3, batch_size=64, learning_rate=0.01, negatives=0, l2=0.0, patience=3, seed=5)
        train_multinomial(model.module, small_dataset.interactions(), settings, validate=validate)
        return torch.cat([p.detach().flatten() for p in model.module.parameters()])

    epoch = itertools.count()  # a rising score: the last epoch's weights are kept
    quiet = fit(lambda: next(epoch))
    noisy = fit(lambda: next(epoch) + float(torch.rand(1000).sum() * 0))
    torch.testing.assert_close(noisy, quiet, rtol=0, atol=0)
