"""
### Nightly video recommendations

Every night at 02:00 UTC, for the data interval that just ended:

1. **migrate** the `rec` schema (idempotent); **erase_personal_data**: every open request in
   `rec.erasure_requests` carried out in the tables and run folders (requested people are never read or
   published again, even while upstream still holds them);
2. **validate_sources**: quarantine bad rows into `rec.rejected_rows` with a reason; stop here if a
   source is empty or more than `max_rejected_share` of it is bad (the published output stays as it was);
   only the source days whose rows changed since an earlier night judged them are judged again;
3. **next_day_metrics**: each model's serving run's lists against the views of the interval that just
   ended (`rec.next_day_metrics`: did people watch what we served?);
   **extract_snapshot**: read the valid rows as of the interval end (one consistent snapshot, COPY);
   **check_interval**: an interval with no views, or far fewer than the days before it
   (`partial_day_share`), fails here with the reason (also in `rec.night_checks`): nothing is trained
   and the published runs keep serving;
4. **train_fallbacks** (popularity, domain popularity) and, in parallel, **train_mf** (Funk SVD as a
   neural net), **train_neumf** (NCF: GMF + MLP, pretrained) and **train_two_tower** (domains and
   content; serves domain-only users and new videos); `train_mode` auto continues each from its last
   published run's checkpoint (warm) and retrains from scratch every `full_retrain_every` nights;
5. **evaluate_*** each on the last `holdout_days` of views (full ranking), record the candidate in
   `rec.model_runs`, and apply the quality gate (`quality_tolerance` against that model's published run);
   a warm candidate that fails it is retrained from scratch and evaluated again;
6. **plan_scoring_*** (who serves domain-only users; which models are scored), then side by side
   **score_videos_*** (top-`top_n` similar videos per active video, the popular list) and
   **score_users_*** mapped over `user_shards` shards (top-`top_n` videos per user, segment
   hot / warm / cold), for the model that will serve and those `publish_models` names (`all`: every
   model that passed); the others that passed are kept as candidates (later nights continue from them);
7. **publish_***: binary COPY into staging, audit, attach as that run's partitions;
8. **choose_serving**: one transaction points the `rec.*_current` views at the `serving_model`
   (auto: best holdout NDCG@10 among dot-product models);
9. **summary**: a compact report in the log; retention: run folders pruned, each table's lifetime
   applied (`rec.retention_runs`).

Re-running a logical date replaces that run's rows; it never duplicates them, and a backfill of an
older date never takes serving away from a newer run. The database is the Airflow Connection
`recs_db`. Code lives in the `rec_models` package; this file only wires tasks.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import (Asset, AsyncCallback, CronDataIntervalTimetable, DeadlineAlert, DeadlineReference, Param, dag,
                         get_current_context, task)
from airflow.sdk.exceptions import AirflowFailException

# Standard library only: cheap to import at parse time.
from rec_models.config import DAG_RUN_TIMEOUT_MINUTES, PUBLISH_DEADLINE_MINUTES, RETRY_DELAY_MINUTES, param_specs
from rec_models.names import (DOT_PRODUCT_MODELS, FALLBACKS, MODEL_NAMES, MODEL_RUNS, NEXT_DAY_METRICS, NIGHT_CHECKS,
                              OUTPUT_TABLE_NAMES, POPULAR_VIDEOS, REJECTED_ROWS, SOURCE_TABLE_NAMES,
                              USER_RECOMMENDATIONS, VIDEO_VIEWS, asset_name, asset_uri)

OUTPUT_ASSETS = [Asset(name=asset_name(table), uri=asset_uri(table)) for table in OUTPUT_TABLE_NAMES]
# Lineage (OpenLineage's provider reads each task's inlets and outlets): upstream's tables in, ours out.
def _table(table: str, schema: str = "rec") -> Asset:
    return Asset(name=f"{schema}.{table}", uri=asset_uri(table, schema))


SOURCES = [_table(table, "public") for table in SOURCE_TABLE_NAMES]
# Every operator setting of rec_models.config, with its default, bounds and description.
PARAMS = {key: Param(spec.default, description=spec.description, **spec.schema()) for key, spec in param_specs().items()}


def _run():
    """This DAG run as the pipeline's Run (imported when a task runs)."""
    from rec_models.pipeline.context import run_from_context

    return run_from_context(get_current_context())


def _on_task_failure(context):
    """After its retries: recorded in rec.alerts, delivered by the alert_* params' Connections."""
    from rec_models.alerts.delivery import on_task_failure

    on_task_failure(context)


def _on_run_failure(context):
    """The night failed or timed out (run by the dag-processor)."""
    from rec_models.alerts.delivery import on_run_failure

    on_run_failure(context)


