"""Content-boosted two-tower model.

User tower: the weighted bag of the user's features (for the video service: the domains they visit,
the month's visits and, weighted in beside them, the last days', so a changed interest is heard)
plus the bag of videos they watched (YouTube-DNN style, in place of a per-user id embedding: it needs
no table of users and knows a user by what they did). Item tower: a video id embedding plus the bag
of its content tokens (title, description, tags). Score = dot product (+ a video bias).

Trained as a multinomial denoising model (Mult-DAE): each user predicts their whole history with a
softmax over every video, from a randomly thinned history. Whole histories and video ids are hidden
at random, so each feature tower also works alone: the domain tower serves users known only by their
domains, the content tower places videos known only by their content.

Training reads every view alike; when a user is scored, their recent views weigh more, as EASE with a
recency-weighted history row does: what the user watched lately says most about what they watch next,
while the tower learns best from whole histories. How much more is chosen after each fit on the
validation split (``choose_history_half_life``): where interests drift, the last few views.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from scipy import sparse
from torch import nn

from rec_models.config import TwoTowerConfig
from rec_models.data.dataset import Dataset
from rec_models.evaluation import evaluate_model
from rec_models.models.base import unit_rows
from rec_models.models.neural import VALIDATION_USERS, NeuralRecommender
from rec_models.names import TWO_TOWER

log = logging.getLogger(__name__)
# The scoring half-lives (in views) a fit chooses from, beside the configured one.
HALF_LIFE_CHOICES = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0)


class Bags(nn.Module):
    """A CSR matrix of (row -> weighted ids) kept as buffers, gathered per batch for EmbeddingBag."""

    def __init__(self, n_rows: int, nnz: int, persistent: bool = True):
        super().__init__()
        for name, size, dtype in (("indptr", n_rows + 1, torch.int64), ("indices", nnz, torch.int64),
                                  ("values", nnz, torch.float32)):
            self.register_buffer(name, torch.zeros(size, dtype=dtype), persistent=persistent)

    def set(self, matrix: sparse.csr_matrix, norm: str = "sum") -> None:
        """Row weights scaled to sum to 1 ("sum") or to unit length ("l2"); each row's order is kept."""
        matrix = sparse.csr_matrix(matrix)
        data = matrix.data.astype(np.float64)
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        size = np.bincount(rows, weights=data if norm == "sum" else data * data, minlength=matrix.shape[0])
        size = size if norm == "sum" else np.sqrt(size)
        scale = np.divide(1.0, size, out=np.zeros_like(size), where=size > 0)
        self.indptr = torch.as_tensor(matrix.indptr.astype(np.int64))
        self.indices = torch.as_tensor(matrix.indices.astype(np.int64))
        self.values = torch.as_tensor((data * scale[rows]).astype(np.float32))

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, offsets, weights, row of each id) of the given rows, concatenated."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        offsets = torch.cumsum(lengths, 0) - lengths
        within = torch.arange(int(lengths.sum()), device=rows.device) - torch.repeat_interleave(offsets, lengths)
        positions = torch.repeat_interleave(starts, lengths) + within
        owner = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), lengths)
        return self.indices[positions], offsets, self.values[positions], owner

    @torch.no_grad()
    def clear_rows(self, rows: torch.Tensor) -> int:
        """Empty these rows in place (ids 0, weights 0: the row embeds to zero, its ids are gone);
        returns the entries cleared. The layout stays, so other rows keep their offsets."""
        cleared = 0
        for row in rows.tolist():
            start, stop = int(self.indptr[row]), int(self.indptr[row + 1])
            self.indices[start:stop] = 0
            self.values[start:stop] = 0
            cleared += stop - start
        return cleared

    def embed(self, table: nn.EmbeddingBag, rows: torch.Tensor) -> torch.Tensor:
        ids, offsets, weights, _ = self.gather(rows)
        return table(ids, offsets, per_sample_weights=weights)


