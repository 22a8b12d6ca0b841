"""One function per DAG task, callable without Airflow: the DAG and the CLI both call these.

Tasks hand each other a run folder (files) and model run ids, never data. Every task is idempotent
for its run key (the data interval end): a retry or a rerun replaces what an earlier attempt wrote.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from rec_models.config import MODEL_NAMES, PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.snapshot import Snapshot, extract_snapshot
from rec_models.data.synthetic import SERVICE_START
from rec_models.data.validate import drop_checked, validate_sources
from rec_models.db.connect import connect
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import POPULAR_VIDEOS, SIMILAR_VIDEOS, USER_RECOMMENDATIONS
from rec_models.db.publish import audit_output, drop_staging, point_serving, prune_published, stage_output, swap_in
from rec_models.db.runs import quality_gate, record_model_run
from rec_models.models import NCF, FeaturePopularity, MatrixFactorization, Popularity, Recommender, TwoTower
from rec_models.evaluation import evaluate_model
from rec_models.faults import checkpoint
from rec_models.scoring import (ServingModels, read_output_chunks, scored_groups, write_item_outputs,
                                write_user_outputs)
from rec_models.training import set_torch_threads

log = logging.getLogger(__name__)

FALLBACKS = "fallbacks"  # popularity (cold users, unknown users) and domain popularity (warm users)


@dataclass(frozen=True)
class RunContext:
    database_url: str = field(repr=False)  # may hold a password: never logged
    interval_end: datetime
    interval_start: datetime | None = None
    dag_run_id: str | None = None
    config: PipelineConfig = field(default_factory=PipelineConfig)

    def __post_init__(self) -> None:
        if self.interval_end.tzinfo is None:
            raise ValueError("interval_end must be timezone-aware")

    @property
    def run_key(self) -> str:
        return self.interval_end.astimezone(timezone.utc).isoformat()

    @property
    def run_dir(self) -> Path:
        slug = self.interval_end.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
        return Path(self.config.run_root) / slug

    @property
    def window_start(self) -> datetime:
        return self.interval_end - timedelta(days=self.config.history_days)

    def model_dir(self, model_name: str, purpose: str) -> Path:
        return self.run_dir / "models" / model_name / purpose


def migrate(ctx: RunContext) -> list[str]:
    """Bring the rec schema up to date (idempotent, serialised by an advisory lock)."""
    return apply_migrations(ctx.database_url)


def validate(ctx: RunContext) -> dict:
    """Quarantine bad rows of the window; fail before training if the sources cannot be trusted."""
    with connect(ctx.database_url) as conn:
        reports = validate_sources(conn, ctx.run_key, ctx.interval_end, ctx.window_start, SERVICE_START,
                                   ctx.config.max_rejected_share)
    summary = {t: {"rows": r.rows, "rejected": r.rejected, "by_reason": r.by_reason} for t, r in reports.items()}
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    (ctx.run_dir / "validation.json").write_text(json.dumps(summary, indent=2))
    checkpoint("validate:done")
    return summary


def extract(ctx: RunContext) -> str:
    with connect(ctx.database_url) as conn:
        snapshot = extract_snapshot(conn, ctx.interval_end, ctx.window_start, SERVICE_START, ctx.run_key)
        folder = ctx.run_dir / "snapshot"
        snapshot.save(folder)
        drop_checked(conn, ctx.run_key)  # the judged rows are in the snapshot now
    # The one data object of the run (id maps, views, domain and content bags), built once here.
    Dataset.from_snapshot(snapshot).save(ctx.run_dir / "dataset")
    checkpoint("extract:done")
    return str(folder)


def load_dataset(ctx: RunContext) -> Dataset:
    """The run's Dataset, built once by the extract (built here from the snapshot if missing)."""
    folder = ctx.run_dir / "dataset"
    if not (folder / "arrays.npz").exists():
        Dataset.from_snapshot(Snapshot.load(ctx.run_dir / "snapshot")).save(folder)
    return Dataset.load(folder)


