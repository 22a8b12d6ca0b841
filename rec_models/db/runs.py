"""rec.model_runs: recording candidates, reading the published run a candidate is gated against, and
recording the gate's decision. Plain values in, plain values out."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg

# A run that passed its gate: published, or kept as a candidate (runs published before accepted_at
# existed have it set by migration 009).
ACCEPTED = "(accepted_at IS NOT NULL OR published_at IS NOT NULL)"


def record_model_run(conn: psycopg.Connection, *, run_key: str, dag_run_id: str | None, model_name: str,
                     interval_start: datetime | None, interval_end: datetime, params: dict, counts: dict,
                     metrics: dict, rejected_counts: dict, timings: dict, train_mode: str = "full",
                     parent_model_run_id: int | None = None) -> int:
    """Insert or, on a rerun of the same data interval, update this model's row; returns its id.

    A row that currently serves keeps its status until the new attempt publishes over it.
    """
    row = conn.execute(
        """
        INSERT INTO rec.model_runs AS m (run_key, dag_run_id, model_name, data_interval_start, data_interval_end,
            n_users, n_videos, n_train_rows, n_holdout_rows, params, metrics, rejected_counts, timings, status,
            train_mode, parent_model_run_id)
        VALUES (%(run_key)s, %(dag_run_id)s, %(model)s, %(start)s, %(end)s, %(n_users)s, %(n_videos)s,
            %(n_train_rows)s, %(n_holdout_rows)s, %(params)s, %(metrics)s, %(rejected)s, %(timings)s, 'candidate',
            %(train_mode)s, %(parent)s)
        ON CONFLICT (run_key, model_name) DO UPDATE SET
            dag_run_id = EXCLUDED.dag_run_id, data_interval_start = EXCLUDED.data_interval_start,
            n_users = EXCLUDED.n_users, n_videos = EXCLUDED.n_videos, n_train_rows = EXCLUDED.n_train_rows,
            n_holdout_rows = EXCLUDED.n_holdout_rows, params = EXCLUDED.params, metrics = EXCLUDED.metrics,
            rejected_counts = EXCLUDED.rejected_counts, timings = EXCLUDED.timings, updated_at = now(),
            train_mode = EXCLUDED.train_mode, parent_model_run_id = EXCLUDED.parent_model_run_id,
            status = CASE WHEN EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = m.model_run_id)
                          THEN m.status ELSE 'candidate' END,
            accepted_at = CASE WHEN EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = m.model_run_id)
                               THEN m.accepted_at END,
            status_reason = NULL
        RETURNING model_run_id
        """,
        {
            "run_key": run_key, "dag_run_id": dag_run_id, "model": model_name,
            "start": interval_start, "end": interval_end, **counts,
            "params": json.dumps(params), "metrics": json.dumps(metrics),
            "rejected": json.dumps(rejected_counts), "timings": json.dumps(timings),
            "train_mode": train_mode, "parent": parent_model_run_id,
        },
    ).fetchone()
    conn.commit()
    return int(row[0])


def night_model_run_id(conn: psycopg.Connection, run_key: str, model_name: str) -> int | None:
    """The id an earlier attempt of this night recorded for this model, if any (a rerun updates that row)."""
    row = conn.execute("SELECT model_run_id FROM rec.model_runs WHERE run_key = %s AND model_name = %s",
                       (run_key, model_name)).fetchone()
    return int(row[0]) if row else None


def latest_accepted(conn: psycopg.Connection, model_name: str, other_than: int,
                    interval_end: datetime) -> tuple[int, float, bool] | None:
    """(model run id, holdout NDCG@10, whether it was published) of the model's accepted run (it passed
    its gate: published, or kept as a candidate) with the latest data, up to ``interval_end``, other than
    ``other_than`` (tonight's candidate): the run this night would have been compared with on schedule.
    Ordered by data, not by decision time, so a backfill of an older night does not become tonight's
    baseline."""
    row = _gated_against(conn, "(metrics->>'ndcg@10')::float8, published_at IS NOT NULL", model_name, other_than,
                         interval_end)
    return (int(row[0]), float(row[1]), bool(row[2])) if row else None


def serving_warm_ndcg(conn: psycopg.Connection, model_name: str, other_than: int,
                      interval_end: datetime) -> float | None:
    """The domain-only holdout NDCG@10 recorded by the run ``latest_accepted`` finds, or None when
    there is none or it recorded none."""
    row = _gated_against(conn, "(metrics->'warm'->>'ndcg@10')::float8", model_name, other_than, interval_end)
    return float(row[1]) if row and row[1] is not None else None


def _gated_against(conn: psycopg.Connection, figure: str, model_name: str, other_than: int,
                   interval_end: datetime) -> tuple | None:
    """(model run id, ``figure``) of the accepted run tonight's candidate is gated against."""
    return conn.execute(
        f"SELECT model_run_id, {figure} FROM rec.model_runs "
        f"WHERE model_name = %s AND {ACCEPTED} AND model_run_id <> %s AND data_interval_end <= %s "
        "ORDER BY data_interval_end DESC, coalesce(published_at, accepted_at) DESC LIMIT 1",
        (model_name, other_than, interval_end),
    ).fetchone()


def record_warm_choice(conn: psycopg.Connection, model_run_id: int, choice: dict) -> None:
    """Store who serves the run's domain-only users, with their figure and the reason, in its metrics."""
    conn.execute("UPDATE rec.model_runs SET metrics = metrics || jsonb_build_object('warm', %s::jsonb) "
                 "WHERE model_run_id = %s", (json.dumps(choice), model_run_id))
    conn.commit()


def record_gate(conn: psycopg.Connection, model_run_id: int, *, publish: bool, reason: str) -> None:
    """Store the gate's reason; an accepted candidate gets ``accepted_at``, a rejected one becomes
    'rejected' unless it serves already."""
    if publish:
        conn.execute("UPDATE rec.model_runs SET status_reason = %s, accepted_at = coalesce(accepted_at, now()) "
                     "WHERE model_run_id = %s", (reason, model_run_id))
    else:
        conn.execute("UPDATE rec.model_runs SET status = 'rejected', status_reason = %s, updated_at = now() "
                     "WHERE model_run_id = %s AND NOT EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = %s)",
                     (reason, model_run_id, model_run_id))
    conn.commit()


def recorded_lineage(conn: psycopg.Connection, run_key: str, model_name: str) -> tuple[str, int | None] | None:
    """(train mode, parent run id) an earlier attempt of this night recorded for the model, if any:
    a rerun trains as it did, so it reproduces."""
    row = conn.execute("SELECT train_mode, parent_model_run_id FROM rec.model_runs "
                       "WHERE run_key = %s AND model_name = %s AND train_mode IS NOT NULL",
                       (run_key, model_name)).fetchone()
    return (row[0], row[1]) if row else None


def parent_run(conn: psycopg.Connection, model_name: str, interval_end: datetime) -> tuple[int, datetime] | None:
    """(model run id, data interval end) of the model's latest accepted run (published, or kept as a
    candidate) whose interval ends before ``interval_end``: the run a warm start continues from."""
    row = conn.execute(
        "SELECT model_run_id, data_interval_end FROM rec.model_runs WHERE model_name = %s "
        f"AND {ACCEPTED} AND data_interval_end < %s ORDER BY data_interval_end DESC LIMIT 1",
        (model_name, interval_end)).fetchone()
    return (int(row[0]), row[1]) if row else None


def run_interval_end(conn: psycopg.Connection, model_run_id: int) -> datetime | None:
    row = conn.execute("SELECT data_interval_end FROM rec.model_runs WHERE model_run_id = %s",
                       (model_run_id,)).fetchone()
    return row[0] if row else None


def kept_checkpoints(conn: psycopg.Connection) -> list[tuple[str, datetime]]:
    """(model name, data interval end) of every published run whose outputs are still kept (not pruned),
    and of each model's latest accepted run: the runs whose checkpoints a later night may continue from,
    be gated against or roll back to."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT model_name, data_interval_end FROM rec.model_runs WHERE published_at IS NOT NULL "
        "AND coalesce(status_reason, '') NOT LIKE 'pruned%%' "
        "UNION (SELECT DISTINCT ON (model_name) model_name, data_interval_end FROM rec.model_runs "
        f"WHERE {ACCEPTED} ORDER BY model_name, data_interval_end DESC)").fetchall()]


def keep_as_candidate(conn: psycopg.Connection, model_run_id: int, reason: str) -> None:
    """An accepted run that tonight's publish plan leaves unpublished: its reason says so."""
    conn.execute("UPDATE rec.model_runs SET status_reason = %s, updated_at = now() "
                 "WHERE model_run_id = %s AND published_at IS NULL", (reason, model_run_id))
    conn.commit()


def record_night_check(conn: psycopg.Connection, *, run_key: str, dag_run_id: str | None,
                       interval_start: datetime | None, interval_end: datetime, views_in_interval: int,
                       median_daily_views: float | None, reason: str | None) -> None:
    """This night's data check (replacing an earlier attempt's)."""
    conn.execute(
        """
        INSERT INTO rec.night_checks (run_key, dag_run_id, data_interval_start, data_interval_end, views_in_interval,
            median_daily_views, trained, reason)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (run_key) DO UPDATE SET dag_run_id = EXCLUDED.dag_run_id,
            data_interval_start = EXCLUDED.data_interval_start, views_in_interval = EXCLUDED.views_in_interval,
            median_daily_views = EXCLUDED.median_daily_views, trained = EXCLUDED.trained, reason = EXCLUDED.reason,
            checked_at = now()
        """,
        (run_key, dag_run_id, interval_start, interval_end, views_in_interval, median_daily_views, reason is None,
         reason))
    conn.commit()
