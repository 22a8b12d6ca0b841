"""Matrix factorisation trained as a neural net (Funk SVD): user and video embeddings plus biases,
score = dot product, fitted with BCE on sampled negatives by the shared trainer."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rec_models.config import MFConfig
from rec_models.data.dataset import Dataset
from rec_models.models.base import unit_rows
from rec_models.models.neural import NeuralRecommender, weights
from rec_models.names import MF


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
        """Logits of (user, video) pairs."""
        return self.forward_with_l2(users, items[:, None])[0][:, 0]

    def forward_with_l2(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """users (B,), items (B, m): logits (B, m) and the mean L2 penalty per pair of the looked-up factors.
        Each user is looked up once for its m videos (a positive and its negatives)."""
        p, q = self.user(users), self.item(items)
        logits = torch.bmm(q, p.unsqueeze(2)).squeeze(2) + self.user_bias(users) + self.item_bias(items).squeeze(-1)
        return logits, pair_l2(p, q)


def pair_l2(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Mean over (user, video) pairs of |user|^2 + |video|^2, for users (B, d) and items (B, m, d)."""
    pairs = items.shape[0] * items.shape[1]
    return (users.pow(2).sum() * items.shape[1] + items.pow(2).sum()) / pairs


class MatrixFactorization(NeuralRecommender):
    name = MF
    config_class = MFConfig
    id_tables = {"user.weight": ("user", "mean"), "user_bias.weight": ("user", "mean"),
                 "item.weight": ("video", "mean"), "item_bias.weight": ("video", "mean")}

    def build_module(self, shapes):
        return MFModule(shapes["n_users"], shapes["n_items"], self.config.dim)

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        # [p_u, 1] . [q_i, b_i] = p_u . q_i + b_i; the user bias does not change a user's ranking.
        factors = weights(self.module.user)[users]
        return np.hstack([factors, np.ones((len(factors), 1), dtype=np.float32)])

    def item_vectors(self) -> np.ndarray:
        return np.hstack([weights(self.module.item), weights(self.module.item_bias)])

    def similarity_vectors(self) -> np.ndarray:
        return unit_rows(weights(self.module.item))  # without the bias: cosine of the factors
