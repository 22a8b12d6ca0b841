"""Reduced-rank ridge regression from the domains a user visits to the videos they watch: the model
that serves users known only by their domains.

Learned from the users who have both: D = their domain bags (log1p of visits, each day weighing
0.5 ** (age / ``half_life_days``), plus ``recent_weight`` times the same bag at the short
``recent_half_life_days``, so a user whose interest changed last week is heard without drowning the
month's steady signal; times inverse domain frequency, rows L2-normalised), Y = their
binary views, W = (DᵀD + λI)⁻¹ DᵀY. Rank reduction (Mukherjee & Zhu 2011) keeps W's projection
onto the top ``rank`` right singular vectors V of the fitted DW: W_k = W V Vᵀ. That is a dot product
of a user vector d_u (W V) and a video vector V, so exact top-N, sharding and the output tables serve
it as they serve every model. Only a domains x domains matrix is solved; V comes from a randomized
SVD (Halko et al. 2011) that touches D and Y only through sparse products, so no dense domains x
videos or users x videos matrix is ever formed.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from rec_models.data.dataset import Dataset, unit_rows_sparse
from rec_models.models.base import FitReport, Recommender
from rec_models.names import DOMAIN_RIDGE

# Extra random directions and power iterations of the randomized SVD (Halko et al.'s defaults).
_OVERSAMPLE = 16
_POWER_ITERATIONS = 2
_GRAM_BLOCK_USERS = 65_536


class DomainRidge(Recommender):
    name = DOMAIN_RIDGE
    serves_warm_users = True
    finds_similar_videos = False

    def __init__(self, rank: int = 128, l2: float = 1.0, half_life_days: float = 7.0,
                 popularity_damping: float = 0.0,
                 recent_weight: float = 0.0, recent_half_life_days: float = 1.0,
                 max_domains: int = 20_000, seed: int = 42):
        self.rank, self.l2, self.seed = rank, l2, seed
        self.half_life_days = half_life_days
        # Scores divided by (views + 1) ** damping: a video everybody watches is no sign of a taste.
        self.popularity_damping = popularity_damping
        self.recent_weight, self.recent_half_life_days = recent_weight, recent_half_life_days
        self.max_domains = max_domains
        self.domain_rows = np.zeros(0, dtype=np.int64)  # dataset feature columns the model knows
        self.domain_idf = np.zeros(0, dtype=np.float32)
        self.domain_vectors = np.zeros((0, 1), dtype=np.float32)  # (known domains, rank) = W V
        self.video_vectors = np.zeros((0, 1), dtype=np.float32)  # (videos, rank) = V

    def fit(self, data: Dataset, *, before: float | None = None, validation=None, epochs: int | None = None) -> FitReport:
        targets = data.interactions(before)
        bags = self.visit_bags(data)
        trained = np.flatnonzero((np.diff(targets.indptr) > 0) & (np.diff(bags.indptr) > 0))
        users_per_domain = np.diff(bags[trained].tocsc().indptr)
        # The most visited domains carry the signal; the long tail only adds size to the solve.
        rows = np.sort(np.argsort(-users_per_domain, kind="stable")[: self.max_domains])
        self.domain_rows = rows[users_per_domain[rows] > 0]
        # Domains everybody visits say nothing about taste.
        self.domain_idf = np.log((1.0 + len(trained)) / (1.0 + users_per_domain[self.domain_rows])).astype(np.float32)
        self.domain_vectors, self.video_vectors = self._solve(self._bags(bags[trained]), targets[trained])
        if self.popularity_damping:
            views = np.asarray(targets.sum(axis=0)).ravel()
            self.video_vectors *= ((views + 1.0) ** -self.popularity_damping).astype(np.float32)[:, None]
        return FitReport(epochs=1, best_epoch=1)

    def visit_bags(self, data: Dataset, users: np.ndarray | None = None) -> sparse.csr_matrix:
        """The users' (every user's when None) bags of domains before idf: the month's, plus the recent
        one when weighted in."""
        bags = data.domain_bags(self.half_life_days, self.recent_weight, self.recent_half_life_days)
        return bags if users is None else bags[np.asarray(users)]

    def _bags(self, bags: sparse.csr_matrix) -> sparse.csr_matrix:
        """Known domains only, idf-weighted, rows at unit L2 length."""
        return unit_rows_sparse(bags[:, self.domain_rows] @ sparse.diags(self.domain_idf))

    def _solve(self, bags: sparse.csr_matrix, targets: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        n_domains, n_videos = bags.shape[1], targets.shape[1]
        if n_domains == 0 or targets.nnz == 0:
            return np.zeros((n_domains, 1), np.float32), np.zeros((n_videos, 1), np.float32)
        bags, targets = bags.astype(np.float64), targets.astype(np.float64).tocsr()
        gram = np.zeros((n_domains, n_domains))
        # By blocks of users: one sparse DᵀD of a million users would hold every co-visited pair at once.
        for start in range(0, bags.shape[0], _GRAM_BLOCK_USERS):
            block = bags[start:start + _GRAM_BLOCK_USERS]
            gram += (block.T @ block).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        # torch's Cholesky: the OpenBLAS that numpy and scipy ship crashed factoring 20k x 20k here.
        factor = torch.linalg.cholesky(torch.from_numpy(gram))
        del gram

        def solve(rhs: np.ndarray) -> np.ndarray:  # (DᵀD + λI)⁻¹ rhs
            return torch.cholesky_solve(torch.from_numpy(np.ascontiguousarray(rhs)), factor).numpy()

        def weights_times(v: np.ndarray) -> np.ndarray:  # W v, (domains, k)
            return solve(bags.T @ (targets @ v))

        def fitted_times(v: np.ndarray) -> np.ndarray:  # D W v, (users, k)
            return bags @ weights_times(v)

        def fitted_t_times(u: np.ndarray) -> np.ndarray:  # (D W)ᵀ u, (videos, k)
            return targets.T @ (bags @ solve(bags.T @ u))

        rank = min(self.rank, n_domains, n_videos)
        probes = min(rank + _OVERSAMPLE, n_domains, n_videos)
        rng = np.random.default_rng(self.seed)
        basis = _orthonormal(fitted_times(rng.standard_normal((n_videos, probes))))
        for _ in range(_POWER_ITERATIONS):
            basis = _orthonormal(fitted_times(_orthonormal(fitted_t_times(basis))))
        _, _, right = np.linalg.svd(fitted_t_times(basis).T, full_matrices=False)
        videos = right[:rank].T  # (videos, rank), orthonormal columns
        return weights_times(videos).astype(np.float32), np.ascontiguousarray(videos, dtype=np.float32)

    def features_only(self) -> "DomainRidge":
        return self  # it scores every user from their domains alone already

    def warm_features(self) -> np.ndarray:
        return self.domain_rows

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        bags = self._bags(self.visit_bags(data, users))
        return np.asarray(bags @ self.domain_vectors, dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        return self.video_vectors

    def state(self):
        return {"domain_rows": self.domain_rows, "domain_idf": self.domain_idf,
                "domain_vectors": self.domain_vectors, "video_vectors": self.video_vectors}

    def load_state(self, arrays):
        for name in ("domain_rows", "domain_idf", "domain_vectors", "video_vectors"):
            setattr(self, name, arrays[name])

    def config_dict(self):
        return {"rank": self.rank, "l2": self.l2, "half_life_days": self.half_life_days,
                "popularity_damping": self.popularity_damping, "recent_weight": self.recent_weight,
                "recent_half_life_days": self.recent_half_life_days, "max_domains": self.max_domains,
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _orthonormal(columns: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns' span (reduced QR, in torch for the reason above)."""
    return torch.linalg.qr(torch.from_numpy(np.ascontiguousarray(columns)), mode="reduced")[0].numpy()
