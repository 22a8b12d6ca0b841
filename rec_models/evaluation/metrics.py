"""Ranking metrics under full ranking (every video not seen in training is a candidate).

HR@K, Recall@K (hits / relevant), NDCG@K (binary relevance) averaged over users, and catalogue
coverage (share of videos appearing in any top-K list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy import sparse

from rec_models.data.dataset import Dataset
from rec_models.topn import TopNBlock, top_n
from rec_models.threads import rebalance_torch_threads


class Recommender(Protocol):
    """What evaluation needs of a model (rec_models.models.base.Recommender has it; evaluation sits
    below the models, so it names the methods instead of importing the class)."""

    def recommend(self, data: Dataset, users: np.ndarray, k: int, *,
                  seen: sparse.csr_matrix | None = None) -> Iterator[TopNBlock]: ...

    def score_rows(self, data: Dataset, device: torch.device | None = None
                   ) -> Callable[[np.ndarray], torch.Tensor]: ...

    def similar_items(self, items: np.ndarray, k: int) -> Iterator[TopNBlock]: ...


@dataclass
class RankingMetrics:
    k: int
    users: int
    hr: float
    recall: float
    ndcg: float
    coverage: float
    per_user_ndcg: np.ndarray
    per_user_recall: np.ndarray

    def as_dict(self) -> dict[str, float]:
        k = self.k
        return {"users": self.users, f"hr@{k}": self.hr, f"recall@{k}": self.recall, f"ndcg@{k}": self.ndcg,
                f"coverage@{k}": self.coverage}


def evaluate_ranking(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    train: sparse.csr_matrix,
    test: sparse.csr_matrix,
    users: np.ndarray,
    k: int = 10,
) -> RankingMetrics:
    """Rank all items for ``users`` (rows of user_vectors align with train/test rows), seen excluded."""
    return evaluate_blocks(top_n(user_vectors, item_vectors, k, query_rows=users, exclude=train),
                           test, len(users), item_vectors.shape[0], k)


def evaluate_model(model: Recommender, data: Dataset, train: sparse.csr_matrix, test: sparse.csr_matrix,
                   users: np.ndarray, k: int = 10) -> RankingMetrics:
    """Full-ranking metrics of any model (dot product or not) through its recommend()."""
    return evaluate_blocks(model.recommend(data, users, k, seen=train), test, len(users), data.n_videos, k)


def evaluate_blocks(blocks, test: sparse.csr_matrix, n_users: int, n_items: int, k: int) -> RankingMetrics:
    """Metrics from top-k blocks that cover the evaluated users in order."""
    test = test.tocsr()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcg = np.zeros(n_users)
    recall = np.zeros(n_users)
    hit = np.zeros(n_users, dtype=bool)
    recommended = np.zeros(n_items, dtype=bool)
    for block in blocks:
        rebalance_torch_threads()  # alone on the machine now? then on every core
        rel = test[block.queries]
        n_rel = np.diff(rel.indptr)
        hits = _hits(rel, block.items) & block.valid
        at = slice(block.start, block.start + len(block.queries))
        ndcg[at] = (hits * discounts[: hits.shape[1]]).sum(1) / np.array([discounts[: min(n, k)].sum() for n in n_rel])
        recall[at] = hits.sum(1) / n_rel
        hit[at] = hits.any(1)
        recommended[block.items[block.valid]] = True
    return RankingMetrics(
        k=k, users=n_users, hr=float(hit.mean()) if n_users else 0.0,
        recall=float(recall.mean()) if n_users else 0.0, ndcg=float(ndcg.mean()) if n_users else 0.0,
        coverage=float(recommended.mean()), per_user_ndcg=ndcg, per_user_recall=recall,
    )


def _hits(relevant: sparse.csr_matrix, items: np.ndarray) -> np.ndarray:
    """hits[i, j] = items[i, j] is among row i's relevant columns."""
    rows = np.repeat(np.arange(relevant.shape[0]), np.diff(relevant.indptr))
    key_rel = rows * relevant.shape[1] + relevant.indices
    key_top = np.arange(items.shape[0])[:, None] * relevant.shape[1] + items
    return np.isin(key_top, key_rel)