def build_model(name: str, config: PipelineConfig) -> Recommender:
    builders = {
        "mf": lambda: MatrixFactorization(config.mf, seed=config.seed),
        "neumf": lambda: NCF(config.neumf, seed=config.seed),
        "two_tower": lambda: TwoTower(config.two_tower, seed=config.seed),
    }
    if name not in builders:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(builders)}")
    return builders[name]()


def train(ctx: RunContext, model_name: str) -> dict:
    """Fit with early stopping on a validation split cut from training data (the evaluated model), then
    the serving model on all views: one more epoch from those weights, or a refit (``serve_fit``).
    Saves both models in the run folder."""
    data = load_dataset(ctx)
    set_torch_threads(ctx.config.torch_threads, data.n_views)
    if model_name == FALLBACKS:
        split = data.holdout(ctx.config.holdout_days)
        popularity = Popularity()
        for model in (popularity, FeaturePopularity()):
            model.fit(data)
            model.save(ctx.model_dir(model.name, "serve"))
            model.fit(data, before=split.boundary)
            model.save(ctx.model_dir(model.name, "eval"))
        # The baseline every model's holdout metrics are reported next to: computed once per run.
        baseline = evaluate_model(popularity, data, split.train, split.test, split.test_users).as_dict()
        (ctx.model_dir(Popularity.name, "eval") / "holdout.json").write_text(json.dumps(baseline))
        return {"model": FALLBACKS}
    validation = data.validation(ctx.config.holdout_days)
    model = build_model(model_name, ctx.config)
    eval_report = model.fit(data, before=validation.boundary, validation=validation)
    model.save(ctx.model_dir(model_name, "eval"))
    if ctx.config.serve_fit == "continue":
        serve_report = model.fine_tune(data, epochs=1)
    else:
        serve_report = model.fit(data, before=None, epochs=eval_report.refit_epochs)
    model.save(ctx.model_dir(model_name, "serve"))
    report = {
        "model": model_name, "best_epoch": eval_report.best_epoch, "epochs_run": eval_report.epochs,
        "train_seconds": round(eval_report.seconds + serve_report.seconds, 3),
        "positives_per_second": round(serve_report.samples_per_second),
        "history": eval_report.history,
    }
    (ctx.model_dir(model_name, "serve") / "fit.json").write_text(json.dumps(report, indent=2))
    checkpoint("train:done")
    return {k: v for k, v in report.items() if k != "history"}


