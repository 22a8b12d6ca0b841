"""
### Nightly video recommendations

Every night at 02:00 UTC, for the data interval that just ended:

1. **migrate** the `rec` schema (idempotent);
2. **validate_sources**: quarantine bad rows into `rec.rejected_rows` with a reason; stop here if a
   source is empty or more than `max_rejected_share` of it is bad (the published output stays as it was);
3. **extract_snapshot**: read the valid rows as of the interval end (one consistent snapshot, COPY);
4. **train_fallbacks** (popularity, domain popularity) and, in parallel, **train_mf** (Funk SVD as a
   neural net), **train_neumf** (NCF: GMF + MLP, pretrained) and **train_two_tower** (domains and
   content; serves domain-only users and new videos);
5. **evaluate_*** each on the last `holdout_days` of views (full ranking), record the candidate in
   `rec.model_runs`, and apply the quality gate (`quality_tolerance` against that model's published run);
6. **score_videos_*** (top-`top_n` similar videos per active video, the popular list) then
   **score_users_*** mapped over `user_shards` shards (top-`top_n` videos per user, segment
   hot / warm / cold), for each model that passed;
7. **publish_***: binary COPY into staging, audit, attach as that run's partitions;
8. **choose_serving**: one transaction points the `rec.*_current` views at the `serving_model`
   (auto: best holdout NDCG@10 among dot-product models);
9. **summary**: a compact report in the log.

Re-running a logical date replaces that run's rows; it never duplicates them, and a backfill of an
older date never takes serving away from a newer run. The database is the Airflow Connection
`recs_db`. Code lives in the `rec_models` package; this file only wires tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pendulum
from airflow.sdk import Asset, BaseHook, CronDataIntervalTimetable, Param, dag, get_current_context, task

RECS_CONN_ID = "recs_db"
MODELS = ("mf", "neumf", "two_tower")  # rec_models.config.MODEL_NAMES, without importing it at parse time
OUTPUT_ASSETS = [
    Asset(name=f"rec.{table}", uri=f"postgres://recs_db:5432/recs/rec/{table}")
    for table in ("similar_videos", "user_recommendations", "popular_videos")
]

PARAMS = {
    "top_n": Param(20, type="integer", minimum=1, maximum=1000, description="Videos per list (N)."),
    "quality_tolerance": Param(0.02, type="number", minimum=0, maximum=1,
                               description="Publish unless holdout NDCG@10 drops more than this vs the published run."),
    "max_rejected_share": Param(0.2, type="number", minimum=0, maximum=1,
                                description="Fail before training when a source has a larger share of bad rows."),
    "holdout_days": Param(1, type="integer", minimum=1, description="Days of views held out for evaluation."),
    "history_days": Param(180, type="integer", minimum=3, description="Days of history read."),
    "include_seen": Param(False, type="boolean", description="Allow already-watched videos in user lists."),
    "keep_published_runs": Param(7, type="integer", minimum=1, description="Published runs kept per model."),
    "swap_lock_timeout_ms": Param(100, type="integer", minimum=0, maximum=60000,
                                  description="Publish waits this long for a lock, then backs off and retries."),
    "seed": Param(42, type="integer", description="Random seed: the same data and seed give the same rows."),
    "torch_threads": Param(0, type="integer", minimum=0,
                           description="CPU threads for PyTorch (0: one for small data, every core for large)."),
    "serve_fit": Param("continue", type="string", enum=["continue", "refit"],
                       description="Serving model: the evaluated weights + one epoch over all views, or a refit."),
    "mf_dim": Param(32, type="integer", minimum=1, description="MF embedding size."),
    "mf_epochs": Param(40, type="integer", minimum=1, description="MF maximum epochs (early stopping decides)."),
    "mf_learning_rate": Param(0.02, type="number", exclusiveMinimum=0, description="MF Adam learning rate."),
    "mf_negatives": Param(4, type="integer", minimum=1, description="Sampled negatives per positive."),
    "neumf_dim": Param(16, type="integer", minimum=1, description="NeuMF embedding size (GMF and MLP parts)."),
    "neumf_epochs": Param(40, type="integer", minimum=1, description="NeuMF maximum epochs."),
    "neumf_pretrain": Param(True, type="boolean", description="Pretrain NeuMF from GMF and MLP (He et al.)."),
    "two_tower_dim": Param(64, type="integer", minimum=1, description="Two-tower embedding size."),
    "two_tower_epochs": Param(100, type="integer", minimum=1, description="Two-tower maximum epochs."),
    "user_shards": Param(2, type="integer", minimum=1, maximum=1024,
                         description="User scoring shards: one mapped task each (more workers, more shards)."),
    "serving_model": Param("auto", type="string", enum=["auto", *MODELS],
                           description="Model whose run the _current views show (auto: best dot-product NDCG@10)."),
}


def _run_context():
    """The run's settings, database and interval; imported lazily so parsing the DAG stays cheap."""
    from rec_models.config import PipelineConfig
    from rec_models.db.connect import from_airflow_connection
    from rec_models.pipeline import RunContext

    context = get_current_context()
    database_url = from_airflow_connection(BaseHook.get_connection(RECS_CONN_ID))
    end = context.get("data_interval_end") or context.get("logical_date") or context["dag_run"].run_after
    start = context.get("data_interval_start")
    return RunContext(
        database_url=database_url,
        interval_end=datetime.fromtimestamp(end.timestamp(), tz=timezone.utc),
        interval_start=datetime.fromtimestamp(start.timestamp(), tz=timezone.utc) if start else None,
        dag_run_id=context["run_id"],
        config=PipelineConfig.from_params(dict(context["params"])),
    )