class TwoTowerModule(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_user_features: int, n_item_features: int,
                 user_feature_nnz: int, item_feature_nnz: int, history_nnz: int, config: TwoTowerConfig):
        super().__init__()
        dim = config.dim
        self.config = config
        self.user_feature = nn.EmbeddingBag(max(1, n_user_features), dim, mode="sum")
        self.user_history = nn.EmbeddingBag(n_items, dim, mode="sum")
        self.item_id = nn.Embedding(n_items, dim)
        self.item_feature = nn.EmbeddingBag(max(1, n_item_features), dim, mode="sum")
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        for table in (self.user_feature, self.user_history, self.item_id, self.item_feature):
            nn.init.normal_(table.weight, std=0.01)
        self.user_bags = Bags(n_users, user_feature_nnz)
        # The histories users are scored from (recency-weighted; saved with the model) and the plain
        # ones training reads (rebuilt from the data whenever the model trains, so not saved).
        self.history = Bags(n_users, history_nnz)
        self.train_history = Bags(n_users, history_nnz, persistent=False)
        self.item_bags = Bags(n_items, item_feature_nnz)
        # Which video ids were learned from views: the others (new videos) are placed by content alone.
        self.register_buffer("item_known", torch.zeros(n_items, dtype=torch.bool))
        self.register_buffer("user_feature_known", torch.zeros(max(1, n_user_features), dtype=torch.bool))
        self.register_buffer("n_users_trained", torch.zeros((), dtype=torch.float32))

    def encode(self, users: torch.Tensor, history: tuple | None) -> torch.Tensor:
        """The user vector from the user's feature bag plus ``history`` (ids, offsets, weights) if any."""
        vec = self.user_bags.embed(self.user_feature, users)
        if history is not None:
            ids, offsets, weights = history
            vec = vec + self.user_history(ids, offsets, per_sample_weights=weights)
        # Mult-DAE's encoder nonlinearity (Liang et al. 2018): the bags' sum through tanh.
        return torch.tanh(vec) if self.config.user_activation == "tanh" else vec

    def user_tower(self, users: torch.Tensor, use_history: bool = True) -> torch.Tensor:
        """Users as scored: their features and their recency-weighted history."""
        return self.encode(users, self.history.gather(users)[:3] if use_history else None)

    def training_inputs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One training step's (user vectors, target video ids, target owner rows).

        Most users reconstruct their whole history from a thinned copy of it (Mult-DAE). A share
        (``future_share``) instead predicts the views after a random point of their history from the
        views before it, weighted by recency from that point as scoring weighs them: the step the
        model takes every night. A share (``domains_only_share``) sees no history at all: their domains
        alone predict the same targets."""
        config = self.config
        ids, offsets, _, owner = self.train_history.gather(users)
        n = len(users)
        lengths = torch.bincount(owner, minlength=n)
        position = torch.arange(len(ids), device=ids.device) - offsets[owner]
        future = (torch.rand(n, device=ids.device) < config.future_share) & (lengths >= 2)
        cut = torch.where(future, 1 + (torch.rand(n, device=ids.device) * (lengths - 1)).long(), lengths)
        is_input = position < cut[owner]
        weights = is_input.float()
        if config.history_half_life:
            decay = torch.exp2(-(cut[owner] - 1 - position).clamp(min=0) / config.history_half_life)
            weights = torch.where(future[owner], weights * decay, weights)
        norms = torch.zeros(n, device=ids.device).index_add_(0, owner, weights * weights).sqrt()
        weights = weights / norms.clamp(min=1e-12)[owner]
        keep = 1 - config.history_dropout
        weights = weights * (torch.rand(weights.shape, device=weights.device) < keep).float() / keep
        shown = (torch.rand(n, device=ids.device) >= config.domains_only_share).float()
        vectors = self.encode(users, (ids, offsets, weights * shown[owner]))
        target = ~is_input | ~future[owner]
        return vectors, ids[target], owner[target]

    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:
        items = torch.arange(len(self.item_known), device=self.item_known.device) if items is None else items
        vec = self.item_bags.embed(self.item_feature, items)
        keep = self.item_known[items].float()
        if self.training and self.config.id_dropout > 0:
            keep = keep * (torch.rand(keep.shape, device=keep.device) >= self.config.id_dropout).float()
        return vec + self.item_id(items) * keep[:, None]

    def bias(self) -> torch.Tensor:
        return self.item_bias * self.item_known.float()

    def multinomial_loss(self, users: torch.Tensor) -> torch.Tensor:
        """Each user's targets (``training_inputs``) under a softmax over every video, or, for large
        catalogues, over the batch's videos plus uniformly sampled ones (sampled softmax)."""
        user_vectors, targets, owner = self.training_inputs(users)
        n_items = len(self.item_known)
        if n_items > self.config.full_softmax_max_videos:
            sampled = torch.randint(0, n_items, (self.config.sampled_videos,), device=users.device)
            candidates, inverse = torch.unique(torch.cat([targets, sampled]), return_inverse=True)
            targets = inverse[: len(targets)]
            logits = user_vectors @ self.item_tower(candidates).T + self.bias()[candidates]
        else:
            logits = user_vectors @ self.item_tower().T + self.bias()
        # The log-likelihood of each user's videos, gathered (no dense targets matrix).
        nll = -torch.log_softmax(logits, dim=1)[owner, targets].sum() / len(users)
        penalty = sum(p.pow(2).sum() for p in (self.user_feature.weight, self.user_history.weight,
                                               self.item_id.weight, self.item_feature.weight))
        return nll + self.config.l2 * penalty / self.n_users_trained.clamp(min=1)


