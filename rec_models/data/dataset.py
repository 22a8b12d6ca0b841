"""The one data object of a run, built once from the snapshot and shared by every model.

Holds the id maps, the view interactions (deduplicated user x video, as CSR), the time-based
holdout split, each user's feature bag (for the video service: the domains they visit) and each
video's content bag (title, description and tag tokens). Rows and columns are dense indices;
``user_ids`` and ``video_ids`` map them back to the source ids.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from rec_models.data.packed import load_packed, save_packed
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
    user_features: sparse.csr_matrix  # users x user features (domains: log1p of visits)
    user_feature_names: list[str]
    item_features: sparse.csr_matrix  # videos x content tokens (log1p of counts)
    item_feature_names: list[str]
    end: float
    video_text: dict[int, dict]
    # The feature rows behind ``user_features``, one per (user, feature, day): what recency-weighted
    # bags (``domain_bags``) are built from. Days are epoch days; features without days (demographics)
    # all stand on the data's last day.
    feature_rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    feature_cols: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    feature_days: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    feature_counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    _bags: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # domain_bags by settings

    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> "Dataset":
        user_ids = np.unique(np.concatenate([snap.view_user, snap.visit_user]))
        domain_weights = (np.searchsorted(user_ids, snap.visit_user), snap.visit_domain, snap.visits)
        return cls.from_columns(
            user_ids=user_ids, video_ids=snap.video_id, video_active=snap.is_active,
            view_user_ids=snap.view_user, view_video_ids=snap.view_video, viewed_at=snap.viewed_at,
            user_feature_triples=domain_weights, user_feature_names=list(snap.domains),
            end=snap.end, video_text=snap.video_text, user_feature_days=snap.visit_date,
        )

    @classmethod
    def from_columns(cls, *, user_ids, video_ids, video_active, view_user_ids, view_video_ids, viewed_at,
                     user_feature_triples, user_feature_names, end, video_text,
                     user_feature_days=None) -> "Dataset":
        """Build from source ids; ``user_feature_triples`` = (user rows, feature columns, raw weights),
        ``user_feature_days`` the epoch day of each (None: features without a date)."""
        from rec_models.data.content import content_bags

        order = np.argsort(video_ids)
        video_ids, video_active = np.asarray(video_ids)[order], np.asarray(video_active)[order]
        user_ids = np.asarray(user_ids)
        rows, cols, weights = user_feature_triples
        features = sparse.csr_matrix((np.asarray(weights, dtype=np.float32), (rows, cols)),
                                     shape=(len(user_ids), len(user_feature_names)))
        features.sum_duplicates()
        features.data = np.log1p(features.data)
        days = np.full(len(rows), _last_day(end)) if user_feature_days is None else user_feature_days
        item_features, tokens = content_bags(video_ids, video_text)
        return cls(
            user_ids=user_ids, video_ids=video_ids, video_active=video_active.astype(bool),
            view_user=np.searchsorted(user_ids, view_user_ids).astype(np.int64),
            view_video=np.searchsorted(video_ids, view_video_ids).astype(np.int64),
            viewed_at=np.asarray(viewed_at),
            user_features=features, user_feature_names=list(user_feature_names),
            item_features=item_features, item_feature_names=tokens, end=float(end), video_text=video_text,
            feature_rows=np.asarray(rows, dtype=np.int32), feature_cols=np.asarray(cols, dtype=np.int32),
            feature_days=np.asarray(days, dtype=np.int32), feature_counts=np.asarray(weights, dtype=np.float32),
        )

    def save(self, folder: Path) -> None:
        """Persist the built object, so every task of a run loads it instead of rebuilding it."""
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        for name in _MATRICES:
            matrix = getattr(self, name).tocsr()
            arrays.update({f"{name}.data": matrix.data, f"{name}.indices": matrix.indices,
                           f"{name}.indptr": matrix.indptr, f"{name}.shape": np.array(matrix.shape)})
        save_packed(tmp / "arrays.npz", **arrays)
        (tmp / "meta.json").write_text(json.dumps({
            "user_feature_names": self.user_feature_names, "item_feature_names": self.item_feature_names,
            "end": self.end, "video_text": {str(k): v for k, v in self.video_text.items()}}))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)

    @classmethod
    def load(cls, folder: Path) -> "Dataset":
        meta = json.loads((folder / "meta.json").read_text())
        arrays = load_packed(folder / "arrays.npz")
        fields = {name: arrays[name] for name in _ARRAYS if name in arrays}  # older runs: no days
        for name in _MATRICES:
            fields[name] = sparse.csr_matrix(
                (arrays[f"{name}.data"], arrays[f"{name}.indices"], arrays[f"{name}.indptr"]),
                shape=tuple(int(n) for n in arrays[f"{name}.shape"]))
        return cls(**fields, user_feature_names=meta["user_feature_names"],
                   item_feature_names=meta["item_feature_names"], end=meta["end"],
                   video_text={int(k): v for k, v in meta["video_text"].items()})

    def with_views(self, keep: np.ndarray) -> "Dataset":
        """The same users, videos and features with only the views where ``keep`` is true (protocol splits)."""
        return dataclasses.replace(self, view_user=self.view_user[keep], view_video=self.view_video[keep],
                                   viewed_at=self.viewed_at[keep], _bags=self._bags)

    def split_by_views(self, test: np.ndarray) -> Split:
        """A Split whose test pairs are the views flagged in ``test`` (minus pairs also in training)."""
        train = _binary(self.view_user[~test], self.view_video[~test], self.n_users, self.n_videos)
        held = _binary(self.view_user[test], self.view_video[test], self.n_users, self.n_videos)
        held = (held - held.multiply(train)).tocsr()
        held.eliminate_zeros()
        return Split(train=train, test=held, boundary=float("nan"))

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_videos(self) -> int:
        return len(self.video_ids)

    @property
    def n_views(self) -> int:
        return len(self.view_user)

    def interactions(self, before: float | None = None) -> sparse.csr_matrix:
        """Binary user x video matrix of views strictly before ``before`` (all views when None)."""
        keep = slice(None) if before is None else self.viewed_at < before
        return _binary(self.view_user[keep], self.view_video[keep], self.n_users, self.n_videos)

    def recency_weighted(self, before: float | None, half_life_views: float) -> sparse.csr_matrix:
        """User x video of views strictly before ``before``, each view weighing 0.5 ** (its rank from the
        user's latest view / ``half_life_views``) (ties in time: the larger video id is the later);
        repeated views of a video add up."""
        return next(self.recency_weighted_each(before, (half_life_views,)))[1]

    def recency_weighted_each(self, before: float | None, half_lives) -> Iterator[tuple[float, sparse.csr_matrix]]:
        """(half-life, ``recency_weighted``) for several half-lives, one at a time, the views sorted once."""
        keep = slice(None) if before is None else self.viewed_at < before
        users, videos, times = self.view_user[keep], self.view_video[keep], self.viewed_at[keep]
        order = np.lexsort((videos, times, users))
        users, videos = users[order], videos[order]
        ends = np.cumsum(np.bincount(users, minlength=self.n_users))
        rank_from_latest = ends[users] - 1 - np.arange(len(users))
        for half_life in half_lives:
            # Floored above 0 so that no view drops out of the sparse structure (its shape is saved).
            weights = np.maximum(np.exp2(-rank_from_latest / half_life), 2.0 ** -100).astype(np.float32)
            matrix = sparse.csr_matrix((weights, (users, videos)), shape=(self.n_users, self.n_videos))
            matrix.sum_duplicates()
            yield half_life, matrix

    def recent_mix(self, before: float | None, recent_days: float, older_share: float, seed: int, *,
                   by_user: bool = False) -> sparse.csr_matrix:
        """Binary user x video of the views strictly before ``before`` (all when None) in its last
        ``recent_days`` days, plus a random ``older_share`` of the older views: what warm training reads.
        ``by_user``: whole rows instead (for models whose example is a user): every user with a recent
        view, each with all their views, and random others until ``older_share`` of the older views is
        in (the recent users' own older views count toward it)."""
        end = self.end if before is None else before
        keep = self.viewed_at < end
        recent = keep & (self.viewed_at >= end - recent_days * DAY)
        rng = np.random.default_rng(seed)
        if by_user:
            recent_user = np.zeros(self.n_users, dtype=bool)
            recent_user[self.view_user[recent]] = True
            older = keep & ~recent
            covered = older[recent_user[self.view_user]].sum() / max(older.sum(), 1)
            others_share = max(0.0, (older_share - covered) / (1 - covered)) if covered < 1 else 0.0
            chosen = keep & (recent_user | (rng.random(self.n_users) < others_share))[self.view_user]
            return _binary(self.view_user[chosen], self.view_video[chosen], self.n_users, self.n_videos)
        # Older views drawn as (user, video) pairs in the matrix's order, not in the order the extract
        # read them (which PostgreSQL does not fix): a rerun of the night draws the same sample.
        older = _binary(self.view_user[keep & ~recent], self.view_video[keep & ~recent], self.n_users, self.n_videos)
        older.data[rng.random(older.nnz) >= older_share] = 0
        mix = older + _binary(self.view_user[recent], self.view_video[recent], self.n_users, self.n_videos)
        return (mix > 0).astype(np.float32)

    def ordered_views(self, before: float | None = None) -> sparse.csr_matrix:
        """Binary user x video of views strictly before ``before``, each row's videos in the order the
        user last watched them, oldest first (ties in time: the smaller video id first). Its column
        indices are deliberately unsorted: read them through ``indptr`` and ``indices`` only."""
        keep = slice(None) if before is None else self.viewed_at < before
        users, videos, times = self.view_user[keep], self.view_video[keep], self.viewed_at[keep]
        order = np.lexsort((videos, times, users))
        users, videos = users[order], videos[order]
        # A rewatch keeps the video once, at its latest view.
        pair = users.astype(np.int64) * self.n_videos + videos
        _, last_from_end = np.unique(pair[::-1], return_index=True)
        latest = np.sort(len(pair) - 1 - last_from_end)
        users, videos = users[latest], videos[latest]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=self.n_users))])
        return sparse.csr_matrix((np.ones(len(videos), dtype=np.float32), videos.astype(np.int32), indptr),
                                 shape=(self.n_users, self.n_videos))

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

    def domain_bags(self, half_life_days: float = 0.0, recent_weight: float = 0.0,
                    recent_half_life_days: float = 1.0) -> sparse.csr_matrix:
        """Users x features, log1p of the visits with each day's weighing 0.5 ** (its age in days /
        ``half_life_days``) (age 0: the data's last day; 0: every day the same, ``user_features``);
        with ``recent_weight``, plus that times the bag at ``recent_half_life_days``, each of the two
        at unit L2 length first, so that last week's visits are heard beside the month's. Every
        (user, feature) pair of ``user_features`` stays in the pattern, however old."""
        key = (half_life_days, recent_weight, recent_half_life_days if recent_weight else None)
        if key in self._bags:
            return self._bags[key]
        bags = self._decayed(half_life_days)
        if recent_weight:
            bags = (unit_rows_sparse(bags) + recent_weight * unit_rows_sparse(self._decayed(recent_half_life_days))).tocsr()
        self._bags[key] = bags
        return bags

    def _decayed(self, half_life_days: float) -> sparse.csr_matrix:
        if not half_life_days or not len(self.feature_rows):
            return self.user_features
        age = np.maximum(_last_day(self.end) - self.feature_days, 0)
        # Floored above 0 so that no pair drops out of the sparse pattern.
        decay = np.maximum(np.exp2(-age / half_life_days), 2.0 ** -100).astype(np.float32)
        bags = sparse.csr_matrix((self.feature_counts * decay, (self.feature_rows, self.feature_cols)),
                                 shape=self.user_features.shape)
        bags.sum_duplicates()
        bags.data = np.log1p(bags.data)
        return bags

    def segments(self, interactions: sparse.csr_matrix, known_features: np.ndarray) -> dict[str, np.ndarray]:
        """Route every user: hot (has views), warm (no views, some known feature), cold (neither)."""
        has_views = np.diff(interactions.indptr) > 0
        bag_known = self.user_features[:, known_features] if len(known_features) else None
        has_domains = np.zeros(self.n_users, dtype=bool) if bag_known is None else np.diff(bag_known.tocsr().indptr) > 0
        return {
            "hot": np.flatnonzero(has_views),
            "warm": np.flatnonzero(~has_views & has_domains),
            "cold": np.flatnonzero(~has_views & ~has_domains),
        }


_ARRAYS = ("user_ids", "video_ids", "video_active", "view_user", "view_video", "viewed_at", "feature_rows",
           "feature_cols", "feature_days", "feature_counts")
_MATRICES = ("user_features", "item_features")


def _last_day(end: float) -> int:
    """The epoch day holding the data interval end: a feature of that day has age 0."""
    return int(np.ceil(end / DAY)) - 1


def unit_rows_sparse(matrix: sparse.spmatrix) -> sparse.csr_matrix:
    """Rows scaled to unit L2 length (empty rows stay empty), the sparse pattern kept."""
    matrix = sparse.csr_matrix(matrix, copy=True)
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    norms = np.sqrt(np.bincount(rows, weights=matrix.data.astype(np.float64) ** 2, minlength=matrix.shape[0]))
    matrix.data = (matrix.data / np.maximum(norms[rows], 1e-30)).astype(np.float32)
    return matrix


def _binary(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    m = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_rows, n_cols))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m