def evaluate(ctx: RunContext, model_name: str) -> dict:
    """Holdout metrics (full ranking, last ``holdout_days`` before the interval end); record the
    candidate in rec.model_runs and apply the quality gate."""
    data = load_dataset(ctx)
    split = data.holdout(ctx.config.holdout_days)
    model = Recommender.load(ctx.model_dir(model_name, "eval"))
    started = time.perf_counter()
    metrics = evaluate_model(model, data, split.train, split.test, split.test_users).as_dict()
    metrics["scoring_seconds"] = round(time.perf_counter() - started, 3)
    metrics["baseline_popularity"] = json.loads((ctx.model_dir(Popularity.name, "eval") / "holdout.json").read_text())
    metrics["protocol"] = f"full ranking, last {ctx.config.holdout_days} day(s) before the interval end"
    if isinstance(model, TwoTower):
        # The same users scored from their domains alone: what a domain-only user can expect.
        model.features_only = True
        metrics["domains_only"] = evaluate_model(model, data, split.train, split.test, split.test_users).as_dict()
    fit = json.loads((ctx.model_dir(model_name, "serve") / "fit.json").read_text())
    validation = json.loads((ctx.run_dir / "validation.json").read_text())
    all_views = data.interactions()
    with connect(ctx.database_url) as conn:
        model_run_id = record_model_run(
            conn, ctx, model_name,
            counts={"n_users": int((np.diff(all_views.indptr) > 0).sum()), "n_videos": data.n_videos,
                    "n_train_rows": int(split.train.nnz), "n_holdout_rows": int(split.test.nnz)},
            metrics=metrics,
            rejected_counts={t: v["by_reason"] for t, v in validation.items()},
            timings={"train_seconds": fit["train_seconds"], "best_epoch": fit["best_epoch"],
                     "positives_per_second": fit["positives_per_second"]},
        )
        decision = quality_gate(conn, model_run_id, model_name, metrics["ndcg@10"], ctx.config.quality_tolerance)
    log.info("%s holdout %s; gate: %s", model_name, {k: v for k, v in metrics.items() if "@" in k}, decision)
    evaluation = {"model": model_name, "model_run_id": model_run_id, "publish": decision["publish"],
                  "reason": decision["reason"], "ndcg@10": metrics["ndcg@10"], "dot_product": model.dot_product}
    (ctx.model_dir(model_name, "serve") / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
    checkpoint("evaluate:done")
    return evaluation


def load_evaluation(ctx: RunContext, model_name: str) -> dict | None:
    """The evaluate step's decision for this run, for steps run separately (the CLI)."""
    path = ctx.model_dir(model_name, "serve") / "evaluation.json"
    return json.loads(path.read_text()) if path.exists() else None


def _serving_models(ctx: RunContext, model_name: str, two_tower: dict | None) -> ServingModels:
    """Hot users by this model; warm (domains only) by the two-tower when it passed its gate tonight,
    else by domain popularity; cold by popularity; new videos placed by the two-tower's content tower."""
    load = lambda name: Recommender.load(ctx.model_dir(name, "serve"))  # noqa: E731
    content = load(TwoTower.name) if two_tower and two_tower["publish"] else None
    warm = content if content is not None else load(FeaturePopularity.name)
    return ServingModels(hot=load(model_name), warm=warm, cold=load(Popularity.name), content=content)


def scores_dir(ctx: RunContext, model_name: str) -> Path:
    return ctx.run_dir / "outputs" / model_name


def score_videos(ctx: RunContext, model_name: str, evaluation: dict, two_tower: dict | None = None) -> list[int]:
    """Similar videos and the popular list to files; returns the user shards to score (none if the
    model did not pass its gate). Clears earlier attempts' files of this model."""
    shutil.rmtree(scores_dir(ctx, model_name), ignore_errors=True)
    if not evaluation["publish"]:
        log.info("model run %s did not pass the quality gate: nothing to score", evaluation["model_run_id"])
        return []
    data = load_dataset(ctx)
    set_torch_threads(ctx.config.torch_threads, data.n_views)
    write_item_outputs(data, _serving_models(ctx, model_name, two_tower), ctx.config,
                       scores_dir(ctx, model_name) / "items")
    return list(range(ctx.config.user_shards))


def score_users(ctx: RunContext, model_name: str, evaluation: dict, two_tower: dict | None, shard: int) -> dict:
    """Top-N for one shard of the users (idempotent: a retry rewrites exactly this shard's files)."""
    data = load_dataset(ctx)
    set_torch_threads(ctx.config.torch_threads, data.n_views)
    shards = ctx.config.user_shards
    rows = write_user_outputs(data, _serving_models(ctx, model_name, two_tower), ctx.config,
                              scores_dir(ctx, model_name) / f"users_{shard:04d}", shard, shards)
    checkpoint("score:done")
    return {"shard": shard, "shards": shards, "rows": rows}


def score(ctx: RunContext, model_name: str, evaluation: dict, two_tower: dict | None = None) -> dict:
    """Videos and every user shard in this process (the CLI and run_all; the DAG maps the shards)."""
    shards = score_videos(ctx, model_name, evaluation, two_tower)
    if not shards:
        return {"scored": False}
    results = [score_users(ctx, model_name, evaluation, two_tower, shard) for shard in shards]
    return {"scored": True, "shards": len(results), "rows": sum(r["rows"]["user_recommendations"] for r in results)}


OUTPUT_TABLES = [SIMILAR_VIDEOS, USER_RECOMMENDATIONS, POPULAR_VIDEOS]


def publish(ctx: RunContext, model_name: str, evaluation: dict) -> dict:
    """Stage with binary COPY, audit, then attach as this run's partitions in one transaction.
    Which run the _current views show is decided afterwards, for all models at once (choose_serving)."""
    model_run_id = int(evaluation["model_run_id"])
    if not evaluation["publish"]:
        return {"published": False, "model_run_id": model_run_id, "reason": evaluation["reason"]}
    out_dir = scores_dir(ctx, model_name)
    expected_groups = scored_groups(out_dir)
    timings = {}
    with connect(ctx.database_url) as conn:
        try:
            for output in OUTPUT_TABLES:
                started = time.perf_counter()
                stage_output(conn, output, model_run_id, read_output_chunks(out_dir, output, model_run_id))
                timings[f"stage_{output.name}_s"] = round(time.perf_counter() - started, 3)
            checkpoint("publish:after_stage")
            for output in OUTPUT_TABLES:
                audit_output(conn, output, model_run_id, expected_groups=expected_groups.get(output.name))
            checkpoint("publish:before_swap")
            timings["swap_s"] = round(swap_in(conn, model_run_id, OUTPUT_TABLES,
                                              lock_timeout_ms=ctx.config.swap_lock_timeout_ms), 3)
            checkpoint("publish:after_swap")
        except Exception:
            conn.rollback()
            drop_staging(conn, OUTPUT_TABLES, model_run_id)
            raise
        pruned = prune_published(conn, OUTPUT_TABLES, model_name, ctx.config.keep_published_runs,
                                 lock_timeout_ms=ctx.config.swap_lock_timeout_ms or 100)
        conn.execute("UPDATE rec.model_runs SET timings = timings || %s::jsonb WHERE model_run_id = %s",
                     (json.dumps(timings), model_run_id))
        conn.commit()
    return {"published": True, "model_run_id": model_run_id, "timings": timings, "pruned": pruned}


def choose_serving(ctx: RunContext, evaluations: list[dict]) -> dict:
    """Point the _current views at one of tonight's published runs, all outputs in one transaction.

    ``serving_model`` "auto" takes the best holdout NDCG@10 among dot-product models; a named model
    that did not publish tonight falls back to auto. With nothing published, serving stays as it was.
    """
    published = [e for e in evaluations if e and e["publish"]]
    wanted = ctx.config.serving_model
    chosen = next((e for e in published if e["model"] == wanted), None)
    if chosen is None:
        if wanted != "auto":
            log.warning("serving_model %s did not publish tonight: choosing automatically", wanted)
        candidates = [e for e in published if e["dot_product"]] or published
        chosen = max(candidates, key=lambda e: e["ndcg@10"], default=None)
    if chosen is None:
        log.warning("no model passed the quality gate tonight: the published output stays as it was")
        return {"serving": None}
    checkpoint("serving:before_switch")
    with connect(ctx.database_url) as conn:
        moved = point_serving(conn, int(chosen["model_run_id"]), OUTPUT_TABLES,
                              lock_timeout_ms=ctx.config.swap_lock_timeout_ms)
    if not moved:
        log.info("a run for a later data interval serves already: this backfill does not take over")
    return {"serving": chosen["model"], "model_run_id": chosen["model_run_id"], "moved": moved}


def summarize(ctx: RunContext) -> dict:
    """A compact report of the run, logged and saved next to its files."""
    from rec_models.report import run_summary

    with connect(ctx.database_url) as conn:
        summary = run_summary(conn, ctx.run_key)
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    log.info("run %s summary: %s", ctx.run_key, json.dumps(summary, default=str))
    return summary


def run_all(ctx: RunContext, models: tuple[str, ...] = MODEL_NAMES) -> dict:
    """The whole nightly run in this process, in DAG order (the CLI and tests use it)."""
    migrate(ctx)
    validate(ctx)
    extract(ctx)
    train(ctx, FALLBACKS)
    evaluations = {}
    for name in models:
        train(ctx, name)
        evaluations[name] = evaluate(ctx, name)
    two_tower = evaluations.get(TwoTower.name)
    published = {}
    for name, evaluation in evaluations.items():
        score(ctx, name, evaluation, two_tower)
        published[name] = publish(ctx, name, evaluation)
    serving = choose_serving(ctx, list(evaluations.values()))
    summarize(ctx)
    return {"published": published, **serving}


__all__ = ["RunContext", "validate", "extract", "train", "evaluate", "score", "publish", "choose_serving", "summarize"]
