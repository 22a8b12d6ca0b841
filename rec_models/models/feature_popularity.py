"""What people with your features watch; for the video service, the features are the domains a user
visits, so this serves users known only by their domains (warm start). On MovieLens the features are
demographics, and this is the "feature popularity" baseline.

score(user, video) = sum over domains d of w(user, d) * P(video | d) / P(video)^damping, where
P(video | d) is learned from users who have both domains and views (smoothed toward overall
popularity) and w is the user's visit bag weighted by inverse domain frequency. A dot product of the
user's normalised bag with each video's column.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from rec_models.data.dataset import Dataset
from rec_models.models.base import FitReport, Recommender
from rec_models.names import FEATURE_POPULARITY


class FeaturePopularity(Recommender):
    name = FEATURE_POPULARITY
    serves_warm_users = True
    finds_similar_videos = False

    def __init__(self, max_domains: int = 2048, smoothing: float = 1.0, popularity_damping: float = 0.5,
                 half_life_days: float = 0.0):
        self.max_domains = max_domains
        # Each day's visits weigh 0.5 ** (age in days / this) in a user's bag (0: every day the same).
        self.half_life_days = half_life_days
        self.smoothing = smoothing
        # P(video | domain) / P(video)^damping: 0 ranks by raw co-occurrence (the most popular videos
        # win everywhere), 1 by lift (rare videos win); halfway measured best on the synthetic holdout.
        self.popularity_damping = popularity_damping
        self.domain_rows = np.zeros(0, dtype=np.int64)  # dataset domain indices the model knows
        self.domain_idf = np.zeros(0, dtype=np.float32)
        self.video_given_domain = np.zeros((0, 0), dtype=np.float32)  # (known domains, videos)

    def fit(self, data: Dataset, *, before: float | None = None, validation=None, epochs: int | None = None) -> FitReport:
        views = data.interactions(before)
        users_per_domain = np.diff(data.user_features.tocsc().indptr)
        # Domains everybody visits say nothing about taste: weight each by its inverse user frequency.
        self.domain_idf = np.log((1.0 + data.n_users) / (1.0 + users_per_domain)).astype(np.float32)
        # The most visited domains carry the signal; the long tail of rare ones only adds noise and size.
        self.domain_rows = np.sort(np.argsort(-users_per_domain, kind="stable")[: self.max_domains])
        self.domain_rows = self.domain_rows[users_per_domain[self.domain_rows] > 0]
        self.domain_idf = self.domain_idf[self.domain_rows]
        bags = _normalise_rows(data.domain_bags(self.half_life_days)[:, self.domain_rows] @ sparse.diags(self.domain_idf))
        co = (bags.T @ views).toarray()  # (domains, videos)
        prior = np.asarray(views.sum(axis=0)).ravel() + 1.0
        prior /= prior.sum()
        totals = co.sum(axis=1, keepdims=True)
        given = (co + self.smoothing * prior) / (totals + self.smoothing)
        self.video_given_domain = (given / prior ** self.popularity_damping).astype(np.float32)
        return FitReport(epochs=1, best_epoch=1)

    def features_only(self) -> "FeaturePopularity":
        return self  # it scores every user from their features alone already

    def warm_features(self) -> np.ndarray:
        return self.domain_rows

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        bags = _normalise_rows(data.domain_bags(self.half_life_days)[users][:, self.domain_rows]
                               @ sparse.diags(self.domain_idf))
        return bags.toarray().astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        return np.ascontiguousarray(self.video_given_domain.T)

    def state(self):
        return {"domain_rows": self.domain_rows, "domain_idf": self.domain_idf,
                "video_given_domain": self.video_given_domain}

    def load_state(self, arrays):
        self.domain_rows = arrays["domain_rows"]
        self.domain_idf = arrays["domain_idf"]
        self.video_given_domain = arrays["video_given_domain"]

    def config_dict(self):
        return {"max_domains": self.max_domains, "smoothing": self.smoothing,
                "popularity_damping": self.popularity_damping, "half_life_days": self.half_life_days}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _normalise_rows(m: sparse.csr_matrix) -> sparse.csr_matrix:
    sums = np.asarray(m.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums > 0)
    return sparse.diags(scale) @ m
