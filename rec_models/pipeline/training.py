"""Training tasks: how each model trains tonight (full or warm from its parent's checkpoint), the
models themselves, and the fallbacks (popularity, the domain model, domain popularity)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rec_models.data.dataset import DAY, Dataset
from rec_models.data.id_maps import IdMaps
from rec_models.db.connect import connect
from rec_models.db.runs import parent_run, recorded_lineage, run_interval_end
from rec_models.evaluation import evaluate_model
from rec_models.faults import checkpoint
from rec_models.models import FeaturePopularity, Popularity, build_domain_model, build_model
from rec_models.models.base import CheckpointError, WarmStart
from rec_models.names import FALLBACKS, POPULARITY
from rec_models.run import Run
from rec_models.threads import set_torch_threads

log = logging.getLogger(__name__)


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
    run's checkpoint on recent views plus a sample of older ones. Saves both models in the run's checkpoint."""
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
