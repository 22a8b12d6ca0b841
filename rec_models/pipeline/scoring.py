"""Scoring tasks: similar videos and every user's top-N to the run folder, by shard, for the models
tonight's publish plan publishes (the serving one, and those ``publish_models`` names)."""

from __future__ import annotations

import logging

from rec_models.faults import checkpoint
from rec_models.names import POPULARITY, TWO_TOWER, USER_RECOMMENDATIONS
from rec_models.pipeline.evaluation import choose_warm, evaluation_of, may_be_published, publish_plan
from rec_models.run import Run
from rec_models.scoring import ITEMS_PART, ServingModels, user_part_name, write_item_outputs, write_user_outputs
from rec_models.threads import set_torch_threads

log = logging.getLogger(__name__)


def _serving_models(run: Run, model_name: str, two_tower: dict | None) -> ServingModels:
    """Hot users by this model; warm (domains only) by the model ``choose_warm`` chose; cold by
    popularity; new videos placed by the two-tower's content tower when it passed its gate."""
    content = run.files.load_model(TWO_TOWER, "serve") if two_tower and two_tower["publish"] else None
    warm = run.files.load_model(run.files.read_warm_choice(model_name)["model"], "serve")
    return ServingModels(hot=run.files.load_model(model_name, "serve"), warm=warm,
                         cold=run.files.load_model(POPULARITY, "serve"), content=content)


def plan_scoring(run: Run, model_name: str, evaluations: list[dict]) -> list[int]:
    """Before this model's scoring: clear earlier attempts' files, choose who serves its domain-only
    users, and return the user shards to score, none if the model did not pass its gate or tonight's
    publish plan keeps it as a candidate whatever the evaluations not in ``evaluations`` yet say (the
    DAG starts a dot-product model's scoring without waiting for NeuMF's evaluation, which "auto"
    cannot choose over it). The video pass and the user shards then run side by side."""
    run.files.clear_scores(model_name)
    not_scored = _why_not_scored(run, model_name, evaluations)
    if not_scored:
        log.info("%s: nothing to score: %s", model_name, not_scored)
        return []
    choose_warm(run, model_name, evaluation_of(evaluations, model_name), evaluation_of(evaluations, TWO_TOWER))
    return list(range(run.config.user_shards))


def _why_not_scored(run: Run, model_name: str, evaluations: list[dict]) -> str | None:
    """Why this model is not scored tonight, or None when it is."""
    evaluation = evaluation_of(evaluations, model_name)
    if not evaluation["publish"]:
        return f"model run {evaluation['model_run_id']} did not pass the quality gate"
    if not may_be_published(run, model_name, evaluations):
        plan = publish_plan(run, evaluations)
        return (f"passed its gate and is kept as a candidate: {plan.serving} serves ({plan.reason}), "
                f"publish_models={run.config.publish_models}")
    return None


def score_videos(run: Run, model_name: str, evaluations: list[dict]) -> dict:
    """Similar videos and the popular list to files (after :func:`plan_scoring`; nothing for a model
    it planned no scoring for)."""
    if _why_not_scored(run, model_name, evaluations):
        return {}
    data = run.files.load_dataset()
    set_torch_threads(run.config.torch_threads, data.n_views, run.config.tasks_per_machine)
    with run.files.staged_scores(model_name, ITEMS_PART) as folder:
        rows = write_item_outputs(data, _serving_models(run, model_name, evaluation_of(evaluations, TWO_TOWER)),
                                  run.config, folder)
    return rows


def score_users(run: Run, model_name: str, evaluations: list[dict], shard: int) -> dict:
    """Top-N for one shard of the users (after :func:`plan_scoring`; idempotent: a retry rewrites exactly
    this shard's files)."""
    data = run.files.load_dataset()
    set_torch_threads(run.config.torch_threads, data.n_views, run.config.tasks_per_machine)
    shards = run.config.user_shards
    with run.files.staged_scores(model_name, user_part_name(shard)) as folder:
        rows = write_user_outputs(data, _serving_models(run, model_name, evaluation_of(evaluations, TWO_TOWER)),
                                  run.config, folder, shard, shards)
    checkpoint("score:done")
    return {"shard": shard, "shards": shards, "rows": rows}


def score(run: Run, model_name: str, evaluations: list[dict]) -> dict:
    """Videos and every user shard in this process (the CLI and run_all; the DAG maps the shards)."""
    shards = plan_scoring(run, model_name, evaluations)
    if not shards:
        return {"scored": False}
    score_videos(run, model_name, evaluations)
    results = [score_users(run, model_name, evaluations, shard) for shard in shards]
    return {"scored": True, "shards": len(results), "rows": sum(r["rows"][USER_RECOMMENDATIONS] for r in results)}
