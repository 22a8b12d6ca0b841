"""The quality gate: whether tonight's candidate of a model may publish. A pure decision; the SQL
that reads the published run and records the decision lives in rec_models.db.runs."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedRun:
    """The model's latest accepted run (published, or passed its gate and kept as a candidate): what
    tonight's candidate is compared with."""

    model_run_id: int
    ndcg: float
    # True: the run's own model scored on tonight's holdout (the same users and views as the candidate);
    # False: the NDCG@10 it recorded on its own night's holdout.
    same_holdout: bool = False
    published: bool = True  # False: it passed its gate but was kept as a candidate (publish_models)


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
    kind = "published" if published.published else "accepted"
    versus = f"{kind} run {published.model_run_id} ({published.ndcg:.4f}" + \
        (" on tonight's holdout)" if published.same_holdout else " on its own holdout)")
    if ndcg < published.ndcg - tolerance:
        return GateDecision(False, f"holdout NDCG@10 {ndcg:.4f} is worse than {versus} by more than the tolerance "
                                   f"{tolerance}")
    return GateDecision(True, f"holdout NDCG@10 {ndcg:.4f} vs {versus}")


@dataclass(frozen=True)
class WarmDecision:
    """Which model serves users known only by their domains in one model run's lists, and why."""

    model: str
    ndcg: float  # its domain-only holdout NDCG@10 tonight
    reason: str

    def as_dict(self) -> dict:
        return {"model": self.model, "ndcg@10": self.ndcg, "reason": self.reason}


def warm_gate(candidates: dict[str, float], serving: float | None, tolerance: float, fallback: str) -> WarmDecision:
    """The candidate with the best domain-only holdout NDCG@10 (users with views scored from their
    domains alone), unless it is worse than what serves them now (``serving``) by more than
    ``tolerance``: then the next best that is not; when none is, ``fallback`` serves them."""
    ranked = sorted(((ndcg, name) for name, ndcg in candidates.items() if not math.isnan(ndcg)), reverse=True)
    if serving is None:
        if ranked:
            return WarmDecision(ranked[0][1], ranked[0][0], "best domain-only holdout NDCG@10; none served before")
        return WarmDecision(fallback, float("nan"), "no candidate has a domain-only holdout NDCG@10")
    for ndcg, name in ranked:
        if ndcg >= serving - tolerance:
            return WarmDecision(name, ndcg, f"domain-only holdout NDCG@10 {ndcg:.4f} vs {serving:.4f} serving")
    figures = ", ".join(f"{name} {ndcg:.4f}" for ndcg, name in ranked)
    return WarmDecision(fallback, candidates.get(fallback, float("nan")),
                        f"every candidate's domain-only holdout NDCG@10 ({figures}) is worse than the {serving:.4f} "
                        f"serving by more than the tolerance {tolerance}")


@dataclass(frozen=True)
class PublishPlan:
    """Which of tonight's models serves and which have every user's list scored and published."""

    serving: str | None
    published: tuple[str, ...]
    reason: str


def plan_publishing(evaluations: list[dict], serving_model: str, besides_serving: tuple[str, ...]) -> PublishPlan:
    """From tonight's evaluations (model, publish, ndcg@10, dot_product): ``serving_model``, or when it did
    not pass its gate (or is "auto") the best holdout NDCG@10 among dot-product models that did; published:
    the serving model and those of ``besides_serving`` that passed their gates, in evaluation order."""
    passed = [e for e in evaluations if e and e["publish"]]
    chosen = next((e for e in passed if e["model"] == serving_model), None)
    reason = f"serving_model {serving_model}"
    if chosen is None:
        candidates = [e for e in passed if e["dot_product"]] or passed
        chosen = max(candidates, key=lambda e: e["ndcg@10"], default=None)
        reason = ("best holdout NDCG@10 among dot-product models" if serving_model == "auto" else
                  f"serving_model {serving_model} did not pass its gate: best holdout NDCG@10 among dot-product models")
    if chosen is None:
        return PublishPlan(None, (), "no model passed its gate")
    published = tuple(e["model"] for e in passed if e is chosen or e["model"] in besides_serving)
    return PublishPlan(chosen["model"], published, reason)


def may_publish(model: str, evaluations: list[dict], pending: tuple[str, ...], serving_model: str,
                besides_serving: tuple[str, ...], dot_products: tuple[str, ...]) -> bool:
    """Whether some outcome of the ``pending`` models' evaluations (each fails, or passes above or below
    every other) has ``model`` published: scoring starts before every evaluation is in, and skips only
    a model no outcome publishes (the publish step decides on all of them)."""
    for outcome in itertools.product((None, math.inf, -math.inf), repeat=len(pending)):
        completed = list(evaluations) + [
            {"model": name, "publish": ndcg is not None, "ndcg@10": ndcg if ndcg is not None else math.nan,
             "dot_product": name in dot_products} for name, ndcg in zip(pending, outcome)]
        if model in plan_publishing(completed, serving_model, besides_serving).published:
            return True
    return False
