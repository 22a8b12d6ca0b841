"""A DAG run as the pipeline's Run: interval, settings, database and run folder store, from the task's
Airflow context (Airflow is imported only when a task calls this)."""

from __future__ import annotations

from datetime import datetime, timezone

from rec_models.config import PipelineConfig, param_specs
from rec_models.db.connect import from_airflow_connection
from rec_models.names import RECS_CONN_ID, RUN_STORE_CONN_ID
from rec_models.run import Run, sweep_cache
from rec_models.storage import is_object_store, options_from_connection


def run_from_context(context) -> Run:
    """The Run of the task whose context this is. Params that are not pipeline settings (a DAG's own,
    such as erase_personal_data's ``users``) are left out of its config. What this machine cached of an
    object store and the store no longer holds (pruned, or rewritten by an erasure) is dropped first
    (but the folders of runs going on now): a worker's cache keeps no one erased."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    database_url = from_airflow_connection(BaseHook.get_connection(RECS_CONN_ID))
    known = param_specs()
    config = PipelineConfig.from_params({k: v for k, v in dict(context["params"]).items() if k in known})
    storage_options = {}
    if is_object_store(config.run_root):
        try:  # without the Connection, the store's client reads AWS_* environment variables
            storage_options = options_from_connection(BaseHook.get_connection(RUN_STORE_CONN_ID))
        except AirflowNotFoundException:
            pass
    end = context.get("data_interval_end") or context.get("logical_date") or context["dag_run"].run_after
    start = context.get("data_interval_start")
    run = Run(
        database_url=database_url,
        interval_end=datetime.fromtimestamp(end.timestamp(), tz=timezone.utc),
        interval_start=datetime.fromtimestamp(start.timestamp(), tz=timezone.utc) if start else None,
        dag_run_id=context["run_id"],
        config=config,
        storage_options=storage_options,
    )
    sweep_cache(run.store)
    return run
