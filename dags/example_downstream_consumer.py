"""
### Example downstream consumer

Runs whenever the nightly DAG publishes fresh user recommendations (Asset `rec.user_recommendations`),
instead of guessing a time: here it only reads what was published and logs it; a real consumer would
refresh a cache or notify a service.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import Asset, BaseHook, dag, task

# Standard library only: cheap to import at parse time.
from rec_models.names import RECS_CONN_ID, USER_RECOMMENDATIONS, asset_name, asset_uri

FRESH_RECOMMENDATIONS = Asset(name=asset_name(USER_RECOMMENDATIONS), uri=asset_uri(USER_RECOMMENDATIONS))


@dag(
    dag_id="example_downstream_consumer",
    schedule=[FRESH_RECOMMENDATIONS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": "recommendations", "retries": 2, "retry_exponential_backoff": True},
    tags=["recommendations", "example"],
    doc_md=__doc__,
)
def example_downstream_consumer():
    @task
    def read_fresh_recommendations() -> dict:
        import psycopg

        from rec_models.db.connect import from_airflow_connection
        url = from_airflow_connection(BaseHook.get_connection(RECS_CONN_ID))
        with psycopg.connect(url) as db:
            run_id, users, rows = db.execute(
                "SELECT min(model_run_id), count(DISTINCT user_id), count(*) FROM rec.user_recommendations_current"
            ).fetchone()
        logging.getLogger(__name__).info("model run %s serves %s users (%s rows)", run_id, users, rows)
        return {"model_run_id": run_id, "users": users, "rows": rows}

    read_fresh_recommendations()


example_downstream_consumer()
