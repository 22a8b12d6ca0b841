"""What every PyTorch model shares: fit through the shared trainer with early stopping on a
validation split, and persistence of the module's weights. Subclasses build the ``nn.Module`` and
say how to read user and item vectors out of it."""

from __future__ import annotations

import dataclasses
import logging
from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch
from scipy import sparse
from torch import nn

from rec_models.config import NeuralConfig
from rec_models.data.dataset import Dataset, Split
from rec_models.data.id_maps import IdMaps
from rec_models.evaluation import evaluate_model
from rec_models.models.base import CheckpointError, FitReport, Recommender, WarmStart
from rec_models.models.warm import carry_over
from rec_models.topn import pick_device
from rec_models.training import TrainSettings, auto_batch_size, auto_patience, train_multinomial, train_pointwise

# Early stopping evaluates on at most this many validation users (enough for a stable signal).
VALIDATION_USERS = 2000

log = logging.getLogger(__name__)


class NeuralRecommender(Recommender):
    config_class: type[NeuralConfig] = NeuralConfig
    # "pointwise": (user, video) pairs vs sampled negatives; "multinomial": users predict their history.
    objective = "pointwise"
    # Warm start: state-dict keys of tables whose rows are ids (-> id space, init of rows new tonight:
    # see rec_models.models.warm), and buffers carried over as they are.
    id_tables: ClassVar[dict[str, tuple[str, str]]] = {}
    carried_buffers: ClassVar[tuple[str, ...]] = ()
    # Sub-modules that hold per-user bags (a user's domains, their history): their rows are personal data.
    per_user_bags: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: NeuralConfig | None = None, seed: int = 42):
        self.config = config or self.config_class()
        self.seed = seed
        self.module: nn.Module | None = None
        self.shapes: dict[str, int] = {}

    @abstractmethod
    def build_module(self, shapes: dict[str, int]) -> nn.Module:
        """A fresh module for these sizes (n_users, n_items, ... as the subclass needs)."""

    def shapes_for(self, data: Dataset) -> dict[str, int]:
        return {"n_users": data.n_users, "n_items": data.n_videos}

    def prepare(self, data: Dataset, interactions, before: float | None = None) -> None:
        """Hook before training: subclasses attach data-dependent inputs (feature bags, histories of the
        views before ``before``) to the module."""

    def fit(self, data: Dataset, *, before: float | None = None, validation: Split | None = None,
            epochs: int | None = None) -> FitReport:
        interactions = data.interactions(before)
        self.shapes = self.shapes_for(data)
        torch.manual_seed(self.seed)
        self.module = self.build_module(self.shapes)
        self.prepare(data, interactions, before)
        return self.train_module(data, interactions, validation, epochs)

    def fine_tune(self, data: Dataset, *, epochs: int = 1, train_on=None) -> FitReport:
        """Continue training the fitted weights for ``epochs`` epochs on ``train_on`` (every view when
        None): the evaluated weights plus the newest days, for one epoch's cost instead of a refit."""
        if self.module is None:
            raise ValueError(f"{self.name} has not been fitted: nothing to fine-tune")
        interactions = data.interactions()
        learned = {name: p.detach().clone() for name, p in self.module.named_parameters()}
        self.prepare(data, interactions)  # feature and history bags over every view (same table sizes)
        with torch.no_grad():
            for name, param in self.module.named_parameters():
                param.copy_(learned[name])
        return self.train_module(data, interactions if train_on is None else train_on, None, epochs,
                                 sized_for=interactions)

    def fit_warm(self, data: Dataset, warm: WarmStart, *, before: float | None = None,
                 validation: Split | None = None) -> FitReport:
        if type(warm.parent) is not type(self) or warm.parent.module is None:
            raise CheckpointError(f"the checkpoint holds a {warm.parent.name} model, not a fitted {self.name}")
        if warm.parent.config.weights_fingerprint() != self.config.weights_fingerprint():
            raise CheckpointError(f"settings that shape the weights changed: checkpoint "
                                  f"{warm.parent.config.weights_fingerprint()}, tonight {self.config.weights_fingerprint()}")
        counts = self.carry(data, warm.parent, warm.parent_ids, before=before)
        log.info("%s continues from its parent: %s", self.name,
                 {key: value for key, value in counts.items() if value["new"] or value["dropped"]} or "same ids")
        train_on = self.warm_examples(data, before, warm.recent_days, warm.history_share, self.seed)
        return self.train_module(data, train_on, validation, warm.epochs, learning_rate=self.continue_learning_rate(),
                                 patience=warm.patience, sized_for=data.interactions(before))

    def carry(self, data: Dataset, parent: "NeuralRecommender", parent_ids: IdMaps,
              before: float | None = None) -> dict[str, dict[str, int]]:
        """Become ``parent`` on this Dataset's rows (no training): id-indexed rows carried by source id,
        feature bags and histories of the views before ``before``. Returns rows kept, new and dropped."""
        if type(parent) is not type(self) or parent.module is None:
            raise CheckpointError(f"the checkpoint holds a {parent.name} model, not a fitted {self.name}")
        self.shapes = self.shapes_for(data)
        torch.manual_seed(self.seed)
        self.module = self.build_module(self.shapes)
        self.prepare(data, data.interactions(before), before)
        counts = carry_over(self.module, parent.module, self.id_tables, self.carried_buffers, parent_ids,
                            IdMaps.of(data))
        self.module.eval()
        return counts

    def warm_examples(self, data: Dataset, before: float | None, recent_days: float, history_share: float,
                      seed: int):
        # A multinomial example is a user and their whole history: sampling views would keep nearly every user.
        return data.recent_mix(before, recent_days, history_share, seed, by_user=self.objective == "multinomial")

    def continue_learning_rate(self) -> float:
        """The learning rate of training that continues from trained weights."""
        return self.config.learning_rate

    def train_module(self, data: Dataset, interactions, validation: Split | None, epochs: int | None,
                     learning_rate: float | None = None, patience: int | None = None,
                     sized_for: sparse.csr_matrix | None = None) -> FitReport:
        """Train on ``interactions``, in batches sized for ``sized_for`` (None: ``interactions``).
        Continued training passes the views a fit from scratch would read and keeps its batch size:
        each step's cost is mostly fixed (the item tower over every video, the optimizer's rows), so
        small batches on a fifth of the examples would cost nearly a full epoch."""
        validate = None
        if validation is not None:
            users = np.random.default_rng(self.seed).permutation(validation.test_users)[:VALIDATION_USERS]
            validate = lambda: evaluate_model(self, data, validation.train, validation.test, users, k=10).ndcg  # noqa: E731

        n_epochs = epochs or self.config.epochs
        sized_for = interactions if sized_for is None else sized_for
        n_examples = int((np.diff(sized_for.indptr) > 0).sum()) if self.objective == "multinomial" \
            else sized_for.nnz
        batch_size = self.config.batch_size or auto_batch_size(self.objective, n_examples)
        patience = patience or self.config.patience or auto_patience(self.objective, -(-n_examples // batch_size))
        settings = TrainSettings(
            epochs=n_epochs, batch_size=batch_size, learning_rate=learning_rate or self.config.learning_rate,
            negatives=self.config.negatives, l2=self.config.l2,
            patience=patience if validation is not None else n_epochs, seed=self.seed,
        )
        device = pick_device()
        if self.objective == "multinomial":
            report = train_multinomial(self.module, interactions, settings, validate=validate, device=device)
        else:
            report = train_pointwise(self.module, interactions, settings, validate=validate, device=device)
        self.module.to("cpu").eval()
        return report

    def forget_users(self, rows: np.ndarray) -> int:
        if self.module is None or len(rows) == 0:
            return 0
        rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        state = self.module.state_dict()
        cleared = 0
        with torch.no_grad():
            for key, (space, _) in self.id_tables.items():
                if space == "user" and key in state:  # NCF's variants hold one part or both
                    cleared += int(state[key][rows].numel())
                    state[key][rows] = 0
            for name in self.per_user_bags:
                cleared += getattr(self.module, name).clear_rows(rows)
        return cleared

    def state(self) -> dict[str, np.ndarray]:
        arrays = {f"param.{k}": v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        arrays.update({f"shape.{k}": np.array(v) for k, v in self.shapes.items()})
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.shapes = {k[6:]: int(v) for k, v in arrays.items() if k.startswith("shape.")}
        self.module = self.build_module(self.shapes)
        self.module.load_state_dict({k[6:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("param.")})
        self.module.eval()

    def config_dict(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> "NeuralRecommender":
        return cls(cls.config_class(**config["config"]), seed=config["seed"])


def weights(table: nn.Module) -> np.ndarray:
    return table.weight.detach().cpu().numpy()
