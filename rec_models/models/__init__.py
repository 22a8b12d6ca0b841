"""Models behind one API (:class:`rec_models.models.base.Recommender`)."""

from rec_models.models.base import Recommender
from rec_models.models.feature_popularity import FeaturePopularity
from rec_models.models.mf import MatrixFactorization
from rec_models.models.ncf import GMF, MLP, NCF
from rec_models.models.popularity import Popularity
from rec_models.models.two_tower import TwoTower

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, FeaturePopularity, MatrixFactorization, GMF, MLP, NCF, TwoTower)
}

__all__ = ["MODELS", "Recommender", "Popularity", "FeaturePopularity", "MatrixFactorization", "GMF", "MLP", "NCF", "TwoTower"]
