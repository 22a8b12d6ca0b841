"""
### Roll back the published recommendations

Manual only. Points the `rec.*_current` views back at an earlier published run of a model, in one
transaction (readers see the old run or the new one, never a mix). `to_run` 0 means "the previous
published run of that model". Only runs within `keep_published_runs` still have their rows.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, BaseHook, Param, dag, get_current_context, task

OUTPUT_ASSETS = [
    Asset(name=f"rec.{table}", uri=f"postgres://recs_db:5432/recs/rec/{table}")
    for table in ("similar_videos", "user_recommendations", "popular_videos")
]


@dag(
    dag_id="rollback_recommendations",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "recommendations", "retries": 2, "retry_exponential_backoff": True},
    tags=["recommendations", "operations"],
    doc_md=__doc__,
    params={
        "model": Param("two_tower", type="string", enum=["mf", "neumf", "two_tower"], description="Model to serve."),
        "to_run": Param(0, type="integer", minimum=0, description="Model run id; 0 = its previous published run."),
    },
)
def rollback_recommendations():
    @task(outlets=OUTPUT_ASSETS)
    def rollback() -> int:
        import psycopg

        from rec_models.db.connect import from_airflow_connection
        from rec_models.db.rollback import rollback as do_rollback

        params = get_current_context()["params"]
        url = from_airflow_connection(BaseHook.get_connection("recs_db"))
        with psycopg.connect(url) as db:
            return do_rollback(db, params["model"], params["to_run"] or None)

    rollback()


rollback_recommendations()
