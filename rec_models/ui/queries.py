"""The reads behind each page: parameterised SQL on the published views and the run history."""

from __future__ import annotations

import psycopg


def model_runs(conn: psycopg.Connection, limit: int = 60) -> list[dict]:
    rows = conn.execute(
        "SELECT m.model_run_id, m.model_name, m.run_key, m.data_interval_end, m.status, m.status_reason, "
        "m.n_users, m.n_videos, m.n_train_rows, m.metrics, m.timings, m.published_at, "
        "EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = m.model_run_id) AS serving "
        "FROM rec.model_runs m ORDER BY m.data_interval_end DESC, m.model_name LIMIT %s", (limit,)).fetchall()
    keys = ["id", "model", "run_key", "end", "status", "reason", "users", "videos", "train_rows", "metrics",
            "timings", "published_at", "serving"]
    return [dict(zip(keys, r)) for r in rows]


def find_videos(conn: psycopg.Connection, query: str, limit: int = 20) -> list[tuple]:
    if query.strip().isdigit():
        return conn.execute("SELECT video_id, title, tags FROM videos WHERE video_id = %s", (int(query),)).fetchall()
    return conn.execute("SELECT video_id, title, tags FROM videos WHERE title ILIKE %s ORDER BY video_id LIMIT %s",
                        (f"%{query}%", limit)).fetchall()


def video(conn: psycopg.Connection, video_id: int) -> tuple | None:
    return conn.execute("SELECT video_id, title, description, tags, is_active FROM videos WHERE video_id = %s",
                        (video_id,)).fetchone()


def similar_videos(conn: psycopg.Connection, video_id: int) -> list[tuple]:
    return conn.execute(
        "SELECT s.rank, s.similar_video_id, v.title, v.tags, s.score, s.model_run_id FROM rec.similar_videos_current s "
        "JOIN videos v ON v.video_id = s.similar_video_id WHERE s.video_id = %s ORDER BY s.rank", (video_id,)).fetchall()


def user_domains(conn: psycopg.Connection, user_id: int, limit: int = 10) -> list[tuple]:
    return conn.execute(
        "SELECT domain, sum(visits) AS visits, count(*) AS days FROM user_domain_visits WHERE user_id = %s "
        "GROUP BY domain ORDER BY sum(visits) DESC, domain LIMIT %s", (user_id, limit)).fetchall()


def user_recommendations(conn: psycopg.Connection, user_id: int) -> list[tuple]:
    return conn.execute(
        "SELECT r.rank, r.video_id, v.title, v.tags, r.score, r.segment FROM rec.user_recommendations_current r "
        "JOIN videos v USING (video_id) WHERE r.user_id = %s ORDER BY r.rank", (user_id,)).fetchall()


def sample_users(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT DISTINCT ON (segment) segment, user_id FROM rec.user_recommendations_current "
        "ORDER BY segment, hashint8(user_id)").fetchall()


def health(conn: psycopg.Connection) -> dict:
    """Coverage, churn against the previous published run of the serving model, and concentration."""
    serving = conn.execute(
        "SELECT s.model_run_id, m.model_name, m.data_interval_end FROM rec.serving s JOIN rec.model_runs m "
        "USING (model_run_id) WHERE s.output_name = 'user_recommendations'").fetchone()
    if serving is None:
        return {}
    run_id, model, end = serving
    active_videos = conn.execute("SELECT count(*) FROM videos WHERE is_active IS NOT FALSE").fetchone()[0]
    known_users = conn.execute(
        "SELECT count(*) FROM (SELECT user_id FROM video_views UNION SELECT user_id FROM user_domain_visits) u").fetchone()[0]
    users_served, videos_listed, slots = conn.execute(
        "SELECT count(DISTINCT user_id), count(DISTINCT video_id), count(*) FROM rec.user_recommendations_current").fetchone()
    similar_for = conn.execute("SELECT count(DISTINCT video_id) FROM rec.similar_videos_current").fetchone()[0]
    top_share = conn.execute(
        "WITH c AS (SELECT video_id, count(*) AS n FROM rec.user_recommendations_current GROUP BY video_id), "
        "r AS (SELECT n, row_number() OVER (ORDER BY n DESC) AS k, count(*) OVER () AS total FROM c) "
        "SELECT coalesce(sum(n) FILTER (WHERE k <= greatest(1, ceil(total * 0.01))), 0)::float8 / nullif(sum(n), 0) FROM r"
    ).fetchone()[0]
    previous = conn.execute(
        "SELECT model_run_id FROM rec.model_runs WHERE model_name = %s AND published_at IS NOT NULL "
        "AND data_interval_end < %s AND coalesce(status_reason, '') NOT LIKE 'pruned%%' "
        "ORDER BY data_interval_end DESC LIMIT 1", (model, end)).fetchone()
    churn = None
    if previous:
        churn = conn.execute(
            "SELECT 1 - count(*) FILTER (WHERE p.video_id IS NOT NULL)::float8 / nullif(count(*), 0) "
            "FROM rec.user_recommendations_current c LEFT JOIN rec.user_recommendations p "
            "ON p.model_run_id = %s AND p.user_id = c.user_id AND p.video_id = c.video_id", (previous[0],)).fetchone()[0]
    return {
        "run_id": run_id, "model": model, "end": end, "previous_run_id": previous[0] if previous else None,
        "user_coverage": users_served / known_users if known_users else 0.0,
        "video_coverage": videos_listed / active_videos if active_videos else 0.0,
        "similar_coverage": similar_for / active_videos if active_videos else 0.0,
        "churn": churn, "top1pct_share": top_share, "users_served": users_served, "slots": slots,
        "segments": dict(conn.execute("SELECT segment, count(DISTINCT user_id) FROM rec.user_recommendations_current "
                                      "GROUP BY segment").fetchall()),
    }
