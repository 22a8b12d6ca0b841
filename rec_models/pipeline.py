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

from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.snapshot import Snapshot, extract_snapshot
from rec_models.data.synthetic import SERVICE_START
from rec_models.data.validate import validate_sources
from rec_models.db.connect import connect
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import OUTPUTS, POPULAR_VIDEOS, SIMILAR_VIDEOS, USER_RECOMMENDATIONS
from rec_models.db.publish import audit_output, drop_staging, prune_published, stage_output, swap_in
from rec_models.db.runs import quality_gate, record_model_run
from rec_models.models import FeaturePopularity, MatrixFactorization, Popularity, Recommender
from rec_models.evaluation import evaluate_ranking
from rec_models.scoring import write_outputs, read_output_chunks
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
    return summary


def extract(ctx: RunContext) -> str:
    with connect(ctx.database_url) as conn:
        snapshot = extract_snapshot(conn, ctx.interval_end, ctx.window_start, SERVICE_START)
    folder = ctx.run_dir / "snapshot"
    snapshot.save(folder)
    return str(folder)


def load_dataset(ctx: RunContext) -> Dataset:
    return Dataset.from_snapshot(Snapshot.load(ctx.run_dir / "snapshot"))


def build_model(name: str, config: PipelineConfig) -> Recommender:
    if name == "mf":
        return MatrixFactorization(config.mf, seed=config.seed)
    raise ValueError(f"unknown model {name!r}; known: mf")


def train(ctx: RunContext, model_name: str) -> dict:
    """Fit with early stopping on a validation split cut from training data, then refit on all views
    with the chosen number of epochs for serving. Saves both models in the run folder."""
    set_torch_threads(ctx.config.torch_threads)
    data = load_dataset(ctx)
    if model_name == FALLBACKS:
        for model in (Popularity(), FeaturePopularity()):
            model.fit(data)
            model.save(ctx.model_dir(model.name, "serve"))
            model.fit(data, before=data.holdout(ctx.config.holdout_days).boundary)
            model.save(ctx.model_dir(model.name, "eval"))
        return {"model": FALLBACKS}
    validation = data.validation(ctx.config.holdout_days)
    model = build_model(model_name, ctx.config)
    eval_report = model.fit(data, before=validation.boundary, validation=validation)
    model.save(ctx.model_dir(model_name, "eval"))
    serve_report = model.fit(data, before=None, epochs=eval_report.best_epoch)
    model.save(ctx.model_dir(model_name, "serve"))
    report = {
        "model": model_name, "best_epoch": eval_report.best_epoch, "epochs_run": eval_report.epochs,
        "train_seconds": round(eval_report.seconds + serve_report.seconds, 3),
        "positives_per_second": round(serve_report.samples_per_second),
        "history": eval_report.history,
    }
    (ctx.model_dir(model_name, "serve") / "fit.json").write_text(json.dumps(report, indent=2))
    return {k: v for k, v in report.items() if k != "history"}


def evaluate(ctx: RunContext, model_name: str) -> dict:
    """Holdout metrics (full ranking, last ``holdout_days`` before the interval end); record the
    candidate in rec.model_runs and apply the quality gate."""
    data = load_dataset(ctx)
    split = data.holdout(ctx.config.holdout_days)
    users = split.test_users
    metrics = {}
    for name in (model_name, Popularity.name):
        model = Recommender.load(ctx.model_dir(name, "eval"))
        result = evaluate_ranking(model.user_vectors(data, np.arange(data.n_users)), model.item_vectors(),
                                  split.train, split.test, users, k=10)
        metrics[name] = result.as_dict()
    fit = json.loads((ctx.model_dir(model_name, "serve") / "fit.json").read_text())
    validation = json.loads((ctx.run_dir / "validation.json").read_text())
    all_views = data.interactions()
    with connect(ctx.database_url) as conn:
        model_run_id = record_model_run(
            conn, ctx, model_name,
            counts={"n_users": int((np.diff(all_views.indptr) > 0).sum()), "n_videos": data.n_videos,
                    "n_train_rows": int(split.train.nnz), "n_holdout_rows": int(split.test.nnz)},
            metrics={**metrics[model_name], "baseline_popularity": metrics[Popularity.name],
                     "protocol": f"full ranking, last {ctx.config.holdout_days} day(s) before the interval end"},
            rejected_counts={t: v["by_reason"] for t, v in validation.items()},
            timings={"train_seconds": fit["train_seconds"], "best_epoch": fit["best_epoch"],
                     "positives_per_second": fit["positives_per_second"]},
        )
        decision = quality_gate(conn, model_run_id, model_name, metrics[model_name]["ndcg@10"],
                                ctx.config.quality_tolerance)
    log.info("%s holdout %s; popularity %s; gate: %s", model_name, metrics[model_name],
             metrics[Popularity.name], decision)
    return {"model_run_id": model_run_id, "publish": decision["publish"], "reason": decision["reason"],
            "ndcg@10": metrics[model_name]["ndcg@10"]}


