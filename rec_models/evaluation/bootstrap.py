"""Bootstrap over users: confidence intervals for a mean, and the paired test for a difference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


@dataclass
class Interval:
    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"


def confidence_interval(per_user: np.ndarray, level: float = 0.95, seed: int = 0) -> Interval:
    per_user = np.asarray(per_user, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = per_user[rng.integers(0, len(per_user), (RESAMPLES, len(per_user)))].mean(axis=1)
    tail = (1 - level) / 2
    return Interval(float(per_user.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))


def paired_p_value(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """Two-sided p-value that mean(a - b) = 0, resampling the same users for both."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (RESAMPLES, len(diff)))].mean(axis=1)
    one_sided = min((means <= 0).mean(), (means >= 0).mean())
    return float(min(1.0, 2 * one_sided + 1.0 / RESAMPLES))
