"""The shared training loop: mini-batches, Adam, early stopping on a validation score, seeds, and
progress with rates and ETA in the log. Separate from every ``nn.Module``.

Two objectives feed it:
- pointwise (MF, NCF): (user, video) pairs against uniformly sampled negatives, BCE. Embedding tables
  use sparse gradients with SparseAdam, so a step touches only the rows in its batch.
- multinomial (two-tower): a batch of users, each predicting its whole view history with a softmax
  over every video (as Mult-DAE); the module computes that loss.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from torch import nn

from rec_models.models.base import FitReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    negatives: int
    l2: float
    patience: int
    seed: int


def set_torch_threads(threads: int) -> None:
    """Small embedding steps on this class of machine run faster on 1 thread than on 2: set it on purpose."""
    torch.set_num_threads(threads)


def _optimizers(module: nn.Module, learning_rate: float) -> list[torch.optim.Optimizer]:
    sparse_params = [p for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse
                     for p in m.parameters()]
    dense_params = [p for p in module.parameters() if all(p is not q for q in sparse_params)]
    optimizers: list[torch.optim.Optimizer] = []
    if sparse_params:
        optimizers.append(torch.optim.SparseAdam(sparse_params, lr=learning_rate))
    if dense_params:
        optimizers.append(torch.optim.Adam(dense_params, lr=learning_rate))
    return optimizers


def train_loop(
    module: nn.Module,
    n_examples: int,
    step_loss: Callable[[torch.Tensor], torch.Tensor],
    settings: TrainSettings,
    validate: Callable[[], float] | None = None,
    unit: str = "examples",
) -> FitReport:
    """Epochs over ``n_examples`` shuffled examples; ``step_loss(batch indices)`` returns the batch loss.

    validate: returns a score to maximise after each epoch; the best epoch's weights are kept and
    training stops after ``patience`` epochs without improvement.
    """
    if n_examples == 0:
        raise ValueError("no interactions to train on")
    generator = torch.Generator().manual_seed(settings.seed)
    optimizers = _optimizers(module, settings.learning_rate)
    report = FitReport()
    best_score, best_state, stale = -np.inf, None, 0
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        module.train()
        order = torch.randperm(n_examples, generator=generator)
        epoch_loss, epoch_start = 0.0, time.perf_counter()
        for start in range(0, n_examples, settings.batch_size):
            idx = order[start:start + settings.batch_size]
            loss = step_loss(idx)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            epoch_loss += loss.item() * len(idx)
        seconds = time.perf_counter() - epoch_start
        entry = {"epoch": epoch, "loss": epoch_loss / n_examples, "seconds": round(seconds, 3),
                 f"{unit}_per_s": n_examples / seconds}
        if validate is not None:
            module.eval()
            with torch.no_grad():
                entry["validation"] = float(validate())
        report.history.append(entry)
        elapsed = time.perf_counter() - started
        log.info(
            "epoch %d/%d loss %.4f%s, %.0f %s/s, ETA %.0f s", epoch, settings.epochs, entry["loss"],
            f" validation {entry['validation']:.4f}" if "validation" in entry else "", entry[f"{unit}_per_s"], unit,
            elapsed / epoch * (settings.epochs - epoch),
        )
        score = entry.get("validation", -entry["loss"])
        if score > best_score:
            best_score, stale, report.best_epoch = score, 0, epoch
            best_state = copy.deepcopy(module.state_dict())
        else:
            stale += 1
            if stale >= settings.patience:
                log.info("early stop: no improvement for %d epochs (best epoch %d)", stale, report.best_epoch)
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    report.epochs = len(report.history)
    report.seconds = time.perf_counter() - started
    report.samples_per_second = n_examples * report.epochs / max(report.seconds, 1e-9)
    return report


def train_pointwise(
    module: nn.Module,
    interactions: sparse.csr_matrix,
    settings: TrainSettings,
    validate: Callable[[], float] | None = None,
    regularised: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | None = None,
) -> FitReport:
    """Fit ``module(users, items) -> logits`` with BCE on positives and uniformly sampled negatives.

    regularised: L2 penalty of the rows in a batch (so sparse steps stay sparse).
    """
    device = device or torch.device("cpu")
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed + 1)
    coo = interactions.tocoo()
    users = torch.as_tensor(coo.row.astype(np.int64))
    items = torch.as_tensor(coo.col.astype(np.int64))
    n_items = interactions.shape[1]
    negatives = settings.negatives
    loss_fn = nn.BCEWithLogitsLoss()
    module.to(device)

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        u = users[idx].to(device)
        pos = items[idx].to(device)
        neg = torch.randint(0, n_items, (len(idx), negatives), generator=generator).to(device)
        u_all = torch.cat([u, u.repeat_interleave(negatives)])
        i_all = torch.cat([pos, neg.reshape(-1)])
        labels = torch.cat([torch.ones(len(u), device=device), torch.zeros(len(u) * negatives, device=device)])
        loss = loss_fn(module(u_all, i_all), labels)
        if regularised is not None and settings.l2 > 0:
            loss = loss + settings.l2 * regularised(u_all, i_all)
        return loss

    return train_loop(module, len(users), step_loss, settings, validate, unit="positives")


def train_multinomial(
    module: nn.Module,
    interactions: sparse.csr_matrix,
    settings: TrainSettings,
    validate: Callable[[], float] | None = None,
    device: torch.device | None = None,
) -> FitReport:
    """Fit ``module.multinomial_loss(users)`` over batches of the users who have views."""
    device = device or torch.device("cpu")
    torch.manual_seed(settings.seed)
    users = torch.as_tensor(np.flatnonzero(np.diff(interactions.indptr) > 0))
    module.to(device)
    return train_loop(module, len(users), lambda idx: module.multinomial_loss(users[idx].to(device)), settings,
                      validate, unit="users")
