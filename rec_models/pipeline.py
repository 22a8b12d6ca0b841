"""One function per DAG task, callable without Airflow: the DAG and the CLI both call these.

Tasks hand each other a run folder (files) and model run ids, never data. Every task is idempotent
for its run key (the data interval end): a retry or a rerun replaces what an earlier attempt wrote.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from rec_models.data.checks import check_interval as check_interval_views
from rec_models.data.dataset import DAY, Dataset
from rec_models.data.id_maps import IdMaps
from rec_models.data.rules import SERVICE_START
from rec_models.data.snapshot import extract_snapshot
from rec_models.data.validate import drop_checked, validate_sources
from rec_models.db.connect import connect
from rec_models.db.health import record_run_health
from rec_models.db.migrate import apply_migrations
from rec_models.db.next_day import measure, record_next_day, served_runs
from rec_models.db.outputs import OUTPUT_TABLES
from rec_models.db.publish import audit_output, drop_staging, point_serving, prune_published, stage_output, swap_in
from rec_models.db.runs import (kept_published, latest_published, parent_run, record_gate, record_model_run,
                                record_night_check, record_warm_choice, recorded_lineage, run_interval_end,
                                serving_warm_ndcg)
from rec_models.evaluation import evaluate_model
from rec_models.evaluation.gate import PublishedRun, quality_gate, warm_gate
from rec_models.faults import checkpoint
from rec_models.models import FeaturePopularity, Popularity, build_domain_model, build_model
from rec_models.models.base import CheckpointError, WarmStart
from rec_models.names import (DOMAIN_RIDGE, FALLBACKS, FEATURE_POPULARITY, MODEL_NAMES, POPULARITY, TWO_TOWER,
                              USER_RECOMMENDATIONS)
from rec_models.report import run_summary
from rec_models.run import Run, prune_run_folders
from rec_models.scoring import (ITEMS_PART, ServingModels, catalogue_counts, read_output_chunks, scored_groups,
                                user_part_name, write_item_outputs, write_user_outputs)
from rec_models.threads import set_torch_threads

log = logging.getLogger(__name__)


def migrate(run: Run) -> list[str]:
    """Bring the rec schema up to date (idempotent, serialised by an advisory lock)."""
    return apply_migrations(run.database_url)


def validate(run: Run) -> dict:
    """Quarantine bad rows of the window; fail before training if the sources cannot be trusted."""
    run.files.mark_in_use()  # the run's first task that writes into its folder
    with connect(run.database_url) as conn:
        reports = validate_sources(conn, run.run_key, run.interval_end, run.window_start, SERVICE_START,
                                   run.config.max_rejected_share)
    summary = {t: {"rows": r.rows, "rejected": r.rejected, "by_reason": r.by_reason} for t, r in reports.items()}
    run.files.write_validation(summary)
    checkpoint("validate:done")
    return summary


def extract(run: Run) -> str:
    with connect(run.database_url) as conn:
        snapshot = extract_snapshot(conn, run.interval_end, run.window_start, SERVICE_START, run.run_key)
        run.files.save_snapshot(snapshot)
        drop_checked(conn, run.run_key)  # the judged rows are in the snapshot now
    # The one data object of the run (id maps, views, domain and content bags), built once here.
    run.files.save_dataset(Dataset.from_snapshot(snapshot))
    checkpoint("extract:done")
    return run.files.snapshot_location


class NightSkipped(RuntimeError):
    """The night's data cannot be trained on (no views, a partial day): the previous run keeps serving."""


