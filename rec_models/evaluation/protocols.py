"""The offline protocols, defined exactly so numbers compare with published and measured anchors.

Every interaction counts (on MovieLens, every rating). Users and items are dataset rows.
- A (leave-last-one-out, He et al.): each user's latest interaction (ties: larger item id) is the
  test item. A-full ranks it among every item the user has not interacted with in training; A-100
  among 99 sampled negatives. Ties count against the positive.
- A-temporal: each user's latest 20% of interactions (at least one) are test; full ranking.
- B (cold-start users): 20% of users held out entirely and scored from their features only.
- C (similar items sanity): share of top-10 neighbours sharing a genre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse

from rec_models.data.dataset import Dataset
from rec_models.evaluation.metrics import Recommender, evaluate_model

BLOCK_USERS = 256


def _latest_first_order(data: Dataset) -> np.ndarray:
    """View indices sorted by user, then time, then item id (so 'latest' breaks ties by larger id)."""
    return np.lexsort((data.view_video, data.viewed_at, data.view_user))


def last_one_out(data: Dataset) -> np.ndarray:
    """Boolean per view: the user's latest interaction (ties: larger item id)."""
    order = _latest_first_order(data)
    users = data.view_user[order]
    last = np.r_[users[1:] != users[:-1], True]
    test = np.zeros(len(order), dtype=bool)
    test[order[last]] = True
    return test


def latest_fraction(data: Dataset, fraction: float = 0.2) -> np.ndarray:
    """Boolean per view: the user's latest ``fraction`` of interactions, at least one (floor otherwise)."""
    order = _latest_first_order(data)
    users = data.view_user[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.arange(len(order)) - starts[users]  # 0 = oldest
    n_test = np.maximum(1, np.floor(fraction * counts).astype(np.int64))
    test = np.zeros(len(order), dtype=bool)
    test[order] = position >= counts[users] - n_test[users]
    return test


def cold_users(data: Dataset, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """User rows held out entirely: the first ``fraction`` of a default_rng(seed) permutation."""
    permuted = np.random.default_rng(seed).permutation(data.n_users)
    return np.sort(permuted[: int(round(fraction * data.n_users))])


@dataclass
class PositiveRanks:
    """Per user: rank of the held-out item among its candidates (0 = first), ties against it."""

    ranks: np.ndarray

    def hr(self, k: int = 10) -> np.ndarray:
        return (self.ranks < k).astype(float)

    def ndcg(self, k: int = 10) -> np.ndarray:
        return np.where(self.ranks < k, 1.0 / np.log2(self.ranks + 2.0), 0.0)


def _rank_positives(model: Recommender, data: Dataset, users: np.ndarray, positives: np.ndarray,
                    candidates_of) -> PositiveRanks:
    """Per user, how many of its candidates score >= its positive (ties count against the positive).
    ``candidates_of(rows, scores, r)`` turns a score block into the candidates' scores (-inf = none)."""
    score = model.score_rows(data, torch.device("cpu"))
    ranks = np.empty(len(users), dtype=np.int64)
    for start in range(0, len(users), BLOCK_USERS):
        at = slice(start, start + BLOCK_USERS)
        rows = users[at]
        scores = score(rows).numpy().astype(np.float64)
        r = np.arange(len(rows))
        pos = scores[r, positives[at]]
        ranks[at] = (candidates_of(rows, scores, r, at) >= pos[:, None]).sum(1)
    return PositiveRanks(ranks)


def rank_positive_full(model: Recommender, data: Dataset, train: sparse.csr_matrix, users: np.ndarray,
                       positives: np.ndarray) -> PositiveRanks:
    """A-full: every item not in the user's training interactions, other than the positive."""

    def candidates(rows, scores, r, at):
        sub = train[rows]
        scores[np.repeat(r, np.diff(sub.indptr)), sub.indices] = -np.inf
        scores[r, positives[at]] = -np.inf
        return scores

    return _rank_positives(model, data, users, positives, candidates)


def sampled_negatives(data: Dataset, users: np.ndarray, interacted: sparse.csr_matrix, n: int = 99,
                      seed: int = 0) -> np.ndarray:
    """A-100 negatives: users in id order, rng.choice(pool, n, replace=False) from never-interacted items."""
    rng = np.random.default_rng(seed)
    negatives = np.empty((len(users), n), dtype=np.int64)
    all_items = np.arange(data.n_videos)
    for i in np.argsort(data.user_ids[users], kind="stable"):
        pool = np.setdiff1d(all_items, interacted[users[i]].indices, assume_unique=True)
        if len(pool) < n:
            raise ValueError(f"user {data.user_ids[users[i]]} has only {len(pool)} never-interacted items; need {n}")
        negatives[i] = rng.choice(pool, n, replace=False)
    return negatives


def rank_positive_sampled(model: Recommender, data: Dataset, users: np.ndarray, positives: np.ndarray,
                          negatives: np.ndarray) -> PositiveRanks:
    """A-100: the positive against its sampled negatives only."""
    return _rank_positives(model, data, users, positives,
                           lambda rows, scores, r, at: scores[r[:, None], negatives[at]])


def cold_user_metrics(model: Recommender, data: Dataset, users: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """B: per held-out user Recall@k, Precision@k and NDCG@k; relevance = all their interactions."""
    relevant = data.interactions().tocsr()
    users = users[np.diff(relevant[users].indptr) > 0]
    metrics = evaluate_model(model, data, sparse.csr_matrix(relevant.shape, dtype=np.float32), relevant, users, k=k)
    hits = metrics.per_user_recall * np.diff(relevant[users].indptr)
    return {"recall": metrics.per_user_recall, "precision": hits / k, "ndcg": metrics.per_user_ndcg}


def genre_share(model: Recommender, train: sparse.csr_matrix, item_genres: list[set[str]], k: int = 10,
                min_interactions: int = 20) -> float:
    """C: share of each item's top-k neighbours that share a genre with it."""
    items = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() >= min_interactions)
    shared = []
    for block in model.similar_items(items, k):
        for q, row in zip(block.queries, block.items):
            shared.extend(bool(item_genres[q] & item_genres[j]) for j in row)
    return float(np.mean(shared)) if shared else float("nan")
