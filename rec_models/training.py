"""The shared training loop: sampled negatives, Adam, mini-batches, early stopping, progress with ETA.

Separate from every ``nn.Module``: a module only maps (user rows, video rows) to logits. Embedding
tables use sparse gradients with SparseAdam, so a step touches only the rows in its batch.
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
    # "bce": each pair is a binary example; "softmax": the positive competes with its negatives
    # (sampled softmax), which optimises the ranking more directly.
    loss: str = "bce"


def set_torch_threads(threads: int) -> None:
    """Small embedding steps on this class of machine run faster on 1 thread than on 2: set it on purpose."""
    torch.set_num_threads(threads)


def train_pointwise(
    module: nn.Module,
    interactions: sparse.csr_matrix,
    settings: TrainSettings,
    validate: Callable[[], float] | None = None,
    regularised: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | None = None,
) -> FitReport:
    """Fit ``module(users, items) -> logits`` with BCE on positives and uniformly sampled negatives.

    validate: returns a score to maximise after each epoch; the best epoch's weights are kept and
    training stops after ``patience`` epochs without improvement.
    regularised: L2 penalty of the rows in a batch (so sparse steps stay sparse).
    """
    device = device or torch.device("cpu")
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    coo = interactions.tocoo()
    users = torch.as_tensor(coo.row.astype(np.int64))
    items = torch.as_tensor(coo.col.astype(np.int64))
    n_items = interactions.shape[1]
    n = len(users)
    if n == 0:
        raise ValueError("no interactions to train on")
    module.to(device)
    sparse_params = [p for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse
                     for p in m.parameters()]
    dense_params = [p for p in module.parameters() if all(p is not q for q in sparse_params)]
    optimizers = []
    if sparse_params:
        optimizers.append(torch.optim.SparseAdam(sparse_params, lr=settings.learning_rate))
    if dense_params:
        optimizers.append(torch.optim.Adam(dense_params, lr=settings.learning_rate))
    loss_fn = nn.BCEWithLogitsLoss()
    report = FitReport()
    best_score, best_state, stale = -np.inf, None, 0
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        module.train()
        order = torch.randperm(n, generator=generator)
        epoch_loss, epoch_start = 0.0, time.perf_counter()
        for start in range(0, n, settings.batch_size):
            idx = order[start:start + settings.batch_size]
            u = users[idx].to(device)
            pos = items[idx].to(device)
            neg = torch.randint(0, n_items, (len(idx), settings.negatives), generator=generator).to(device)
            u_all = torch.cat([u, u.repeat_interleave(settings.negatives)])
            i_all = torch.cat([pos, neg.reshape(-1)])
            labels = torch.cat([torch.ones(len(u), device=device), torch.zeros(len(u) * settings.negatives, device=device)])
            logits = module(u_all, i_all)
            if settings.loss == "softmax":
                grouped = torch.cat([logits[: len(u), None], logits[len(u):].view(len(u), settings.negatives)], 1)
                loss = nn.functional.cross_entropy(grouped, torch.zeros(len(u), dtype=torch.long, device=device))
            else:
                loss = loss_fn(logits, labels)
            if regularised is not None and settings.l2 > 0:
                loss = loss + settings.l2 * regularised(u_all, i_all)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            epoch_loss += loss.item() * len(idx)
        seconds = time.perf_counter() - epoch_start
        entry = {"epoch": epoch, "loss": epoch_loss / n, "seconds": round(seconds, 3), "positives_per_s": n / seconds}
        if validate is not None:
            module.eval()
            with torch.no_grad():
                entry["validation"] = float(validate())
        report.history.append(entry)
        elapsed = time.perf_counter() - started
        eta = elapsed / epoch * (settings.epochs - epoch)
        log.info(
            "epoch %d/%d loss %.4f%s, %.0f positives/s, ETA %.0f s",
            epoch, settings.epochs, entry["loss"],
            f" validation {entry['validation']:.4f}" if "validation" in entry else "", entry["positives_per_s"], eta,
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
    report.samples_per_second = n * report.epochs / max(report.seconds, 1e-9)
    return report