def check_interval(run: Run) -> dict:
    """Before training: does the interval hold the views a night should? Records the answer in
    rec.night_checks; raises :class:`NightSkipped` with the reason when it does not."""
    data = run.files.load_dataset()
    start = run.interval_start_or_default
    night = check_interval_views(data, start.timestamp(), run.interval_end.timestamp(), run.config.partial_day_share)
    with connect(run.database_url) as conn:
        record_night_check(conn, run_key=run.run_key, dag_run_id=run.dag_run_id, interval_start=start,
                           interval_end=run.interval_end, views_in_interval=night.views_in_interval,
                           median_daily_views=night.median_daily_views, reason=night.reason)
    result = {"views_in_interval": night.views_in_interval, "median_daily_views": night.median_daily_views,
              "train": night.train, "reason": night.reason}
    if not night.train:
        log.error("night %s skips training, the published runs keep serving: %s", run.run_key, night.reason)
        raise NightSkipped(night.reason)
    return result


@dataclass(frozen=True)
class TrainPlan:
    """How a model trains tonight: from scratch, or warm from its parent run's checkpoint."""

    mode: str  # "full" or "warm"
    reason: str
    parent_model_run_id: int | None = None
    warm: WarmStart | None = None
    generation: int = 0  # nights in a row continued warm since the last full retrain


def plan_training(run: Run, model_name: str) -> TrainPlan:
    """``train_mode`` applied: a rerun trains as its earlier attempt recorded; warm needs the parent's
    checkpoint usable (else one log line and a full retrain); auto retrains from scratch every
    ``full_retrain_every`` nights."""
    config = run.config
    if config.train_mode == "full":
        return TrainPlan("full", "train_mode full")
    with connect(run.database_url) as conn:
        recorded = recorded_lineage(conn, run.run_key, model_name)
        if recorded and recorded[0] == "full":
            return TrainPlan("full", "as this night's earlier attempt")
        if recorded and recorded[1] is not None:
            parent_end = run_interval_end(conn, recorded[1])
            parent = (recorded[1], parent_end) if parent_end else None
        else:
            parent = parent_run(conn, model_name, run.interval_end)
    if parent is None:
        return TrainPlan("full", "no published run before this interval to continue from")
    parent_id, parent_end = parent
    try:
        # Settings that shape the weights are compared by fit_warm, which falls back the same way.
        model, ids, header = run.folder_of(parent_end).load_checkpoint(model_name)
    except CheckpointError as exc:
        log.warning("%s: the checkpoint of parent run %d is unusable, training from scratch: %s", model_name,
                    parent_id, exc)
        return TrainPlan("full", f"parent run {parent_id}: {exc}")
    generation = int(header.get("generation", 0)) + 1
    if config.train_mode == "auto" and not recorded and generation >= config.full_retrain_every:
        return TrainPlan("full", f"full retrain every {config.full_retrain_every} nights")
    # Every view since the parent's data ended is recent: a skipped night's day is not left to the sample.
    since_parent = (run.interval_end - parent_end).total_seconds() / DAY
    warm = WarmStart(parent=model, parent_ids=ids, recent_days=max(config.warm_recent_days, since_parent),
                     history_share=config.warm_history_share, epochs=config.warm_epochs,
                     patience=config.warm_patience)
    return TrainPlan("warm", f"continues from run {parent_id}", parent_id, warm, generation)


