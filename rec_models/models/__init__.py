"""Models behind one API (:class:`rec_models.models.base.Recommender`), and the one registry of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rec_models.config import PipelineConfig
from rec_models.models.base import Recommender
from rec_models.models.domain_ridge import DomainRidge
from rec_models.models.feature_popularity import FeaturePopularity
from rec_models.models.mf import MatrixFactorization
from rec_models.models.ncf import GMF, MLP, NCF
from rec_models.models.popularity import Popularity
from rec_models.models.two_tower import TwoTower
from rec_models.names import MODEL_NAMES

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, FeaturePopularity, DomainRidge, MatrixFactorization, GMF, MLP, NCF, TwoTower)
}


def build_model(name: str, config: PipelineConfig) -> Recommender:
    """A fresh model of the nightly pipeline, with its settings and the run's seed."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    return MODELS[name](getattr(config, name), seed=config.seed)


def build_domain_model(config: PipelineConfig) -> DomainRidge:
    """The model that serves users known only by their domains, with the run's settings."""
    return DomainRidge(rank=config.domain_rank, l2=config.domain_l2, half_life_days=config.domain_half_life_days,
                       popularity_damping=config.domain_popularity_damping, recent_weight=config.domain_recent_weight,
                       recent_half_life_days=config.domain_recent_half_life_days, max_domains=config.domain_max_domains,
                       seed=config.seed)


def load_model(folder: Path) -> Recommender:
    """A model saved by :meth:`Recommender.save`."""
    header = json.loads((folder / "model.json").read_text())
    if header["name"] not in MODELS:
        raise ValueError(f"{folder} holds an unknown model {header['name']!r}; known: {', '.join(MODELS)}")
    model = MODELS[header["name"]].from_config(header["config"])
    with np.load(folder / "state.npz") as arrays:
        model.load_state(dict(arrays))
    return model


__all__ = ["MODELS", "Recommender", "Popularity", "FeaturePopularity", "DomainRidge", "MatrixFactorization", "GMF", "MLP", "NCF",
           "TwoTower", "build_domain_model", "build_model", "load_model"]
