"""Recency-weighted popularity: the baseline, and the fallback for users with no usable signal."""

from __future__ import annotations

import numpy as np
from rec_models.data.dataset import DAY, Dataset
from rec_models.models.base import FitReport, Recommender
from rec_models.names import POPULARITY


class Popularity(Recommender):
    name = POPULARITY
    finds_similar_videos = False

    def __init__(self, half_life_days: float | None = 7.0):
        # None: plain counts (the classic baseline); otherwise a view loses half its weight per half-life.
        self.half_life_days = half_life_days
        self.scores = np.zeros(0, dtype=np.float32)

    def fit(self, data: Dataset, *, before: float | None = None, validation=None, epochs: int | None = None) -> FitReport:
        cutoff = data.end if before is None else before
        seen = data.viewed_at < cutoff
        if self.half_life_days is None:
            weight = np.ones(int(seen.sum()))
        else:
            weight = 0.5 ** ((cutoff - data.viewed_at[seen]) / DAY / self.half_life_days)
        counts = np.bincount(data.view_video[seen], weights=weight, minlength=data.n_videos)
        self.scores = np.log1p(counts).astype(np.float32)
        return FitReport(epochs=1, best_epoch=1)

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        return np.ones((len(users), 1), dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        return self.scores[:, None]

    def state(self):
        return {"scores": self.scores}

    def load_state(self, arrays):
        self.scores = arrays["scores"]

    def config_dict(self):
        return {"half_life_days": self.half_life_days}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
