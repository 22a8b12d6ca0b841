"""The libraries people would otherwise pick, and EASE (what a reviewer runs first), behind the
project's Recommender API so every protocol treats them exactly like our models. Bench-only
dependencies: implicit, lightfm; EASE is numpy."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from rec_models.data.dataset import Dataset
from rec_models.models.base import FitReport, Recommender, unit_rows


def available() -> dict[str, str | None]:
    """Which anchor libraries import here: name -> None if fine, else the reason."""
    status = {}
    for module in ("implicit", "lightfm"):
        try:
            __import__(module)
            status[module] = None
        except Exception as exc:  # an anchor that cannot be installed is reported, never faked
            status[module] = f"{type(exc).__name__}: {exc}"
    return status


class _Factors(Recommender):
    """Anchors whose score is user_factors . item_factors."""

    def __init__(self, **params):
        self.params = params
        self.user_f = np.zeros((0, 1), dtype=np.float32)
        self.item_f = np.zeros((0, 1), dtype=np.float32)

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        return self.user_f[users]

    def item_vectors(self) -> np.ndarray:
        return self.item_f

    def config_dict(self) -> dict:
        return dict(self.params)


class ImplicitALS(_Factors):
    name = "implicit_als"

    def fit(self, data: Dataset, *, before=None, validation=None, epochs=None) -> FitReport:
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        model = AlternatingLeastSquares(factors=p["factors"], regularization=p["regularization"],
                                        iterations=p.get("iterations", 15), random_state=p.get("seed", 0))
        model.fit((data.interactions(before) * p["alpha"]).tocsr().astype(np.float32), show_progress=False)
        self.user_f, self.item_f = np.asarray(model.user_factors), np.asarray(model.item_factors)
        return FitReport(epochs=p.get("iterations", 15))


class ImplicitBPR(_Factors):
    name = "implicit_bpr"

    def fit(self, data: Dataset, *, before=None, validation=None, epochs=None) -> FitReport:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.params
        model = BayesianPersonalizedRanking(factors=p["factors"], learning_rate=p["learning_rate"],
                                            regularization=p["regularization"], iterations=p["iterations"],
                                            random_state=p.get("seed", 0))
        model.fit(data.interactions(before).tocsr().astype(np.float32), show_progress=False)
        self.user_f, self.item_f = np.asarray(model.user_factors), np.asarray(model.item_factors)
        return FitReport(epochs=p["iterations"])


class LightFMWarp(_Factors):
    """LightFM with WARP loss; ``hybrid`` adds user demographics and item genres/title tokens."""

    name = "lightfm_warp"

    def __init__(self, hybrid: bool = False, **params):
        super().__init__(**params)
        self.hybrid = hybrid
        if hybrid:
            self.name = "lightfm_hybrid"
        self._model = None

    def _user_features(self, data: Dataset, trained_users: np.ndarray) -> sparse.csr_matrix:
        # Identity features only for users seen in training: a held-out user is their demographics alone.
        identity = sparse.diags(trained_users.astype(np.float32)).tocsr()
        return _row_normalise(sparse.hstack([identity, (data.user_features > 0).astype(np.float32)]).tocsr())

    def _item_features(self, data: Dataset) -> sparse.csr_matrix:
        identity = sparse.identity(data.n_videos, dtype=np.float32, format="csr")
        return _row_normalise(sparse.hstack([identity, (data.item_features > 0).astype(np.float32)]).tocsr())

    def fit(self, data: Dataset, *, before=None, validation=None, epochs=None) -> FitReport:
        from lightfm import LightFM

        p = self.params
        interactions = data.interactions(before).tocoo()
        model = LightFM(loss="warp", no_components=p["components"], learning_rate=p.get("learning_rate", 0.05),
                        user_alpha=p.get("alpha", 1e-6), item_alpha=p.get("alpha", 1e-6),
                        random_state=np.random.RandomState(p.get("seed", 0)))
        kwargs = {}
        if self.hybrid:
            trained = np.diff(interactions.tocsr().indptr) > 0
            kwargs = {"user_features": self._user_features(data, trained), "item_features": self._item_features(data)}
        model.fit(interactions, epochs=p["epochs"], num_threads=p.get("threads", 1), **kwargs)
        user_bias, user_emb = model.get_user_representations(kwargs.get("user_features"))
        item_bias, item_emb = model.get_item_representations(kwargs.get("item_features"))
        # score = u . i + b_u + b_i; b_u does not change a user's ranking.
        self.user_f = np.hstack([user_emb, np.ones((len(user_emb), 1))]).astype(np.float32)
        self.item_f = np.hstack([item_emb, item_bias[:, None]]).astype(np.float32)
        return FitReport(epochs=p["epochs"])

    def similarity_vectors(self) -> np.ndarray:
        return unit_rows(self.item_f[:, :-1])  # without the bias column


def _row_normalise(m: sparse.csr_matrix) -> sparse.csr_matrix:
    sums = np.asarray(m.sum(axis=1)).ravel()
    return (sparse.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)) @ m).tocsr()


class EASE(_Factors):
    """EASE^R (Steck, WWW 2019): the closed-form item-item model B = I - P / diag(P), P = (X'X + λI)^-1,
    with B's diagonal zero. Score = history row . B; with ``half_life`` > 0 the history row weighs each
    view 0.5 ** (its rank from the user's latest view / half_life) at scoring time (the Gram matrix stays
    binary). A dense items x items inverse: an anchor for catalogues of thousands, not a product model."""

    name = "ease"

    def __init__(self, **params):
        super().__init__(**params)
        if params.get("half_life"):
            self.name = "ease_recency"
        self.history = sparse.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, data: Dataset, *, before=None, validation=None, epochs=None) -> FitReport:
        binary = data.interactions(before).astype(np.float64)
        gram = (binary.T @ binary).toarray()
        gram[np.diag_indices_from(gram)] += self.params["l2"]
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)[None, :]
        weights[np.diag_indices_from(weights)] = 0.0
        half_life = self.params.get("half_life") or 0
        self.history = (data.recency_weighted(before, half_life) if half_life else binary).astype(np.float32).tocsr()
        self.item_f = np.ascontiguousarray(weights.T, dtype=np.float32)  # score(u, j) = history_u . B[:, j]
        return FitReport(epochs=1)

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        return self.history[users].toarray()

    def similarity_vectors(self) -> np.ndarray:
        return unit_rows(self.item_f)


class DomainRidgeAnchor(_Factors):
    """Ridge regression from domains to videos in closed form, the anchor for domain-only users:
    D = users x domains (log1p of visits, each day weighing 0.5 ** (age / ``half_life_days``), times
    idf, rows at unit L2 length) of the users with views, X = their binary views,
    W = (DᵀD + λI)⁻¹ DᵀX; a user's scores d_u W. Dense domains x videos: a reference and an anchor,
    not a product model (``DomainRidge`` is its reduced-rank form)."""

    name = "domain_ridge_anchor"
    serves_warm_users = True
    finds_similar_videos = False

    def fit(self, data: Dataset, *, before=None, validation=None, epochs=None) -> FitReport:
        views = data.interactions(before).astype(np.float64)
        bags = data.domain_bags(self.params.get("half_life_days", 0.0))
        trained = np.flatnonzero((np.diff(views.indptr) > 0) & (np.diff(bags.indptr) > 0))
        users_per_domain = np.diff(bags[trained].tocsc().indptr)
        self.idf = np.log((1.0 + len(trained)) / (1.0 + users_per_domain))
        d = self._bags(bags[trained]).tocsr()
        gram = (d.T @ d).toarray() + self.params["l2"] * np.eye(d.shape[1])
        self.item_f = np.linalg.solve(gram, (d.T @ views[trained]).toarray()).T.astype(np.float32)
        return FitReport(epochs=1)

    def _bags(self, bags: sparse.csr_matrix) -> sparse.csr_matrix:
        weighted = bags @ sparse.diags(self.idf)
        norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
        return sparse.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ weighted

    def features_only(self) -> "DomainRidgeAnchor":
        return self

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        bags = data.domain_bags(self.params.get("half_life_days", 0.0))[users]
        return self._bags(bags).toarray().astype(np.float32)