def train(run: Run, model_name: str, *, plan: TrainPlan | None = None) -> dict:
    """Fit with early stopping on a validation split cut from training data (the evaluated model, kept
    as the checkpoint later nights continue from), then the serving model on all views: one more epoch
    from those weights, or a refit (``serve_fit``). Warm (``train_mode``): both continue from the parent
    run's checkpoint on recent views plus a sample of older ones. Saves both models in the run folder."""
    data = run.files.load_dataset()
    set_torch_threads(run.config.torch_threads, data.n_views, run.config.tasks_per_machine)
    if model_name == FALLBACKS:
        return _train_fallbacks(run, data)
    validation = data.validation(run.config.holdout_days)
    plan = plan or plan_training(run, model_name)
    model = build_model(model_name, run.config)
    if plan.warm is not None:
        try:
            eval_report = model.fit_warm(data, plan.warm, before=validation.boundary, validation=validation)
        except CheckpointError as exc:
            log.warning("%s: cannot continue from parent run %d, training from scratch: %s", model_name,
                        plan.parent_model_run_id, exc)
            plan = TrainPlan("full", f"parent run {plan.parent_model_run_id}: {exc}")
            model = build_model(model_name, run.config)
    if plan.warm is None:
        eval_report = model.fit(data, before=validation.boundary, validation=validation)
    log.info("%s trained %s (%s)", model_name, plan.mode, plan.reason)
    run.files.save_model(model, "eval")
    run.files.save_checkpoint(model, IdMaps.of(data), {
        "run_key": run.run_key, "model": model_name, "train_mode": plan.mode, "generation": plan.generation,
        "parent_model_run_id": plan.parent_model_run_id,
        "weights": getattr(run.config, model_name).weights_fingerprint()})
    if plan.warm is not None:
        serve_report = model.fine_tune(data, epochs=1, train_on=model.warm_examples(
            data, None, plan.warm.recent_days, plan.warm.history_share, run.config.seed))
    elif run.config.serve_fit == "continue":
        serve_report = model.fine_tune(data, epochs=1)
    else:
        serve_report = model.refit(data, eval_report)
    run.files.save_model(model, "serve")
    run.files.add_serving_model(model)
    report = {
        "model": model_name, "best_epoch": eval_report.best_epoch, "epochs_run": eval_report.epochs,
        "train_seconds": round(eval_report.seconds + serve_report.seconds, 3),
        "positives_per_second": round(serve_report.samples_per_second),
        "train_mode": plan.mode, "mode_reason": plan.reason, "parent_model_run_id": plan.parent_model_run_id,
        "history": eval_report.history,
    }
    run.files.write_fit(model_name, report)
    checkpoint("train:done")
    return {k: v for k, v in report.items() if k != "history"}


def _train_fallbacks(run: Run, data: Dataset) -> dict:
    """Popularity (cold and unknown users), the domain model and domain popularity (candidates for the
    users known only by their domains, with the two-tower's domain tower), each on every view (serve)
    and before the holdout (eval)."""
    split = data.holdout(run.config.holdout_days)
    popularity = Popularity()
    domain_models = (build_domain_model(run.config), FeaturePopularity())
    for model in (popularity, *domain_models):
        model.fit(data)
        run.files.save_model(model, "serve")
        model.fit(data, before=split.boundary)
        run.files.save_model(model, "eval")
    # The baseline every model's holdout metrics are reported next to: computed once per run.
    run.files.write_baseline(POPULARITY, evaluate_model(popularity, data, split.train, split.test,
                                                        split.test_users).as_dict())
    for model in domain_models:  # scoring the holdout's users from their domains alone
        run.files.write_baseline(model.name, evaluate_model(model, data, split.train, split.test,
                                                            split.test_users).as_dict())
    return {"model": FALLBACKS}


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
    return evaluation


def _evaluate(run: Run, model_name: str) -> dict:
    data = run.files.load_dataset()
    split = data.holdout(run.config.holdout_days)
    model = run.files.load_model(model_name, "eval")
    started = time.perf_counter()
    metrics = evaluate_model(model, data, split.train, split.test, split.test_users).as_dict()
    metrics["scoring_seconds"] = round(time.perf_counter() - started, 3)
    metrics["baseline_popularity"] = run.files.read_baseline(POPULARITY)
    metrics["protocol"] = f"full ranking, last {run.config.holdout_days} day(s) before the interval end"
    if model.serves_warm_users:
        # The same users scored from their domains alone: what a domain-only user can expect.
        metrics["domains_only"] = evaluate_model(model.features_only(), data, split.train, split.test,
                                                 split.test_users).as_dict()
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
        published = latest_published(conn, model_name, other_than=model_run_id, interval_end=run.interval_end)
        published_end = run_interval_end(conn, published[0]) if published else None
    baseline = None
    if published:
        # Tonight's holdout is not the published run's: score that run's serving model on tonight's, so
        # the gate compares the same users and views (its recorded figure only when it cannot be scored).
        on_tonight = _published_on_holdout(run, model_name, published[0], published_end, data, split)
        metrics["published_on_holdout"] = on_tonight
        baseline = PublishedRun(published[0], on_tonight, same_holdout=True) if on_tonight is not None \
            else PublishedRun(*published)
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


