"""The models compared on MovieLens 100K and the small hyperparameter grids each is tuned over
(on a validation split cut from training data only). The two-tower keeps the early-stopping patience
it was tuned with (15 epochs) at its smaller batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from rec_models.config import MFConfig, NeuMFConfig, TwoTowerConfig
from rec_models.models import GMF, NCF, FeaturePopularity, MatrixFactorization, Popularity, Recommender, TwoTower


@dataclass
class Candidate:
    label: str
    ours: bool
    make: Callable[[dict], Recommender]
    grid: list[dict] = field(default_factory=lambda: [{}])
    # Protocols it can run: A and A-temporal need per-user history; B needs user features.
    protocols: tuple[str, ...] = ("A", "AT", "C")
    # Extra settings searched for B only, on top of the A-temporal choice.
    cold_grid: list[dict] = field(default_factory=lambda: [{}])


# EASE's ridge strengths (Steck 2019 tunes λ over a similar log-spaced range).
EASE_L2 = [50.0, 100.0, 200.0, 400.0, 800.0, 1600.0]


def _grid(**axes) -> list[dict]:
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def candidates(quick: bool = False) -> list[Candidate]:
    from bench.anchors import EASE, ImplicitALS, ImplicitBPR, LightFMWarp

    pick = (lambda g: g[:1]) if quick else (lambda g: g)
    return [
        Candidate("popularity", False, lambda p: Popularity(half_life_days=None), protocols=("A", "AT", "B")),
        Candidate("feature_popularity", False, lambda p: FeaturePopularity(**p),
                  pick(_grid(smoothing=[1.0, 10.0], popularity_damping=[0.0, 0.25, 0.5])), protocols=("B",)),
        Candidate("implicit_als", False, lambda p: ImplicitALS(**p),
                  pick(_grid(factors=[64, 128], regularization=[0.05, 0.5], alpha=[5.0, 20.0]))),
        Candidate("implicit_bpr", False, lambda p: ImplicitBPR(**p),
                  pick(_grid(factors=[64, 128], learning_rate=[0.01, 0.05], regularization=[0.01], iterations=[100, 300]))),
        Candidate("lightfm_warp", False, lambda p: LightFMWarp(**p), pick(_grid(components=[32, 64], epochs=[20, 40]))),
        Candidate("lightfm_hybrid", False, lambda p: LightFMWarp(hybrid=True, **p),
                  pick(_grid(components=[32, 64], epochs=[20, 40])), protocols=("A", "AT", "B", "C")),
        Candidate("ease", False, lambda p: EASE(**p), pick(_grid(l2=EASE_L2, half_life=[0]))),
        Candidate("ease_recency", False, lambda p: EASE(**p), pick(_grid(l2=EASE_L2, half_life=[5, 10, 20, 40, 0]))),
        Candidate("mf", True, lambda p: MatrixFactorization(MFConfig(**p)),
                  pick(_grid(dim=[64, 128], l2=[1e-2, 3e-2], learning_rate=[0.01]))),
        Candidate("gmf", True, lambda p: GMF(NeuMFConfig(**p)), pick(_grid(dim=[32, 64], l2=[1e-2]))),
        Candidate("neumf", True, lambda p: NCF(NeuMFConfig(**p)), pick(_grid(dim=[16, 32], l2=[1e-2]))),
        Candidate("two_tower", True, lambda p: TwoTower(TwoTowerConfig(**{"patience": 15, **p})),
                  pick(_grid(dim=[256], l2=[1.0, 3.0], batch_size=[32], learning_rate=[0.001],
                             history_half_life=[10.0, 5.0, 20.0], future_share=[0.5, 0.0])),
                  protocols=("A", "AT", "B", "C"),
                  # B serves users from demographics alone: also tune how often training hides histories,
                  # the weight penalty and whether some users learn to predict the future from the past
                  # (the feature tower alone is the model there).
                  cold_grid=_grid(domains_only_share=[0.3, 0.5], l2=[1.0, 3.0], future_share=[0.5, 0.0])),
    ]
