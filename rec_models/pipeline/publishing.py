"""Publishing tasks: write-audit-publish of each model's run, the serving switch, the night's summary
and the pruning of older run folders."""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from rec_models.alerts.events import Alert, raise_alert
from rec_models.db.connect import connect
from rec_models.db.disk import database_bytes, record_night_bytes
from rec_models.db.health import record_run_health
from rec_models.db.erasure import open_summary, requested_users
from rec_models.db.outputs import OUTPUT_TABLES, USER_RECOMMENDATIONS
from rec_models.db.retention import Rule, expire, record_retention
from rec_models.db.publish import audit_output, drop_staging, point_serving, prune_published, stage_output, swap_in
from rec_models.db.runs import keep_as_candidate, kept_checkpoints
from rec_models.faults import checkpoint
from rec_models.pipeline.evaluation import evaluation_of, publish_plan
from rec_models.report import run_summary
from rec_models.run import Run, prune_run_folders
from rec_models.scoring import catalogue_counts, read_output_chunks, scored_groups

log = logging.getLogger(__name__)


def publish(run: Run, model_name: str, evaluations: list[dict]) -> dict:
    """Stage with binary COPY, audit, then attach as this run's partitions in one transaction, for a
    model tonight's publish plan publishes (an accepted model it leaves out is kept as a candidate).
    Which run the _current views show is decided afterwards, for all models at once (choose_serving)."""
    evaluation = evaluation_of(evaluations, model_name)
    model_run_id = int(evaluation["model_run_id"])
    if not evaluation["publish"]:
        return {"published": False, "model_run_id": model_run_id, "reason": evaluation["reason"]}
    plan = publish_plan(run, evaluations)
    if model_name not in plan.published:
        reason = (f"{evaluation['reason']}; kept as a candidate, not published: {plan.serving} serves "
                  f"({plan.reason}) and publish_models is {run.config.publish_models}")
        run.files.clear_scores(model_name)  # scored before every evaluation was in: not needed after all
        with connect(run.database_url) as conn:
            keep_as_candidate(conn, model_run_id, reason)
        return {"published": False, "model_run_id": model_run_id, "kept_as_candidate": True, "reason": reason}
    out_dir = run.files.scores_dir(model_name)
    expected_groups = scored_groups(out_dir)
    timings = {}
    with connect(run.database_url) as conn:
        # The extract left requested people out; these are requests filed since (the swap takes later ones).
        requested, newest_request = requested_users(conn)
        try:
            withheld = set()
            for output in OUTPUT_TABLES:
                started = time.perf_counter()
                chunks = read_output_chunks(out_dir, output, model_run_id)
                if output.group_key == "user_id":
                    chunks = _without_people(chunks, requested, withheld)
                stage_output(conn, output, model_run_id, chunks)
                timings[f"stage_{output.name}_s"] = round(time.perf_counter() - started, 3)
            if withheld:
                log.warning("%s: lists of %d people who asked to be forgotten left out", model_name, len(withheld))
                expected_groups[USER_RECOMMENDATIONS.name] -= len(withheld)
            checkpoint("publish:after_stage")
            started = time.perf_counter()
            for output in OUTPUT_TABLES:
                audit_output(conn, output, model_run_id, expected_groups=expected_groups.get(output.name))
            timings["audit_s"] = round(time.perf_counter() - started, 3)
            checkpoint("publish:before_swap")
            timings["swap_s"] = round(swap_in(conn, model_run_id, OUTPUT_TABLES, withhold_after_request=newest_request,
                                              lock_timeout_ms=run.config.swap_lock_timeout_ms), 3)
            checkpoint("publish:after_swap")
        except Exception:
            conn.rollback()
            drop_staging(conn, OUTPUT_TABLES, model_run_id)
            raise
        started = time.perf_counter()
        record_run_health(conn, model_run_id, **catalogue_counts(out_dir))  # before pruning: churn reads the previous run
        timings["health_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        pruned = prune_published(conn, OUTPUT_TABLES, model_name, run.config.keep_published_runs,
                                 lock_timeout_ms=run.config.swap_lock_timeout_ms)
        timings["prune_s"] = round(time.perf_counter() - started, 3)
        conn.execute("UPDATE rec.model_runs SET timings = timings || %s::jsonb WHERE model_run_id = %s",
                     (json.dumps(timings), model_run_id))
        conn.commit()
    return {"published": True, "model_run_id": model_run_id, "timings": timings, "pruned": pruned}


