"""The data check before training: does the night's interval hold the views a night should?

A night with no views (upstream data late, or a day that never came) or with far fewer than the
days before it (a partial day) is not trained on: the previous run keeps serving, and the reason is
recorded where operators look."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rec_models.data.dataset import Dataset

# The days before the interval whose median is the norm.
DAYS_BEFORE = 7


@dataclass(frozen=True)
class NightCheck:
    views_in_interval: int
    median_daily_views: float | None  # None when no earlier day holds views
    reason: str | None  # why training is skipped; None: train

    @property
    def train(self) -> bool:
        return self.reason is None


def check_interval(data: Dataset, start: float, end: float, partial_share: float) -> NightCheck:
    """Views (valid, as extracted) in [start, end) against the median of the ``DAYS_BEFORE`` intervals of
    the same length before it (those after the first view: a young service has no earlier days)."""
    length = end - start
    in_interval = int(((data.viewed_at >= start) & (data.viewed_at < end)).sum())
    first = float(data.viewed_at.min()) if data.n_views else end
    earlier = [int(((data.viewed_at >= start - k * length) & (data.viewed_at < start - (k - 1) * length)).sum())
               for k in range(1, DAYS_BEFORE + 1) if start - (k - 1) * length > first]
    median = float(np.median(earlier)) if earlier else None
    reason = None
    if in_interval == 0:
        reason = "no views in the interval: upstream data late?"
    elif median and partial_share and in_interval < partial_share * median:
        reason = (f"a partial day: {in_interval} views in the interval, under {partial_share:.0%} of the median "
                  f"of the {len(earlier)} intervals before it ({median:.0f}): upstream data late?")
    return NightCheck(views_in_interval=in_interval, median_daily_views=median, reason=reason)
