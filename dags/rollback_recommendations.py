"""
### Roll back the published recommendations

Manual only. Points the `rec.*_current` views back at an earlier published run of a model, in one
transaction (readers see the old run or the new one, never a mix). `to_run` 0 means "the previous
published run of that model". Only runs within `keep_published_runs` still have their rows.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, BaseHook, Param, dag, get_current_context, task

# Standard library only: cheap to import at parse time.
from rec_models.names import MODEL_NAMES, OUTPUT_TABLE_NAMES, RECS_CONN_ID, TWO_TOWER, asset_name, asset_uri

OUTPUT_ASSETS = [Asset(name=asset_name(table), uri=asset_uri(table)) for table in OUTPUT_TABLE_NAMES]


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
        "model": Param(TWO_TOWER, type="string", enum=list(MODEL_NAMES), description="Model to serve."),
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
        url = from_airflow_connection(BaseHook.get_connection(RECS_CONN_ID))
        with psycopg.connect(url) as db:
            return do_rollback(db, params["model"], params["to_run"] or None)

    rollback()


rollback_recommendations()
