"""Content-boosted two-tower model.

User tower: the weighted bag of the user's features (for the video service: the domains they visit)
plus an id embedding for users with views. Item tower: a video id embedding plus the bag of its
content tokens (title, description, tags). Score = dot product (+ a video bias). Ids are hidden at
random during training (``id_dropout``) so each feature tower also works alone: it serves users
known only by their domains and videos known only by their content.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from torch import nn

from rec_models.config import TwoTowerConfig
from rec_models.data.dataset import Dataset
from rec_models.models.neural import NeuralRecommender


class Bags(nn.Module):
    """A CSR matrix of (row -> weighted feature ids) kept as buffers, gathered per batch for EmbeddingBag."""

    def __init__(self, n_rows: int, nnz: int):
        super().__init__()
        self.register_buffer("indptr", torch.zeros(n_rows + 1, dtype=torch.int64))
        self.register_buffer("indices", torch.zeros(nnz, dtype=torch.int64))
        self.register_buffer("values", torch.zeros(nnz, dtype=torch.float32))

    def set(self, matrix: sparse.csr_matrix) -> None:
        # Each row's weights sum to 1, so a bag of 3 domains and a bag of 300 live on the same scale.
        sums = np.asarray(matrix.sum(axis=1)).ravel()
        scale = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums > 0)
        normalised = (sparse.diags(scale) @ matrix).tocsr()
        self.indptr = torch.as_tensor(normalised.indptr.astype(np.int64))
        self.indices = torch.as_tensor(normalised.indices.astype(np.int64))
        self.values = torch.as_tensor(normalised.data.astype(np.float32))

    def embed(self, table: nn.EmbeddingBag, rows: torch.Tensor) -> torch.Tensor:
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        within = torch.arange(int(lengths.sum()), device=rows.device) - torch.repeat_interleave(offsets, lengths)
        positions = torch.repeat_interleave(starts, lengths) + within
        return table(self.indices[positions], offsets, per_sample_weights=self.values[positions])


class TwoTowerModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_user_features: int, n_item_features: int,
                 user_feature_nnz: int, item_feature_nnz: int, dim: int, id_dropout: float):
        super().__init__()
        self.user_id = nn.Embedding(n_users, dim, sparse=True)
        self.item_id = nn.Embedding(n_items, dim, sparse=True)
        self.user_feature = nn.EmbeddingBag(max(1, n_user_features), dim, mode="sum", sparse=True)
        self.item_feature = nn.EmbeddingBag(max(1, n_item_features), dim, mode="sum", sparse=True)
        self.item_bias = nn.Embedding(n_items, 1, sparse=True)
        for table in (self.user_id, self.item_id, self.user_feature, self.item_feature):
            nn.init.normal_(table.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)
        self.user_bags = Bags(n_users, user_feature_nnz)
        self.item_bags = Bags(n_items, item_feature_nnz)
        # Which ids were learned from views: the others are never used (cold users and new videos).
        self.register_buffer("user_known", torch.zeros(n_users, dtype=torch.bool))
        self.register_buffer("item_known", torch.zeros(n_items, dtype=torch.bool))
        self.register_buffer("user_feature_known", torch.zeros(max(1, n_user_features), dtype=torch.bool))
        self.id_dropout = id_dropout

    def user_tower(self, users: torch.Tensor, use_ids: bool = True) -> torch.Tensor:
        vec = self.user_bags.embed(self.user_feature, users)
        if use_ids:
            keep = self._keep(self.user_known[users])
            vec = vec + self.user_id(users) * keep[:, None]
        return vec

    def item_tower(self, items: torch.Tensor, use_ids: bool = True) -> torch.Tensor:
        vec = self.item_bags.embed(self.item_feature, items)
        if use_ids:
            keep = self._keep(self.item_known[items])
            vec = vec + self.item_id(items) * keep[:, None]
        return vec

    def _keep(self, known: torch.Tensor) -> torch.Tensor:
        keep = known.float()
        if self.training and self.id_dropout > 0:
            keep = keep * (torch.rand(keep.shape, device=keep.device) >= self.id_dropout).float()
        return keep

    def forward(self, users, items):
        bias = self.item_bias(items).squeeze(-1) * self.item_known[items].float()
        return (self.user_tower(users) * self.item_tower(items)).sum(-1) + bias

    def l2(self, users, items):
        return (self.user_id(users).pow(2).sum(-1) + self.item_id(items).pow(2).sum(-1)).mean()


class TwoTower(NeuralRecommender):
    name = "two_tower"
    config_class = TwoTowerConfig
    content_aware = True

    def __init__(self, config: TwoTowerConfig | None = None, seed: int = 42):
        super().__init__(config, seed)
        # Score users from features alone even when their id is known (the warm-start evaluation).
        self.features_only = False

    def shapes_for(self, data: Dataset) -> dict[str, int]:
        return {"n_users": data.n_users, "n_items": data.n_videos,
                "n_user_features": data.user_features.shape[1], "n_item_features": data.item_features.shape[1],
                "user_feature_nnz": data.user_features.nnz, "item_feature_nnz": data.item_features.nnz}

    def build_module(self, shapes):
        return TwoTowerModule(shapes["n_users"], shapes["n_items"], shapes["n_user_features"],
                              shapes["n_item_features"], shapes["user_feature_nnz"], shapes["item_feature_nnz"],
                              self.config.dim, self.config.id_dropout)

    def prepare(self, data: Dataset, interactions) -> None:
        self.module.user_bags.set(data.user_features)
        self.module.item_bags.set(data.item_features)
        self.module.user_known = torch.as_tensor(np.diff(interactions.indptr) > 0)
        self.module.item_known = torch.as_tensor(np.asarray(interactions.sum(axis=0)).ravel() > 0)
        learned = np.asarray(data.user_features[np.diff(interactions.indptr) > 0].sum(axis=0)).ravel() > 0
        self.module.user_feature_known[: len(learned)] = torch.as_tensor(learned)

    @torch.no_grad()
    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        vec = self.module.user_tower(torch.as_tensor(np.asarray(users, dtype=np.int64)), use_ids=not self.features_only)
        return np.hstack([vec.numpy(), np.ones((len(users), 1), dtype=np.float32)])

    @torch.no_grad()
    def _items(self) -> torch.Tensor:
        return self.module.item_tower(torch.arange(self.shapes["n_items"]))

    def item_vectors(self) -> np.ndarray:
        bias = self.module.item_bias.weight.detach() * self.module.item_known.float()[:, None]
        return np.hstack([self._items().numpy(), bias.numpy()])

    def similarity_vectors(self) -> np.ndarray:
        vec = self._items().numpy()
        return vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)

    def known_items(self) -> np.ndarray:
        return self.module.item_known.numpy()

    def known_features(self) -> np.ndarray:
        """User feature columns the tower learned (in the bag of some user with views)."""
        return np.flatnonzero(self.module.user_feature_known.numpy())