class TwoTower(NeuralRecommender):
    name = TWO_TOWER
    config_class = TwoTowerConfig
    content_aware = True
    serves_warm_users = True
    objective = "multinomial"
    # New videos start from their content alone (id and history rows zero), new domains and tokens
    # from nothing: the feature towers place what is new.
    id_tables = {"user_feature.weight": ("user_feature", "zero"), "user_history.weight": ("video", "zero"),
                 "item_id.weight": ("video", "zero"), "item_feature.weight": ("item_feature", "zero"),
                 "item_bias": ("video", "zero")}
    per_user_bags = ("user_bags", "history", "train_history")

    def __init__(self, config: TwoTowerConfig | None = None, seed: int = 42):
        super().__init__(config, seed)
        self._use_history = True
        self.scoring_half_life = self.config.history_half_life  # until a fit chooses on validation

    def fit(self, data: Dataset, *, before: float | None = None, validation=None, epochs: int | None = None):
        report = super().fit(data, before=before, validation=validation, epochs=epochs)
        self._choose_scoring_half_life(data, before, validation)
        return report

    def fit_warm(self, data: Dataset, warm, *, before: float | None = None, validation=None):
        report = super().fit_warm(data, warm, before=before, validation=validation)
        self._choose_scoring_half_life(data, before, validation)
        return report

    def carry(self, data: Dataset, parent, parent_ids, before: float | None = None):
        if isinstance(parent, TwoTower):
            self.scoring_half_life = parent.scoring_half_life  # scored as the parent scored its users
        return super().carry(data, parent, parent_ids, before=before)

    def _choose_scoring_half_life(self, data: Dataset, before: float | None, validation) -> None:
        """The scoring half-life with the best validation NDCG@10 (on the same users early stopping reads)."""
        config = self.config
        if validation is None or not config.choose_history_half_life or not config.history_half_life:
            return
        users = np.random.default_rng(self.seed).permutation(validation.test_users)[:VALIDATION_USERS]
        scored, best = {}, None
        for half_life, history in data.recency_weighted_each(before, sorted({*HALF_LIFE_CHOICES,
                                                                             config.history_half_life})):
            self.module.history.set(history, norm="l2")
            scored[half_life] = evaluate_model(self, data, validation.train, validation.test, users, k=10).ndcg
            # Ties keep the configured half-life.
            if best is None or (scored[half_life], half_life == config.history_half_life) > best[0]:
                best = (scored[half_life], half_life == config.history_half_life), half_life, history
        _, self.scoring_half_life, history = best
        self.module.history.set(history, norm="l2")
        log.info("two_tower scores users' views with a half-life of %g views (validation NDCG@10 %s)",
                 self.scoring_half_life, {h: round(v, 4) for h, v in scored.items()})

    def features_only(self) -> "TwoTower":
        """The same weights, scoring every user from their domains alone (their views left out)."""
        view = copy.copy(self)
        view._use_history = False
        return view

    def shapes_for(self, data: Dataset) -> dict[str, int]:
        return {"n_users": data.n_users, "n_items": data.n_videos,
                "n_user_features": data.user_features.shape[1], "n_item_features": data.item_features.shape[1],
                "user_feature_nnz": data.user_features.nnz, "item_feature_nnz": data.item_features.nnz,
                "history_nnz": 0}

    def build_module(self, shapes):
        return TwoTowerModule(shapes["n_users"], shapes["n_items"], shapes["n_user_features"],
                              shapes["n_item_features"], shapes["user_feature_nnz"], shapes["item_feature_nnz"],
                              shapes["history_nnz"], self.config)

    def prepare(self, data: Dataset, interactions, before: float | None = None) -> None:
        """Attach the feature bags and the histories the towers read (rebuilding the module to their sizes)."""
        half_life = self.scoring_half_life
        scored_history = data.recency_weighted(before, half_life) if half_life else interactions
        self.shapes["history_nnz"] = scored_history.nnz
        domains = data.domain_bags(self.config.domain_half_life_days, self.config.domain_recent_weight)
        self.shapes["user_feature_nnz"] = domains.nnz
        torch.manual_seed(self.seed)
        self.module = self.build_module(self.shapes)
        self.module.user_bags.set(domains)
        self.module.history.set(scored_history, norm="l2")
        self.module.train_history.set(data.ordered_views(before), norm="l2")
        self.module.item_bags.set(data.item_features)
        has_views = np.diff(interactions.indptr) > 0
        self.module.item_known = torch.as_tensor(np.asarray(interactions.sum(axis=0)).ravel() > 0)
        learned = np.asarray(data.user_features[has_views].sum(axis=0)).ravel() > 0
        self.module.user_feature_known[: len(learned)] = torch.as_tensor(learned)
        self.module.n_users_trained = torch.tensor(float(has_views.sum()))

    @torch.no_grad()
    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        vec = self.module.user_tower(torch.as_tensor(np.asarray(users, dtype=np.int64)),
                                     use_history=self._use_history)
        return np.hstack([vec.numpy(), np.ones((len(users), 1), dtype=np.float32)])

    @torch.no_grad()
    def item_vectors(self) -> np.ndarray:
        return np.hstack([self.module.item_tower().numpy(), self.module.bias().numpy()[:, None]])

    @torch.no_grad()
    def similarity_vectors(self) -> np.ndarray:
        return unit_rows(self.module.item_tower().numpy())  # without the bias column

    def known_items(self) -> np.ndarray:
        return self.module.item_known.numpy()

    def state(self) -> dict[str, np.ndarray]:
        return {**super().state(), "scoring_half_life": np.array(self.scoring_half_life)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        super().load_state(arrays)
        if "scoring_half_life" in arrays:  # saved before it was chosen: the configured one
            self.scoring_half_life = float(arrays["scoring_half_life"])

    def warm_features(self) -> np.ndarray:
        """User feature columns the tower learned (in the bag of some user with views)."""
        return np.flatnonzero(self.module.user_feature_known.numpy())
