"""Rollback: point the _current views back at an earlier published run, atomically."""

from __future__ import annotations

import psycopg

from rec_models.db.outputs import OUTPUTS
from rec_models.db.publish import partition_name, point_serving


class RollbackError(RuntimeError):
    """The requested run cannot serve (unknown, never published, or its rows were pruned)."""


def rollback(conn: psycopg.Connection, model_name: str, to_run: int | None = None) -> int:
    """Serve run ``to_run`` of ``model_name``, or that model's newest published run older than the
    run serving now. Returns the run id now serving."""
    current = conn.execute("SELECT model_run_id FROM rec.serving WHERE output_name = 'user_recommendations'").fetchone()
    current_id = current[0] if current else None
    if to_run is None:
        row = conn.execute(
            "SELECT m.model_run_id FROM rec.model_runs m WHERE m.model_name = %s AND m.published_at IS NOT NULL "
            "AND m.model_run_id IS DISTINCT FROM %s AND coalesce(m.status_reason, '') NOT LIKE 'pruned%%' "
            "AND m.data_interval_end <= coalesce((SELECT data_interval_end FROM rec.model_runs WHERE model_run_id = %s), "
            "'infinity') ORDER BY m.data_interval_end DESC, m.published_at DESC LIMIT 1",
            (model_name, current_id, current_id)).fetchone()
        if row is None:
            raise RollbackError(f"no earlier published run of model {model_name!r} to roll back to")
        to_run = row[0]
    run = conn.execute("SELECT model_name, published_at FROM rec.model_runs WHERE model_run_id = %s", (to_run,)).fetchone()
    if run is None or run[0] != model_name:
        raise RollbackError(f"model run {to_run} is not a run of model {model_name!r}")
    if run[1] is None:
        raise RollbackError(f"model run {to_run} was never published (it has no rows to serve)")
    missing = [o.name for o in OUTPUTS.values()
               if conn.execute("SELECT to_regclass(%s)", (partition_name(o, to_run).as_string(conn),)).fetchone()[0] is None]
    if missing:
        raise RollbackError(f"model run {to_run} was pruned (no rows left for {', '.join(missing)}); "
                            "raise keep_published_runs to keep more history")
    conn.commit()
    point_serving(conn, to_run, list(OUTPUTS.values()), allow_older=True)
    return to_run