def _without_people(chunks, people: np.ndarray, withheld: set[int]):
    """User-list chunks (user id second) without the rows of ``people``, whose ids go into ``withheld``."""
    for chunk in chunks:
        drop = np.isin(chunk[1], people)
        if drop.any():
            withheld.update(int(u) for u in np.unique(chunk[1][drop]))
            chunk = [column[~drop] if isinstance(column, np.ndarray) else column for column in chunk]
        yield chunk


def choose_serving(run: Run, evaluations: list[dict]) -> dict:
    """Point the _current views at the run tonight's publish plan chose, all outputs in one transaction.

    ``serving_model`` "auto" takes the best holdout NDCG@10 among dot-product models; a named model
    that did not pass its gate tonight falls back to auto. With nothing published, serving stays as it was.
    """
    plan = publish_plan(run, evaluations)
    if plan.serving is None:
        log.warning("no model passed the quality gate tonight: the published output stays as it was")
        return {"serving": None}
    if run.config.serving_model not in ("auto", plan.serving):
        log.warning("serving_model %s did not pass its gate tonight: %s chosen automatically",
                    run.config.serving_model, plan.serving)
    chosen = evaluation_of(evaluations, plan.serving)
    checkpoint("serving:before_switch")
    with connect(run.database_url) as conn:
        moved = point_serving(conn, int(chosen["model_run_id"]), OUTPUT_TABLES,
                              lock_timeout_ms=run.config.swap_lock_timeout_ms)
    if not moved:
        log.info("a run for a later data interval serves already: this backfill does not take over")
    return {"serving": chosen["model"], "model_run_id": chosen["model_run_id"], "moved": moved}


def summarize(run: Run) -> dict:
    """A compact report of the run, logged and saved next to its files; then retention: older run
    folders are pruned to the checkpoints of runs still published (and each model's latest accepted
    run), and every table's lifetime applied (rec.retention_runs); then the night's run folder and
    database bytes, recorded next to what the pre-flight check expected (rec.night_checks)."""
    with connect(run.database_url) as conn:
        summary = run_summary(conn, run.run_key)
        keep = set(kept_checkpoints(conn))
        summary["personal_data"] = {"requested_people_in_upstream_sources": run.files.read_withheld(),
                                    **open_summary(conn)}
    run.files.write_summary(summary)
    run.files.unmark_in_use()
    step = "pruning older run folders"
    try:
        checkpoint("retention:prune")
        removed = prune_run_folders(run.store, run.config.keep_run_folders, keep, run.interval_end)
        step = "applying the tables' lifetimes"
        with connect(run.database_url) as conn:
            rules = [Rule("run folders", f"the newest {run.config.keep_run_folders} nights whole; older ones keep "
                                         "the checkpoints of runs still published", len(removed)),
                     *expire(conn, run.interval_end, rejected_days=run.config.keep_rejected_days,
                             metrics_days=run.config.keep_metrics_days, alerts_days=run.config.keep_alerts_days)]
            record_retention(conn, run.run_key, rules)
    except Exception as exc:
        raise_alert(run.database_url, Alert(run.run_key, "retention_failed", f"{step}: {type(exc).__name__}: {exc}"))
        exc.alerted = True  # the task's failure callback adds no second alert
        raise
    summary["retention"] = {rule.place: rule.removed for rule in rules}
    with connect(run.database_url) as conn:
        parts = run.files.stored_bytes()
        summary["disk"] = {"run_folder_bytes": sum(parts.values()), "run_folder_parts": parts,
                           "database_bytes": database_bytes(conn)}
        record_night_bytes(conn, run.run_key, run_folder=summary["disk"]["run_folder_bytes"],
                           database=summary["disk"]["database_bytes"])
    run.files.write_summary(summary)
    log.info("run %s summary: %s", run.run_key, json.dumps(summary, default=str))
    return summary