def _serving_models(run: Run, model_name: str, two_tower: dict | None) -> ServingModels:
    """Hot users by this model; warm (domains only) by the model ``choose_warm`` chose; cold by
    popularity; new videos placed by the two-tower's content tower when it passed its gate."""
    content = run.files.load_model(TWO_TOWER, "serve") if two_tower and two_tower["publish"] else None
    warm = run.files.load_model(run.files.read_warm_choice(model_name)["model"], "serve")
    return ServingModels(hot=run.files.load_model(model_name, "serve"), warm=warm,
                         cold=run.files.load_model(POPULARITY, "serve"), content=content)


def score_videos(run: Run, model_name: str, evaluation: dict, two_tower: dict | None = None) -> list[int]:
    """Similar videos and the popular list to files; returns the user shards to score (none if the
    model did not pass its gate). Clears earlier attempts' files of this model."""
    run.files.clear_scores(model_name)
    if not evaluation["publish"]:
        log.info("model run %s did not pass the quality gate: nothing to score", evaluation["model_run_id"])
        return []
    choose_warm(run, model_name, evaluation, two_tower)
    data = run.files.load_dataset()
    set_torch_threads(run.config.torch_threads, data.n_views, run.config.tasks_per_machine)
    with run.files.staged_scores(model_name, ITEMS_PART) as folder:
        write_item_outputs(data, _serving_models(run, model_name, two_tower), run.config, folder)
    return list(range(run.config.user_shards))


def score_users(run: Run, model_name: str, evaluation: dict, two_tower: dict | None, shard: int) -> dict:
    """Top-N for one shard of the users (idempotent: a retry rewrites exactly this shard's files)."""
    data = run.files.load_dataset()
    set_torch_threads(run.config.torch_threads, data.n_views, run.config.tasks_per_machine)
    shards = run.config.user_shards
    with run.files.staged_scores(model_name, user_part_name(shard)) as folder:
        rows = write_user_outputs(data, _serving_models(run, model_name, two_tower), run.config, folder, shard,
                                  shards)
    checkpoint("score:done")
    return {"shard": shard, "shards": shards, "rows": rows}


def score(run: Run, model_name: str, evaluation: dict, two_tower: dict | None = None) -> dict:
    """Videos and every user shard in this process (the CLI and run_all; the DAG maps the shards)."""
    shards = score_videos(run, model_name, evaluation, two_tower)
    if not shards:
        return {"scored": False}
    results = [score_users(run, model_name, evaluation, two_tower, shard) for shard in shards]
    return {"scored": True, "shards": len(results), "rows": sum(r["rows"][USER_RECOMMENDATIONS] for r in results)}


def publish(run: Run, model_name: str, evaluation: dict) -> dict:
    """Stage with binary COPY, audit, then attach as this run's partitions in one transaction.
    Which run the _current views show is decided afterwards, for all models at once (choose_serving)."""
    model_run_id = int(evaluation["model_run_id"])
    if not evaluation["publish"]:
        return {"published": False, "model_run_id": model_run_id, "reason": evaluation["reason"]}
    out_dir = run.files.scores_dir(model_name)
    expected_groups = scored_groups(out_dir)
    timings = {}
    with connect(run.database_url) as conn:
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
                                              lock_timeout_ms=run.config.swap_lock_timeout_ms), 3)
            checkpoint("publish:after_swap")
        except Exception:
            conn.rollback()
            drop_staging(conn, OUTPUT_TABLES, model_run_id)
            raise
        started = time.perf_counter()
        record_run_health(conn, model_run_id, **catalogue_counts(out_dir))  # before pruning: churn reads the previous run
        timings["health_s"] = round(time.perf_counter() - started, 3)
        pruned = prune_published(conn, OUTPUT_TABLES, model_name, run.config.keep_published_runs,
                                 lock_timeout_ms=run.config.swap_lock_timeout_ms)
        conn.execute("UPDATE rec.model_runs SET timings = timings || %s::jsonb WHERE model_run_id = %s",
                     (json.dumps(timings), model_run_id))
        conn.commit()
    return {"published": True, "model_run_id": model_run_id, "timings": timings, "pruned": pruned}


