"""The shared training loop: mini-batches, Adam, early stopping on a validation score, seeds, and
progress with rates and ETA in the log. Separate from every ``nn.Module``.

Two objectives feed it:
- pointwise (MF, NCF): (user, video) pairs against uniformly sampled negatives, BCE. Embedding tables
  use sparse gradients with RowSparseAdam, so a step touches only the rows in its batch (a table of
  1M users is never updated densely).
- multinomial (two-tower): a batch of users, each predicting its whole view history with a softmax
  over every video (as Mult-DAE); the module computes that loss.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from torch import nn

from rec_models.faults import checkpoint
from rec_models.threads import rebalance_torch_threads

log = logging.getLogger(__name__)


@dataclass
class FitReport:
    epochs: int = 0
    best_epoch: int = 0
    seconds: float = 0.0
    samples_per_second: float = 0.0
    history: list[dict] = field(default_factory=list)
    # Models trained in stages (NeuMF: GMF, MLP, then both): each stage's early-stopped epoch count,
    # which a refit on more data without a validation split repeats.
    stage_epochs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    negatives: int
    l2: float
    patience: int
    seed: int


def auto_patience(objective: str, steps_per_epoch: int) -> int:
    """Epochs without improvement before stopping, from the epoch's size: about 200 steps' worth
    (MovieLens 100K: 5 epochs of 40 steps; two-tower: 15 epochs of 15 steps), at least 2 epochs."""
    steps, most = (225, 15) if objective == "multinomial" else (200, 5)
    return int(min(most, max(2, -(-steps // max(1, steps_per_epoch)))))


def auto_batch_size(objective: str, n_examples: int) -> int:
    """Examples per step scaled with the data: about 128 steps an epoch within fixed bounds, so small
    data keeps the small steps its quality was tuned with and large data keeps the cores busy.
    pointwise: positives per step, 2048..16384; multinomial: users per step, 64..1024."""
    low, high = (64, 1024) if objective == "multinomial" else (2048, 16384)
    return int(min(high, max(low, n_examples // 128)))


class RowSparseAdam(torch.optim.Optimizer):
    """Adam for embedding tables with sparse gradients that reads and writes only the rows in the batch
    (lazy Adam, the semantics of torch's SparseAdam). One sort (unique) and an index_add per table per
    step: measured 1.5-2x faster per step than SparseAdam's coalesce and sparse-tensor arithmetic."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise TypeError("RowSparseAdam takes sparse gradients (nn.Embedding(sparse=True))")
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                rows, inverse = torch.unique(param.grad._indices()[0], return_inverse=True)
                values = param.grad._values()
                grad = torch.zeros((rows.shape[0], *values.shape[1:]), dtype=values.dtype,
                                   device=values.device).index_add_(0, inverse, values)
                exp_avg = state["exp_avg"][rows].mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                state["exp_avg"][rows] = exp_avg
                state["exp_avg_sq"][rows] = exp_avg_sq
                step_size = lr / (1 - beta1 ** state["step"])
                denominator = (exp_avg_sq / (1 - beta2 ** state["step"])).sqrt_().add_(eps)
                param.index_add_(0, rows, exp_avg.div_(denominator), alpha=-step_size)


def _optimizers(module: nn.Module, learning_rate: float) -> list[torch.optim.Optimizer]:
    sparse_params = [p for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse
                     for p in m.parameters()]
    dense_params = [p for p in module.parameters() if all(p is not q for q in sparse_params)]
    optimizers: list[torch.optim.Optimizer] = []
    if sparse_params:
        optimizers.append(RowSparseAdam(sparse_params, lr=learning_rate))
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
            rebalance_torch_threads()  # the cores shared out again as tasks beside this one end or start
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
            # Forked RNG: whatever validation draws (a one-off kernel benchmark, say) must not shift the
            # training stream, or the same data and seed would train a different model.
            devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                entry["validation"] = float(validate())
        report.history.append(entry)
        checkpoint("train:epoch")
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
    device: torch.device | None = None,
) -> FitReport:
    """Fit ``module.forward_with_l2(users (B,), videos (B, 1 + negatives)) -> (logits, L2 penalty)`` with
    BCE on each positive and its uniformly sampled negatives. The penalty comes from the same lookups,
    so each table yields one sparse gradient per step, and each user is looked up once per positive."""
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
        neg = torch.randint(0, n_items, (len(idx), negatives), generator=generator).to(device)
        candidates = torch.cat([items[idx].to(device)[:, None], neg], dim=1)  # column 0: the positive
        labels = torch.zeros(candidates.shape, device=device)
        labels[:, 0] = 1.0
        logits, penalty = module.forward_with_l2(u, candidates)
        loss = loss_fn(logits, labels)
        return loss + settings.l2 * penalty if settings.l2 > 0 else loss

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