def score(ctx: RunContext, model_name: str, evaluation: dict) -> dict:
    """Top-N similar videos and per-user top-N (hot: model, warm: domains, cold: popularity) to files."""
    if not evaluation["publish"]:
        log.info("model run %s did not pass the quality gate: nothing to score", evaluation["model_run_id"])
        return {"scored": False}
    set_torch_threads(ctx.config.torch_threads)
    data = load_dataset(ctx)
    models = {name: Recommender.load(ctx.model_dir(name, "serve"))
              for name in (model_name, Popularity.name, FeaturePopularity.name)}
    out_dir = ctx.run_dir / "outputs" / model_name
    counts = write_outputs(data, models[model_name], models[Popularity.name], models[FeaturePopularity.name],
                           ctx.config, out_dir)
    return {"scored": True, "rows": counts}


def publish(ctx: RunContext, model_name: str, evaluation: dict, serve: bool = True) -> dict:
    """Stage with binary COPY, audit, then attach and switch the serving views in one transaction."""
    model_run_id = int(evaluation["model_run_id"])
    if not evaluation["publish"]:
        return {"published": False, "model_run_id": model_run_id, "reason": evaluation["reason"]}
    out_dir = ctx.run_dir / "outputs" / model_name
    outputs = [SIMILAR_VIDEOS, USER_RECOMMENDATIONS, POPULAR_VIDEOS]
    manifest = json.loads((out_dir / "manifest.json").read_text())
    timings = {}
    with connect(ctx.database_url) as conn:
        try:
            for output in outputs:
                started = time.perf_counter()
                stage_output(conn, output, model_run_id, read_output_chunks(out_dir, output, model_run_id))
                audit_output(conn, output, model_run_id, expected_groups=manifest["groups"].get(output.name))
                timings[f"stage_{output.name}_s"] = round(time.perf_counter() - started, 3)
            timings["swap_s"] = round(swap_in(conn, model_run_id, outputs, serve=serve), 3)
        except Exception:
            conn.rollback()
            drop_staging(conn, outputs, model_run_id)
            raise
        pruned = prune_published(conn, outputs, model_name, ctx.config.keep_published_runs)
        conn.execute("UPDATE rec.model_runs SET timings = timings || %s::jsonb WHERE model_run_id = %s",
                     (json.dumps(timings), model_run_id))
        conn.commit()
    return {"published": True, "model_run_id": model_run_id, "timings": timings, "pruned": pruned}


def summarize(ctx: RunContext) -> dict:
    """A compact report of the run, logged and saved next to its files."""
    from rec_models.report import run_summary

    with connect(ctx.database_url) as conn:
        summary = run_summary(conn, ctx.run_key)
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    log.info("run %s summary: %s", ctx.run_key, json.dumps(summary, default=str))
    return summary


def clean_run_dir(ctx: RunContext) -> None:
    shutil.rmtree(ctx.run_dir, ignore_errors=True)


__all__ = ["RunContext", "validate", "extract", "train", "evaluate", "score", "publish", "summarize", "OUTPUTS"]
