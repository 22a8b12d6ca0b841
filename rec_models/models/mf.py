"""Matrix factorisation trained as a neural net (Funk SVD): user and video embeddings plus biases,
score = dot product, fitted with BCE on sampled negatives by the shared trainer."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from rec_models.config import MFConfig
from rec_models.data.dataset import Dataset, Split
from rec_models.evaluation import evaluate_ranking
from rec_models.models.base import FitReport, Recommender
from rec_models.training import TrainSettings, train_pointwise

# Early stopping evaluates on at most this many validation users (enough for a stable signal).
_VALIDATION_USERS = 2000


class MFModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim, sparse=True)
        self.item = nn.Embedding(n_items, dim, sparse=True)
        self.user_bias = nn.Embedding(n_users, 1, sparse=True)
        self.item_bias = nn.Embedding(n_items, 1, sparse=True)
        for table in (self.user, self.item):
            nn.init.normal_(table.weight, std=0.1)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user(users) * self.item(items)).sum(-1)
        return dot + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)

    def l2(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user(users).pow(2).sum(-1) + self.item(items).pow(2).sum(-1)).mean()


class MatrixFactorization(Recommender):
    name = "mf"

    def __init__(self, config: MFConfig | None = None, seed: int = 42):
        self.config = config or MFConfig()
        self.seed = seed
        self.user_factors = np.zeros((0, self.config.dim), dtype=np.float32)
        self.item_factors = np.zeros((0, self.config.dim), dtype=np.float32)
        self.item_bias = np.zeros(0, dtype=np.float32)

    def fit(self, data: Dataset, before: float | None = None, validation: Split | None = None,
            epochs: int | None = None) -> FitReport:
        interactions = data.interactions(before)
        torch.manual_seed(self.seed)
        module = MFModule(data.n_users, data.n_videos, self.config.dim)
        validate = None
        if validation is not None:
            users = validation.test_users
            users = np.random.default_rng(self.seed).permutation(users)[:_VALIDATION_USERS]

            def validate() -> float:
                self._export(module)
                return evaluate_ranking(self.user_factors_with_bias(), self.item_vectors(), validation.train,
                                        validation.test, users, k=10).ndcg

        settings = TrainSettings(
            epochs=epochs or self.config.epochs, batch_size=self.config.batch_size,
            learning_rate=self.config.learning_rate, negatives=self.config.negatives, l2=self.config.l2,
            patience=self.config.patience if validation is not None else (epochs or self.config.epochs),
            seed=self.seed,
        )
        report = train_pointwise(module, interactions, settings, validate=validate, regularised=module.l2)
        self._export(module)
        return report

    def _export(self, module: MFModule) -> None:
        self.user_factors = module.user.weight.detach().cpu().numpy().copy()
        self.item_factors = module.item.weight.detach().cpu().numpy().copy()
        self.item_bias = module.item_bias.weight.detach().cpu().numpy().ravel().copy()

    def user_factors_with_bias(self) -> np.ndarray:
        # [p_u, 1] . [q_i, b_i] = p_u . q_i + b_i; the user bias does not change a user's ranking.
        return np.hstack([self.user_factors, np.ones((len(self.user_factors), 1), dtype=np.float32)])

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        return self.user_factors_with_bias()[users]

    def item_vectors(self) -> np.ndarray:
        return np.hstack([self.item_factors, self.item_bias[:, None]])

    def similarity_vectors(self) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors, axis=1, keepdims=True)
        return self.item_factors / np.maximum(norms, 1e-12)

    def state(self):
        return {"user_factors": self.user_factors, "item_factors": self.item_factors, "item_bias": self.item_bias}

    def load_state(self, arrays):
        self.user_factors = arrays["user_factors"]
        self.item_factors = arrays["item_factors"]
        self.item_bias = arrays["item_bias"]

    def config_dict(self):
        return {"config": dataclasses.asdict(self.config), "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(MFConfig(**config["config"]), seed=config["seed"])
