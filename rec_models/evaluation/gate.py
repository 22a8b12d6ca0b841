"""The quality gate: whether tonight's candidate of a model may publish. A pure decision; the SQL
that reads the published run and records the decision lives in rec_models.db.runs."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedRun:
    """The model's latest published run: what tonight's candidate is compared with."""

    model_run_id: int
    ndcg: float
    # True: the published run's own model scored on tonight's holdout (the same users and views as the
    # candidate); False: the NDCG@10 it recorded on its own night's holdout.
    same_holdout: bool = False


@dataclass(frozen=True)
class GateDecision:
    publish: bool
    reason: str


def quality_gate(ndcg: float, published: PublishedRun | None, tolerance: float) -> GateDecision:
    """Publish unless holdout NDCG@10 is not a number, or worse than the model's published run by more
    than ``tolerance``; the first run of a model publishes."""
    if math.isnan(ndcg):
        return GateDecision(False, "holdout NDCG@10 is not a number")
    if published is None:
        return GateDecision(True, "first run of this model")
    versus = f"published run {published.model_run_id} ({published.ndcg:.4f}" + \
        (" on tonight's holdout)" if published.same_holdout else " on its own holdout)")
    if ndcg < published.ndcg - tolerance:
        return GateDecision(False, f"holdout NDCG@10 {ndcg:.4f} is worse than {versus} by more than the tolerance "
                                   f"{tolerance}")
    return GateDecision(True, f"holdout NDCG@10 {ndcg:.4f} vs {versus}")
