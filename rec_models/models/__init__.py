"""Models behind one API (:class:`rec_models.models.base.Recommender`)."""

from rec_models.models.base import Recommender
from rec_models.models.domain_popularity import DomainPopularity
from rec_models.models.mf import MatrixFactorization
from rec_models.models.popularity import Popularity

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, DomainPopularity, MatrixFactorization)
}

__all__ = ["MODELS", "Recommender", "Popularity", "DomainPopularity", "MatrixFactorization"]
