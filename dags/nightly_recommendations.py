"""
### Nightly video recommendations

Every night at 02:00 UTC, for the data interval that just ended:

1. **migrate** the `rec` schema (idempotent);
2. **validate_sources**: quarantine bad rows into `rec.rejected_rows` with a reason; stop here if a
   source is empty or more than `max_rejected_share` of it is bad (the published output stays as it was);
3. **extract_snapshot**: read the valid rows as of the interval end (one consistent snapshot, COPY);
4. **train_fallbacks** (popularity, domain popularity) and **train_mf** (Funk SVD as a neural net);
5. **evaluate_mf** on the last `holdout_days` of views (full ranking), record the candidate in
   `rec.model_runs`, and apply the quality gate (`quality_tolerance` against the published run);
6. **score_mf**: top-`top_n` similar videos per active video and top-`top_n` videos per user
   (segment hot / warm / cold);
7. **publish_mf**: binary COPY into staging, audit, then one-transaction swap: the
   `rec.*_current` views move to the new run at once;
8. **summary**: a compact report in the log.

Re-running a logical date replaces that run's rows; it never duplicates them. The database is the
Airflow Connection `recs_db`. Code lives in the `rec_models` package; this file only wires tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pendulum
from airflow.sdk import Asset, BaseHook, CronDataIntervalTimetable, Param, dag, get_current_context, task

RECS_CONN_ID = "recs_db"
MODEL = "mf"
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
    "seed": Param(42, type="integer", description="Random seed: the same data and seed give the same rows."),
    "torch_threads": Param(1, type="integer", minimum=1, description="CPU threads for PyTorch."),
    "mf_dim": Param(32, type="integer", minimum=1, description="MF embedding size."),
    "mf_epochs": Param(40, type="integer", minimum=1, description="MF maximum epochs (early stopping decides)."),
    "mf_learning_rate": Param(0.02, type="number", exclusiveMinimum=0, description="MF Adam learning rate."),
    "mf_negatives": Param(4, type="integer", minimum=1, description="Sampled negatives per positive."),
}


def _run_context():
    """The run's settings, database and interval; imported lazily so parsing the DAG stays cheap."""
    import psycopg

    from rec_models.config import PipelineConfig
    from rec_models.pipeline import RunContext

    context = get_current_context()
    conn = BaseHook.get_connection(RECS_CONN_ID)
    database_url = psycopg.conninfo.make_conninfo(
        host=conn.host or "", port=str(conn.port or ""), user=conn.login or "", password=conn.password or "",
        dbname=conn.schema or "",
    )
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

    @task(task_id=f"train_{MODEL}")
    def train_model() -> dict:
        from rec_models import pipeline

        return pipeline.train(_run_context(), MODEL)

    @task(task_id=f"evaluate_{MODEL}")
    def evaluate_model() -> dict:
        from rec_models import pipeline

        return pipeline.evaluate(_run_context(), MODEL)

    @task(task_id=f"score_{MODEL}")
    def score_model(evaluation: dict) -> dict:
        from rec_models import pipeline

        return pipeline.score(_run_context(), MODEL, evaluation)

    @task(task_id=f"publish_{MODEL}", outlets=OUTPUT_ASSETS)
    def publish_model(evaluation: dict) -> dict:
        from rec_models import pipeline

        return pipeline.publish(_run_context(), MODEL, evaluation)

    @task
    def summary() -> dict:
        from rec_models import pipeline

        return pipeline.summarize(_run_context())

    snapshot = extract_snapshot()
    migrate() >> validate_sources() >> snapshot
    fallbacks = train_fallbacks()
    trained = train_model()
    snapshot >> [fallbacks, trained]
    evaluation = evaluate_model()
    [fallbacks, trained] >> evaluation
    scored = score_model(evaluation)
    published = publish_model(evaluation)
    scored >> published >> summary()


nightly_recommendations()
