"""rec.model_runs: recording candidates and the quality gate that decides whether they publish."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from rec_models.pipeline import RunContext


def record_model_run(conn: psycopg.Connection, ctx: "RunContext", model_name: str, *, counts: dict,
                     metrics: dict, rejected_counts: dict, timings: dict) -> int:
    """Insert or, on a rerun of the same data interval, update this model's row; returns its id.

    A row that currently serves keeps its status until the new attempt publishes over it.
    """
    row = conn.execute(
        """
        INSERT INTO rec.model_runs AS m (run_key, dag_run_id, model_name, data_interval_start, data_interval_end,
            n_users, n_videos, n_train_rows, n_holdout_rows, params, metrics, rejected_counts, timings, status)
        VALUES (%(run_key)s, %(dag_run_id)s, %(model)s, %(start)s, %(end)s, %(n_users)s, %(n_videos)s,
            %(n_train_rows)s, %(n_holdout_rows)s, %(params)s, %(metrics)s, %(rejected)s, %(timings)s, 'candidate')
        ON CONFLICT (run_key, model_name) DO UPDATE SET
            dag_run_id = EXCLUDED.dag_run_id, data_interval_start = EXCLUDED.data_interval_start,
            n_users = EXCLUDED.n_users, n_videos = EXCLUDED.n_videos, n_train_rows = EXCLUDED.n_train_rows,
            n_holdout_rows = EXCLUDED.n_holdout_rows, params = EXCLUDED.params, metrics = EXCLUDED.metrics,
            rejected_counts = EXCLUDED.rejected_counts, timings = EXCLUDED.timings, updated_at = now(),
            status = CASE WHEN EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = m.model_run_id)
                          THEN m.status ELSE 'candidate' END,
            status_reason = NULL
        RETURNING model_run_id
        """,
        {
            "run_key": ctx.run_key, "dag_run_id": ctx.dag_run_id, "model": model_name,
            "start": ctx.interval_start, "end": ctx.interval_end, **counts,
            "params": json.dumps(ctx.config.to_params()), "metrics": json.dumps(metrics),
            "rejected": json.dumps(rejected_counts), "timings": json.dumps(timings),
        },
    ).fetchone()
    conn.commit()
    return int(row[0])


def quality_gate(conn: psycopg.Connection, model_run_id: int, model_name: str, ndcg: float, tolerance: float) -> dict:
    """Publish unless holdout NDCG@10 is worse than the last published run of this model by more than
    ``tolerance``; the first run of a model publishes. A rejection is recorded with its reason."""
    previous = conn.execute(
        "SELECT model_run_id, (metrics->>'ndcg@10')::float8 FROM rec.model_runs "
        "WHERE model_name = %s AND published_at IS NOT NULL AND model_run_id <> %s "
        "ORDER BY published_at DESC LIMIT 1",
        (model_name, model_run_id),
    ).fetchone()
    if ndcg != ndcg:  # NaN
        decision = {"publish": False, "reason": "holdout NDCG@10 is not a number"}
    elif previous is None:
        decision = {"publish": True, "reason": "first run of this model"}
    elif ndcg < previous[1] - tolerance:
        decision = {"publish": False, "reason": (
            f"holdout NDCG@10 {ndcg:.4f} is worse than published run {previous[0]} ({previous[1]:.4f}) "
            f"by more than the tolerance {tolerance}")}
    else:
        decision = {"publish": True, "reason": f"holdout NDCG@10 {ndcg:.4f} vs published run {previous[0]} ({previous[1]:.4f})"}
    if not decision["publish"]:
        conn.execute("UPDATE rec.model_runs SET status = 'rejected', status_reason = %s, updated_at = now() "
                     "WHERE model_run_id = %s AND NOT EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = %s)",
                     (decision["reason"], model_run_id, model_run_id))
    else:
        conn.execute("UPDATE rec.model_runs SET status_reason = %s WHERE model_run_id = %s",
                     (decision["reason"], model_run_id))
    conn.commit()
    return decision
