"""One function per DAG task, callable without Airflow: the DAG and the CLI both call these. By stage:
``erasure`` (first: people who asked to be forgotten), ``sources`` (before training), ``training``, ``evaluation``, ``scoring``, ``publishing``.

Tasks hand each other a run folder (files) and model run ids, never data. Every task is idempotent
for its run key (the data interval end): a retry or a rerun replaces what an earlier attempt wrote.
"""

from __future__ import annotations

from rec_models.names import FALLBACKS, MODEL_NAMES
from rec_models.pipeline.erasure import erase, file_requests
from rec_models.pipeline.evaluation import choose_warm, evaluate, publish_plan
from rec_models.pipeline.publishing import choose_serving, publish, summarize
from rec_models.pipeline.scoring import plan_scoring, score, score_users, score_videos
from rec_models.pipeline.sources import (DiskShort, NightSkipped, check_interval, extract, migrate, next_day_metrics,
                                        validate)
from rec_models.pipeline.training import TrainPlan, plan_training, train
from rec_models.run import Run

__all__ = ["DiskShort", "NightSkipped", "TrainPlan", "check_interval", "choose_serving", "choose_warm", "erase", "evaluate",
           "file_requests",
           "extract", "migrate", "next_day_metrics", "plan_scoring", "plan_training", "publish", "publish_plan", "run_all", "score", "score_users",
           "score_videos", "summarize", "train", "validate"]


def run_all(run: Run, models: tuple[str, ...] = MODEL_NAMES) -> dict:
    """The whole nightly run in this process, in DAG order (the CLI and tests use it)."""
    migrate(run)
    erase(run)
    validate(run)
    next_day_metrics(run)
    extract(run)
    try:
        check_interval(run)
    except (NightSkipped, DiskShort) as stopped:
        return {"published": {}, "serving": None, "skipped": str(stopped)}
    train(run, FALLBACKS)
    evaluations = {}
    for name in models:
        train(run, name)
        evaluations[name] = evaluate(run, name)
    published = {}
    for name in evaluations:
        score(run, name, list(evaluations.values()))
        published[name] = publish(run, name, list(evaluations.values()))
    serving = choose_serving(run, list(evaluations.values()))
    summarize(run)
    return {"published": published, **serving}