def choose_serving(run: Run, evaluations: list[dict]) -> dict:
    """Point the _current views at one of tonight's published runs, all outputs in one transaction.

    ``serving_model`` "auto" takes the best holdout NDCG@10 among dot-product models; a named model
    that did not publish tonight falls back to auto. With nothing published, serving stays as it was.
    """
    published = [e for e in evaluations if e and e["publish"]]
    wanted = run.config.serving_model
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
    with connect(run.database_url) as conn:
        moved = point_serving(conn, int(chosen["model_run_id"]), OUTPUT_TABLES,
                              lock_timeout_ms=run.config.swap_lock_timeout_ms)
    if not moved:
        log.info("a run for a later data interval serves already: this backfill does not take over")
    return {"serving": chosen["model"], "model_run_id": chosen["model_run_id"], "moved": moved}


def next_day_metrics(run: Run) -> dict:
    """Before training: what each model's serving run listed, against the views of the interval that
    just ended (rec.next_day_metrics; a rerun replaces this night's rows). NDCG@10 per model and of
    its popular list, over every user with a list."""
    start = run.interval_start_or_default
    with connect(run.database_url) as conn:
        served = served_runs(conn, start)
        measured = {r.model_run_id: measure(conn, r, start, run.interval_end, run.window_start) for r in served}
        record_next_day(conn, run.run_key, measured)
    summary = {}
    for r in served:
        values = {(ranker, metric): value for ranker, segment, metric, value in measured[r.model_run_id]
                  if segment == "all"}
        summary[r.model_name] = {"model_run_id": r.model_run_id, "users": values.get(("model", "users")),
                                 "ndcg@10": values.get(("model", "ndcg@10")),
                                 "popularity_ndcg@10": values.get(("popularity", "ndcg@10"))}
    log.info("next-day metrics of the runs that served %s: %s", run.run_key, summary)
    return summary


def summarize(run: Run) -> dict:
    """A compact report of the run, logged and saved next to its files; then older run folders are
    pruned to the checkpoints of runs still published."""
    with connect(run.database_url) as conn:
        summary = run_summary(conn, run.run_key)
        keep = set(kept_published(conn))
    run.files.write_summary(summary)
    run.files.unmark_in_use()
    removed = prune_run_folders(run.store, run.config.keep_run_folders, keep, run.interval_end)
    if removed:
        log.info("pruned %d paths of older run folders", len(removed))
    log.info("run %s summary: %s", run.run_key, json.dumps(summary, default=str))
    return summary


def run_all(run: Run, models: tuple[str, ...] = MODEL_NAMES) -> dict:
    """The whole nightly run in this process, in DAG order (the CLI and tests use it)."""
    migrate(run)
    validate(run)
    next_day_metrics(run)
    extract(run)
    try:
        check_interval(run)
    except NightSkipped as skipped:
        return {"published": {}, "serving": None, "skipped": str(skipped)}
    train(run, FALLBACKS)
    evaluations = {}
    for name in models:
        train(run, name)
        evaluations[name] = evaluate(run, name)
    two_tower = evaluations.get(TWO_TOWER)
    published = {}
    for name, evaluation in evaluations.items():
        score(run, name, evaluation, two_tower)
        published[name] = publish(run, name, evaluation)
    serving = choose_serving(run, list(evaluations.values()))
    summarize(run)
    return {"published": published, **serving}