@dag(
    dag_id="nightly_recommendations",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "recommendations",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
    },
    dagrun_timeout=timedelta(hours=6),
    tags=["recommendations", "pytorch", "postgres"],
    doc_md=__doc__,
    params=PARAMS,
)
def nightly_recommendations():
    @task
    def migrate() -> list[str]:
        from rec_models import pipeline

        return pipeline.migrate(_run_context())

    @task
    def validate_sources() -> dict:
        from rec_models import pipeline

        return pipeline.validate(_run_context())

    @task
    def extract_snapshot() -> str:
        from rec_models import pipeline

        return pipeline.extract(_run_context())

    @task
    def train_fallbacks() -> dict:
        from rec_models import pipeline

        return pipeline.train(_run_context(), pipeline.FALLBACKS)

    @task
    def train(model_name: str) -> dict:
        from rec_models import pipeline

        return pipeline.train(_run_context(), model_name)

    @task
    def evaluate(model_name: str) -> dict:
        from rec_models import pipeline

        return pipeline.evaluate(_run_context(), model_name)

    @task
    def score_videos(model_name: str, evaluation: dict, two_tower: dict) -> list[int]:
        from rec_models import pipeline

        return pipeline.score_videos(_run_context(), model_name, evaluation, two_tower)

    @task
    def score_users(shard: int, model_name: str, evaluation: dict, two_tower: dict) -> dict:
        from rec_models import pipeline

        return pipeline.score_users(_run_context(), model_name, evaluation, two_tower, shard)

    @task(outlets=OUTPUT_ASSETS)
    def publish(model_name: str, evaluation: dict) -> dict:
        from rec_models import pipeline

        return pipeline.publish(_run_context(), model_name, evaluation)

    @task
    def choose_serving(evaluations: list[dict]) -> dict:
        from rec_models import pipeline

        return pipeline.choose_serving(_run_context(), evaluations)

    @task
    def summary() -> dict:
        from rec_models import pipeline

        return pipeline.summarize(_run_context())

    snapshot = extract_snapshot()
    migrate() >> validate_sources() >> snapshot
    fallbacks = train_fallbacks()
    snapshot >> fallbacks
    evaluations = {}
    for name in MODELS:
        trained = train.override(task_id=f"train_{name}")(name)
        snapshot >> trained
        evaluations[name] = evaluate.override(task_id=f"evaluate_{name}")(name)
        [fallbacks, trained] >> evaluations[name]
    published = []
    for name in MODELS:
        shards = score_videos.override(task_id=f"score_videos_{name}")(name, evaluations[name], evaluations["two_tower"])
        # One mapped task per user shard: they spread over the executor's workers (Celery, Kubernetes).
        users = score_users.override(task_id=f"score_users_{name}").partial(
            model_name=name, evaluation=evaluations[name], two_tower=evaluations["two_tower"]).expand(shard=shards)
        done = publish.override(task_id=f"publish_{name}")(name, evaluations[name])
        users >> done
        published.append(done)
    serving = choose_serving(list(evaluations.values()))
    published >> serving >> summary()


nightly_recommendations()