@dag(
    dag_id="nightly_recommendations",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "recommendations",
        "retries": 2,
        "retry_delay": timedelta(minutes=RETRY_DELAY_MINUTES),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        "on_failure_callback": _on_task_failure,
    },
    dagrun_timeout=timedelta(minutes=DAG_RUN_TIMEOUT_MINUTES),
    on_failure_callback=_on_run_failure,
    # Not published this long after the run was queued (the nightly run: at its interval end): an alert,
    # from the triggerer, while the run goes on.
    deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT,
                           interval=timedelta(minutes=PUBLISH_DEADLINE_MINUTES),
                           callback=AsyncCallback("rec_models.alerts.deadline.on_deadline_missed"))
    if PUBLISH_DEADLINE_MINUTES else None,
    tags=["recommendations", "pytorch", "postgres"],
    doc_md=__doc__,
    params=PARAMS,
)
def nightly_recommendations():
    @task
    def migrate() -> list[str]:
        from rec_models import pipeline

        return pipeline.migrate(_run())

    # Lineage only: an erasure's deletions are not fresh lists (no output Asset event for consumers).
    @task(outlets=[_table(REJECTED_ROWS)])
    def erase_personal_data() -> dict:
        from rec_models import pipeline

        return pipeline.erase(_run())

    @task(inlets=SOURCES, outlets=[_table(REJECTED_ROWS)])
    def validate_sources() -> dict:
        from rec_models import pipeline

        return pipeline.validate(_run())

    @task(inlets=SOURCES)
    def extract_snapshot() -> str:
        from rec_models import pipeline

        return pipeline.extract(_run())

    @task(inlets=[_table(VIDEO_VIEWS, "public"), _table(USER_RECOMMENDATIONS), _table(POPULAR_VIDEOS)],
          outlets=[_table(NEXT_DAY_METRICS)])
    def next_day_metrics() -> dict:
        from rec_models import pipeline

        return pipeline.next_day_metrics(_run())

    @task(outlets=[_table(NIGHT_CHECKS)])
    def check_interval() -> dict:
        from rec_models import pipeline

        try:
            return pipeline.check_interval(_run())
        except (pipeline.NightSkipped, pipeline.DiskShort) as stopped:
            # Red, not a silent green: retrying cannot bring the views or the disk; the published runs keep serving.
            raise AirflowFailException(f"stopped before training: {stopped}") from stopped

    @task
    def train_fallbacks() -> dict:
        from rec_models import pipeline

        return pipeline.train(_run(), FALLBACKS)

    @task
    def train(model_name: str) -> dict:
        from rec_models import pipeline

        return pipeline.train(_run(), model_name)

    @task(outlets=[_table(MODEL_RUNS)])
    def evaluate(model_name: str) -> dict:
        from rec_models import pipeline

        return pipeline.evaluate(_run(), model_name)

    # Tonight's publish plan (the serving model and publish_models) decides which models have every
    # user's list scored and published; scoring skips a model no outcome of the evaluations still
    # running would publish, and the publish step decides on them all.
    @task
    def plan_scoring(model_name: str, evaluations: list[dict]) -> list[int]:
        from rec_models import pipeline

        return pipeline.plan_scoring(_run(), model_name, evaluations)

    @task
    def score_videos(model_name: str, evaluations: list[dict]) -> dict:
        from rec_models import pipeline

        return pipeline.score_videos(_run(), model_name, evaluations)

    @task
    def score_users(shard: int, model_name: str, evaluations: list[dict]) -> dict:
        from rec_models import pipeline

        return pipeline.score_users(_run(), model_name, evaluations, shard)

    # A model the gate rejected, or one the plan keeps as a candidate, maps its user scoring over no
    # shards, which Airflow marks skipped; a skip must not spread to the publish step (it records why it
    # did not publish) or to choosing what serves.
    @task(outlets=OUTPUT_ASSETS, trigger_rule="none_failed")
    def publish(model_name: str, evaluations: list[dict]) -> dict:
        from rec_models import pipeline

        return pipeline.publish(_run(), model_name, evaluations)

    @task(trigger_rule="none_failed")
    def choose_serving(evaluations: list[dict]) -> dict:
        from rec_models import pipeline

        return pipeline.choose_serving(_run(), evaluations)

    @task(trigger_rule="none_failed")
    def summary() -> dict:
        from rec_models import pipeline
        from rec_models.alerts.delivery import Channels, deliver, run_link

        run = _run()
        summarized = pipeline.summarize(run)
        # The night's alerts that failed nothing (a model the gate rejected), one message per event.
        context = get_current_context()
        deliver(run.database_url, Channels.of(run.config), run.run_key, run_link(context["dag"].dag_id, run.dag_run_id))
        return summarized

    snapshot = extract_snapshot()
    validated = validate_sources()
    replayed = next_day_metrics()
    migrate() >> erase_personal_data() >> validated >> [snapshot, replayed]
    checked = check_interval()
    snapshot >> checked
    fallbacks = train_fallbacks()
    checked >> fallbacks
    evaluations = {}
    for name in MODEL_NAMES:
        trained = train.override(task_id=f"train_{name}")(name)
        checked >> trained
        evaluations[name] = evaluate.override(task_id=f"evaluate_{name}")(name)
        [fallbacks, trained] >> evaluations[name]
    published, every_evaluation = [], list(evaluations.values())
    for name in MODEL_NAMES:
        # Its own evaluation and the dot-product models' ("auto" chooses among them; the two-tower places
        # new videos): a dot-product model is scored without waiting for NeuMF's.
        known = [evaluations[m] for m in MODEL_NAMES if m == name or m in DOT_PRODUCT_MODELS]
        shards = plan_scoring.override(task_id=f"plan_scoring_{name}")(name, known)
        # The video pass and one mapped task per user shard, side by side: they spread over the
        # executor's workers (Celery, Kubernetes) and over one machine's cores.
        videos = score_videos.override(task_id=f"score_videos_{name}")(name, known)
        shards >> videos
        users = score_users.override(task_id=f"score_users_{name}").partial(
            model_name=name, evaluations=known).expand(shard=shards)
        done = publish.override(task_id=f"publish_{name}")(name, every_evaluation)
        [videos, users] >> done
        published.append(done)
    serving = choose_serving(every_evaluation)
    summarized = summary()
    published >> serving >> summarized
    replayed >> summarized  # a failed replay marks the night, never holds back serving


nightly_recommendations()
