"""Evaluation tasks: holdout metrics, the quality gate against the run a candidate is gated against,
and who serves the users known only by their domains."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rec_models.alerts.events import Alert, raise_alert
from rec_models.data.dataset import Dataset
from rec_models.db.connect import connect
from rec_models.db.runs import (latest_accepted, night_model_run_id, record_gate, record_model_run,
                                record_warm_choice, run_interval_end, serving_warm_ndcg)
from rec_models.evaluation import evaluate_model
from rec_models.evaluation.gate import (PublishedRun, PublishPlan, may_publish, plan_publishing, quality_gate,
                                        warm_gate)
from rec_models.faults import checkpoint
from rec_models.models import build_model
from rec_models.models.base import CheckpointError
from rec_models.names import DOMAIN_RIDGE, DOT_PRODUCT_MODELS, FEATURE_POPULARITY, MODEL_NAMES, POPULARITY, TWO_TOWER
from rec_models.pipeline.training import TrainPlan, train
from rec_models.run import Run
from rec_models.threads import set_torch_threads

log = logging.getLogger(__name__)


def evaluate(run: Run, model_name: str) -> dict:
    """Holdout metrics (full ranking, last ``holdout_days`` before the interval end); record the
    candidate in rec.model_runs and apply the quality gate. In ``train_mode`` auto, a warm candidate
    that fails its gate is retrained from scratch and evaluated again, the same night."""
    evaluation = _evaluate(run, model_name)
    fit = run.files.read_fit(model_name)
    if not evaluation["publish"] and fit["train_mode"] == "warm" and run.config.train_mode == "auto":
        log.warning("%s: the warm candidate failed its gate (%s): retraining from scratch", model_name,
                    evaluation["reason"])
        warm_seconds = fit["train_seconds"]
        refit = train(run, model_name, plan=TrainPlan("full", f"the warm candidate failed its gate: "
                                                              f"{evaluation['reason']}"))
        fit = run.files.read_fit(model_name)
        fit["train_seconds"] = round(warm_seconds + refit["train_seconds"], 3)  # the night paid for both
        run.files.write_fit(model_name, fit)
        evaluation = _evaluate(run, model_name)
    if not evaluation["publish"]:
        raise_alert(run.database_url, Alert(run.run_key, "gate_rejected", evaluation["reason"], model=model_name,
                                            figures={"holdout NDCG@10": evaluation["ndcg@10"],
                                                     "model run": evaluation["model_run_id"]}))
    return evaluation


def _evaluate(run: Run, model_name: str) -> dict:
    data = run.files.load_dataset()
    # As train and score do: the three evaluations run side by side on one machine's cores.
    set_torch_threads(run.config.torch_threads, data.n_views, run.config.tasks_per_machine)
    split = data.holdout(run.config.holdout_days)
    model = run.files.load_model(model_name, "eval")
    with connect(run.database_url) as conn:
        # The accepted run tonight's candidate is gated against (not this night's own earlier attempt).
        other_than = night_model_run_id(conn, run.run_key, model_name) or 0
        published = latest_accepted(conn, model_name, other_than=other_than, interval_end=run.interval_end)
        published_end = run_interval_end(conn, published[0]) if published else None
    # Tonight's holdout is not the accepted run's: its serving model is scored on tonight's, so the gate
    # compares the same users and views. That pass needs nothing of tonight's candidate: it runs on a
    # thread beside the candidate's passes (PyTorch and numpy release the GIL), on a core of its own
    # when one is free.
    with ThreadPoolExecutor(max_workers=1) as beside:
        on_tonight = beside.submit(_published_on_holdout, run, model_name, published[0], published_end, data,
                                   split) if published else None
        started = time.perf_counter()
        metrics = evaluate_model(model, data, split.train, split.test, split.test_users).as_dict()
        metrics["scoring_seconds"] = round(time.perf_counter() - started, 3)
        if model.serves_warm_users:
            # The same users scored from their domains alone: what a domain-only user can expect.
            metrics["domains_only"] = evaluate_model(model.features_only(), data, split.train, split.test,
                                                     split.test_users).as_dict()
        on_tonight = on_tonight.result() if on_tonight else None
    metrics["baseline_popularity"] = run.files.read_baseline(POPULARITY)
    metrics["protocol"] = f"full ranking, last {run.config.holdout_days} day(s) before the interval end"
    fit = run.files.read_fit(model_name)
    validation = run.files.read_validation()
    all_views = data.interactions()
    with connect(run.database_url) as conn:
        model_run_id = record_model_run(
            conn, run_key=run.run_key, dag_run_id=run.dag_run_id, model_name=model_name,
            interval_start=run.interval_start, interval_end=run.interval_end, params=run.config.to_params(),
            counts={"n_users": int((np.diff(all_views.indptr) > 0).sum()), "n_videos": data.n_videos,
                    "n_train_rows": int(split.train.nnz), "n_holdout_rows": int(split.test.nnz)},
            metrics=metrics,
            rejected_counts={t: v["by_reason"] for t, v in validation.items()},
            timings={"train_seconds": fit["train_seconds"], "best_epoch": fit["best_epoch"],
                     "positives_per_second": fit["positives_per_second"], "mode_reason": fit["mode_reason"]},
            train_mode=fit["train_mode"], parent_model_run_id=fit["parent_model_run_id"],
        )
    baseline = None
    if published:
        # Its recorded figure only when its serving model cannot be scored on tonight's holdout.
        run_id, recorded, was_published = published
        metrics["published_on_holdout"] = on_tonight
        baseline = PublishedRun(run_id, on_tonight if on_tonight is not None else recorded,
                                same_holdout=on_tonight is not None, published=was_published)
    with connect(run.database_url) as conn:
        conn.execute("UPDATE rec.model_runs SET metrics = %s WHERE model_run_id = %s",
                     (json.dumps(metrics), model_run_id))
        decision = quality_gate(metrics["ndcg@10"], baseline, run.config.quality_tolerance)
        record_gate(conn, model_run_id, publish=decision.publish, reason=decision.reason)
    log.info("%s holdout %s; gate: %s", model_name, {k: v for k, v in metrics.items() if "@" in k}, decision)
    evaluation = {"model": model_name, "model_run_id": model_run_id, "publish": decision.publish,
                  "reason": decision.reason, "ndcg@10": metrics["ndcg@10"], "dot_product": model.dot_product,
                  "train_mode": fit["train_mode"],
                  "domains_only_ndcg@10": metrics["domains_only"]["ndcg@10"] if model.serves_warm_users else None}
    run.files.write_evaluation(model_name, evaluation)
    checkpoint("evaluate:done")
    return evaluation


def _published_on_holdout(run: Run, model_name: str, model_run_id: int, interval_end, data: Dataset,
                          split) -> float | None:
    """Holdout NDCG@10 of a published run's serving model carried onto tonight's Dataset, or None (with
    one log line) when its checkpoint is gone or unusable."""
    if interval_end is None or interval_end.timestamp() > split.boundary:
        return None  # its serving model has seen some of tonight's holdout (a later night, or holdout_days > 1)
    try:
        published, ids, _ = run.folder_of(interval_end).load_checkpoint(model_name, part="serve")
        model = build_model(model_name, dataclasses.replace(run.config, **{model_name: published.config}))
        model.carry(data, published, ids, before=split.boundary)
    except CheckpointError as exc:
        log.warning("%s: published run %d cannot be scored on tonight's holdout, gating against its recorded "
                    "NDCG@10: %s", model_name, model_run_id, exc)
        return None
    return round(evaluate_model(model, data, split.train, split.test, split.test_users).ndcg, 6)


def choose_warm(run: Run, model_name: str, evaluation: dict, two_tower: dict | None) -> dict:
    """Who serves the users known only by their domains in this model's lists: the candidate with the
    best domain-only holdout NDCG@10 tonight (the domain model, domain popularity, the two-tower's
    domain tower when it passed its gate), unless it drops that figure of the run this one is gated
    against by more than the tolerance. Recorded in the run's metrics and for the user shards."""
    candidates = {name: run.files.read_baseline(name)["ndcg@10"] for name in (DOMAIN_RIDGE, FEATURE_POPULARITY)}
    if two_tower and two_tower["publish"]:
        candidates[TWO_TOWER] = two_tower["domains_only_ndcg@10"]
    with connect(run.database_url) as conn:
        serving = serving_warm_ndcg(conn, model_name, evaluation["model_run_id"], run.interval_end)
        choice = warm_gate(candidates, serving, run.config.quality_tolerance, FEATURE_POPULARITY).as_dict()
        choice["candidates"] = candidates
        record_warm_choice(conn, evaluation["model_run_id"], choice)
    run.files.write_warm_choice(model_name, choice)
    log.info("%s: domain-only users served by %s (%s)", model_name, choice["model"], choice["reason"])
    return choice


def publish_plan(run: Run, evaluations: list[dict]) -> PublishPlan:
    """Tonight's serving model and the models whose every user list is scored and published
    (``serving_model``, ``publish_models``); every task of the night derives the same plan."""
    return plan_publishing(evaluations, run.config.serving_model, run.config.published_besides_serving())


def may_be_published(run: Run, model_name: str, evaluations: list[dict]) -> bool:
    """Whether tonight's plan can still publish the model, with the evaluations in hand (the others pending)."""
    pending = tuple(name for name in MODEL_NAMES if evaluation_of(evaluations, name) is None)
    return may_publish(model_name, evaluations, pending, run.config.serving_model,
                       run.config.published_besides_serving(), DOT_PRODUCT_MODELS)


def evaluation_of(evaluations: list[dict], model_name: str) -> dict | None:
    return next((e for e in evaluations if e and e["model"] == model_name), None)
