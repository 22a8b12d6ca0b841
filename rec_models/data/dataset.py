"""The one data object of a run, built once from the snapshot and shared by every model.

Holds the id maps, the view interactions (deduplicated user x video, as CSR), the time-based
holdout split, and each user's bag of domains. Rows and columns are dense indices; ``user_ids`` and
``video_ids`` map them back to the source ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from rec_models.data.snapshot import Snapshot

DAY = 86_400


@dataclass
class Split:
    """Interactions before a boundary (train) and the new (user, video) pairs after it (test)."""

    train: sparse.csr_matrix
    test: sparse.csr_matrix
    boundary: float

    @property
    def test_users(self) -> np.ndarray:
        """Users who have something to predict and a history to predict it from."""
        has_test = np.diff(self.test.indptr) > 0
        has_train = np.diff(self.train.indptr) > 0
        return np.flatnonzero(has_test & has_train)


@dataclass
class Dataset:
    user_ids: np.ndarray  # sorted source ids of every user seen (views or domains)
    video_ids: np.ndarray  # sorted source ids of every valid video
    video_active: np.ndarray  # bool per video
    view_user: np.ndarray  # per view (not deduplicated), dense indices
    view_video: np.ndarray
    viewed_at: np.ndarray
    domain_bags: sparse.csr_matrix  # users x domains, log1p(visits) weights
    domains: list[str]
    end: float
    video_text: dict[int, dict]

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> "Dataset":
        video_ids = np.unique(snap.video_id)
        user_ids = np.unique(np.concatenate([snap.view_user, snap.visit_user]))
        active = np.zeros(len(video_ids), dtype=bool)
        active[np.searchsorted(video_ids, snap.video_id)] = snap.is_active
        vu = np.searchsorted(user_ids, snap.view_user)
        vv = np.searchsorted(video_ids, snap.view_video)
        du = np.searchsorted(user_ids, snap.visit_user)
        bags = sparse.csr_matrix(
            (snap.visits.astype(np.float32), (du, snap.visit_domain)), shape=(len(user_ids), len(snap.domains))
        )
        bags.sum_duplicates()
        bags.data = np.log1p(bags.data)
        return cls(
            user_ids=user_ids, video_ids=video_ids, video_active=active,
            view_user=vu.astype(np.int64), view_video=vv.astype(np.int64), viewed_at=snap.viewed_at,
            domain_bags=bags, domains=list(snap.domains), end=snap.end, video_text=snap.video_text,
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_videos(self) -> int:
        return len(self.video_ids)

    def interactions(self, before: float | None = None) -> sparse.csr_matrix:
        """Binary user x video matrix of views strictly before ``before`` (all views when None)."""
        keep = slice(None) if before is None else self.viewed_at < before
        return _binary(self.view_user[keep], self.view_video[keep], self.n_users, self.n_videos)

    def split(self, boundary: float) -> Split:
        """Train on views before ``boundary``; test on pairs first seen from it on (repeats excluded)."""
        train = self.interactions(boundary)
        after = self.viewed_at >= boundary
        test = _binary(self.view_user[after], self.view_video[after], self.n_users, self.n_videos)
        test = test - test.multiply(train)  # a rewatch is not a discovery
        test.eliminate_zeros()
        return Split(train=train, test=test.tocsr(), boundary=boundary)

    def holdout(self, days: int) -> Split:
        """The evaluation split: the last ``days`` days before the data interval end."""
        return self.split(self.end - days * DAY)

    def validation(self, days: int) -> Split:
        """Early-stopping split cut from training data only: the ``days`` before the holdout."""
        boundary = self.end - days * DAY
        inner = self.split(boundary - days * DAY)
        keep_before = self.viewed_at < boundary
        sub = _binary(self.view_user[keep_before], self.view_video[keep_before], self.n_users, self.n_videos)
        test = (sub - sub.multiply(inner.train)).tocsr()
        test.eliminate_zeros()
        return Split(train=inner.train, test=test, boundary=inner.boundary)

    def segments(self, interactions: sparse.csr_matrix, known_domains: np.ndarray) -> dict[str, np.ndarray]:
        """Route every user: hot (has views), warm (no views, some known domain), cold (neither)."""
        has_views = np.diff(interactions.indptr) > 0
        bag_known = self.domain_bags[:, known_domains] if len(known_domains) else None
        has_domains = np.zeros(self.n_users, dtype=bool) if bag_known is None else np.diff(bag_known.tocsr().indptr) > 0
        return {
            "hot": np.flatnonzero(has_views),
            "warm": np.flatnonzero(~has_views & has_domains),
            "cold": np.flatnonzero(~has_views & ~has_domains),
        }


def _binary(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    m = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_rows, n_cols))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m
