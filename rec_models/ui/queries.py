"""The reads behind each page: parameterised SQL on the published views and the run history."""

from __future__ import annotations

from datetime import datetime

import psycopg


def model_runs(conn: psycopg.Connection, limit: int = 60) -> list[dict]:
    rows = conn.execute(
        "SELECT m.model_run_id, m.model_name, m.run_key, m.data_interval_end, m.status, m.status_reason, "
        "m.n_users, m.n_videos, m.n_train_rows, m.metrics, m.timings, m.published_at, m.train_mode, "
        "EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = m.model_run_id) AS serving "
        "FROM rec.model_runs m ORDER BY m.data_interval_end DESC, m.model_name LIMIT %s", (limit,)).fetchall()
    keys = ["id", "model", "run_key", "end", "status", "reason", "users", "videos", "train_rows", "metrics",
            "timings", "published_at", "train_mode", "serving"]
    return [dict(zip(keys, r)) for r in rows]


def next_day_points(conn: psycopg.Connection, metric: str = "ndcg@10", nights: int = 60) -> list[dict]:
    """Next-day ``metric`` over every listed user, per model and night, shaped as metric_chart's runs;
    the popular list (the same fallback model under every run) as one more series, "popularity"."""
    rows = conn.execute(
        "SELECT m.model_name, n.run_key, n.ranker, n.value, "
        "EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = m.model_run_id) "
        "FROM rec.next_day_metrics n JOIN rec.model_runs m USING (model_run_id) "
        "WHERE n.segment = 'all' AND n.metric = %s AND n.run_key >= ("
        "  SELECT coalesce(min(k), '') FROM (SELECT DISTINCT run_key AS k FROM rec.next_day_metrics "
        "  ORDER BY 1 DESC LIMIT %s) recent) ORDER BY n.run_key, m.model_name", (metric, nights)).fetchall()
    points, popular_seen = [], set()
    for model, run_key, ranker, value, serving in rows:
        end = datetime.fromisoformat(run_key)
        if ranker == "model":
            points.append({"model": model, "end": end, "metrics": {metric: value}, "serving": serving})
        elif run_key not in popular_seen:
            popular_seen.add(run_key)
            points.append({"model": "popularity", "end": end, "metrics": {metric: value}, "serving": False})
    return points


def find_videos(conn: psycopg.Connection, query: str, limit: int = 20) -> list[tuple]:
    """By id when the query is a positive id, else titles containing it (LIKE wildcards taken literally)."""
    if query.isascii() and query.isdigit() and 1 <= int(query) < 2**63:
        return conn.execute("SELECT video_id, title, tags FROM videos WHERE video_id = %s", (int(query),)).fetchall()
    literal = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return conn.execute("SELECT video_id, title, tags FROM videos WHERE title ILIKE %s ORDER BY video_id LIMIT %s",
                        (f"%{literal}%", limit)).fetchall()


def video(conn: psycopg.Connection, video_id: int) -> tuple | None:
    return conn.execute("SELECT video_id, title, description, tags, is_active FROM videos WHERE video_id = %s",
                        (video_id,)).fetchone()


def similar_videos(conn: psycopg.Connection, video_id: int) -> list[tuple]:
    return conn.execute(
        "SELECT s.rank, s.similar_video_id, v.title, v.tags, s.score, s.model_run_id FROM rec.similar_videos_current s "
        "JOIN videos v ON v.video_id = s.similar_video_id WHERE s.video_id = %s ORDER BY s.rank", (video_id,)).fetchall()


def user_domains(conn: psycopg.Connection, user_id: int, limit: int = 10) -> list[tuple]:
    """A user's most visited domains, through the SECURITY DEFINER function: the view's role cannot read
    user_domain_visits itself. Personal data: call it only for callers authorized to see it."""
    return conn.execute("SELECT domain, visits, days FROM rec.user_top_domains(%s, %s)", (user_id, limit)).fetchall()


def user_recommendations(conn: psycopg.Connection, user_id: int) -> list[tuple]:
    return conn.execute(
        "SELECT r.rank, r.video_id, v.title, v.tags, r.score, r.segment FROM rec.user_recommendations_current r "
        "JOIN videos v USING (video_id) WHERE r.user_id = %s ORDER BY r.rank", (user_id,)).fetchall()


def _serving_health(conn: psycopg.Connection) -> tuple | None:
    return conn.execute(
        "SELECT s.model_run_id, m.model_name, m.data_interval_end, h.computed_at, h.known_users, h.active_videos, "
        "h.users_served, h.videos_listed, h.similar_for, h.slots, h.top1pct_share, h.previous_run_id, h.churn, "
        "h.segments, h.sample_users FROM rec.serving s JOIN rec.model_runs m USING (model_run_id) "
        "LEFT JOIN rec.run_health h USING (model_run_id) WHERE s.output_name = 'user_recommendations'").fetchone()


def sample_users(conn: psycopg.Connection) -> dict[str, int]:
    """One user per segment of the serving run, picked when it published."""
    row = _serving_health(conn)
    return dict(row[14]) if row and row[14] else {}


def health(conn: psycopg.Connection) -> dict | None:
    """Coverage, churn against the model's previous published run, and concentration of the serving run,
    as computed when it published (rec.run_health); None when nothing is published."""
    row = _serving_health(conn)
    if row is None:
        return None
    (run_id, model, end, computed_at, known_users, active_videos, users_served, videos_listed, similar_for, slots,
     top_share, previous_run_id, churn, segments, _) = row
    if computed_at is None:
        return {"run_id": run_id, "model": model, "end": end, "computed": False}
    return {
        "run_id": run_id, "model": model, "end": end, "computed": True, "computed_at": computed_at,
        "previous_run_id": previous_run_id,
        "user_coverage": users_served / known_users if known_users else 0.0,
        "video_coverage": videos_listed / active_videos if active_videos else 0.0,
        "similar_coverage": similar_for / active_videos if active_videos else 0.0,
        "churn": churn, "top1pct_share": top_share, "users_served": users_served, "slots": slots,
        "segments": dict(segments),
    }
