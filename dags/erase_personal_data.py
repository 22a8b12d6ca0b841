"""
### Erase personal data now

Manual only, for a request that cannot wait for the night (every nightly run starts with the same
step). `users`: ids to file requests for first (optional; requests can also come from
`python -m rec_models forget` or an `INSERT` into `rec.erasure_requests`). Then every open request is
carried out: the person's rows go from every table the product owns (published and kept partitions,
staging, rejected rows, health samples) and from every run folder (snapshots rewritten, derived files
removed, checkpoints cleared, this worker's cache swept), and the request is marked done with the
counts per place. A run folder a night is using now leaves its requests open for the next attempt.
Requested people are never read or published again, even while upstream's tables still hold them.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

# Standard library only: cheap to import at parse time.
from rec_models.config import RETRY_DELAY_MINUTES, param_specs
from rec_models.names import REJECTED_ROWS, asset_uri

# The run root and the alert settings are the nightly's: the same params, so the same Connections.
ALERT_PARAMS = {key: Param(spec.default, description=spec.description, **spec.schema())
                for key, spec in param_specs().items() if key.startswith("alert_")}


def _table(table: str) -> Asset:
    return Asset(name=f"rec.{table}", uri=asset_uri(table))


def _on_task_failure(context):
    from rec_models.alerts.delivery import on_task_failure

    on_task_failure(context)


@dag(
    dag_id="erase_personal_data",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "recommendations", "retries": 2, "retry_delay": timedelta(minutes=RETRY_DELAY_MINUTES),
                  "retry_exponential_backoff": True, "on_failure_callback": _on_task_failure},
    tags=["recommendations", "operations", "personal data"],
    doc_md=__doc__,
    params={"users": Param([], type="array", items={"type": "integer", "minimum": 1},
                           description="User ids to file erasure requests for before erasing (optional)."),
            **ALERT_PARAMS},
)
def erase_personal_data():
    @task
    def file_requests() -> int:
        from rec_models import pipeline

        run = _run()
        return pipeline.file_requests(run, get_current_context()["params"]["users"],
                                      requested_by=f"airflow:{run.dag_run_id}")

    # Lineage only: an erasure's deletions are not fresh lists (no output Asset event for consumers).
    @task(outlets=[_table(REJECTED_ROWS)])
    def erase() -> dict:
        from rec_models import pipeline

        return pipeline.erase(_run(), nightly=False)

    file_requests() >> erase()


def _run():
    """This DAG run as the pipeline's Run: the nightly's Connections and run root (RECS_RUN_ROOT)."""
    from rec_models.pipeline.context import run_from_context

    return run_from_context(get_current_context())


erase_personal_data()
