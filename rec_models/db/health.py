"""rec.run_health: what the Health page shows about a published run (coverage, churn against the
model's previous run, concentration, users per segment), computed once when the run publishes. At
a million users these figures read tens of millions of rows: once a night, not once a page load."""

from __future__ import annotations

import json

import psycopg
from psycopg import sql

from rec_models.db.outputs import USER_RECOMMENDATIONS
from rec_models.db.publish import partition_name


def record_run_health(conn: psycopg.Connection, model_run_id: int, *, known_users: int, active_videos: int) -> dict:
    """Compute and store (replacing an earlier attempt's row) the health of a published run whose
    partitions are attached; ``known_users`` and ``active_videos`` come from the run's Dataset."""
    run = conn.execute("SELECT model_name, data_interval_end FROM rec.model_runs WHERE model_run_id = %s",
                       (model_run_id,)).fetchone()
    if run is None:
        raise ValueError(f"no model run {model_run_id}")
    model_name, end = run
    # Each user's list has exactly one rank 1: counting those counts users without a DISTINCT.
    segments = dict(conn.execute(
        "SELECT segment, count(*) FROM rec.user_recommendations WHERE model_run_id = %s AND rank = 1 "
        "GROUP BY segment", (model_run_id,)).fetchall())
    samples = dict(conn.execute(
        "SELECT DISTINCT ON (segment) segment, user_id FROM rec.user_recommendations "
        "WHERE model_run_id = %s AND rank = 1 ORDER BY segment, hashint8(user_id)", (model_run_id,)).fetchall())
    videos_listed, slots, top_share = conn.execute(
        "WITH c AS (SELECT video_id, count(*) AS n FROM rec.user_recommendations WHERE model_run_id = %s "
        "GROUP BY video_id), r AS (SELECT n, row_number() OVER (ORDER BY n DESC) AS k, count(*) OVER () AS total FROM c) "
        "SELECT count(*), coalesce(sum(n), 0), "
        "coalesce(sum(n) FILTER (WHERE k <= greatest(1, ceil(total * 0.01))), 0)::float8 / nullif(sum(n), 0) FROM r",
        (model_run_id,)).fetchone()
    similar_for = conn.execute("SELECT count(*) FROM rec.similar_videos WHERE model_run_id = %s AND rank = 1",
                               (model_run_id,)).fetchone()[0]
    previous = conn.execute(
        "SELECT model_run_id FROM rec.model_runs WHERE model_name = %s AND published_at IS NOT NULL "
        "AND data_interval_end < %s AND coalesce(status_reason, '') NOT LIKE 'pruned%%' "
        "ORDER BY data_interval_end DESC LIMIT 1", (model_name, end)).fetchone()
    churn = None
    if previous and not conn.execute("SELECT to_regclass(%s)",
                                     (partition_name(USER_RECOMMENDATIONS, previous[0]).as_string(conn),)).fetchone()[0]:
        previous = None  # its lists are gone (pruned by hand): nothing to measure churn against
    if previous and slots:
        # Pairs are unique within a run (audited), so the join counts the pairs both runs list. The two
        # partitions by name: their statistics make it one parallel hash join (on the parent table the
        # planner misjudged the rows per user and probed the key per row, 5x slower at a million users).
        kept = conn.execute(sql.SQL(
            "SELECT count(*) FROM {} a JOIN {} b ON b.user_id = a.user_id AND b.video_id = a.video_id").format(
            partition_name(USER_RECOMMENDATIONS, model_run_id), partition_name(USER_RECOMMENDATIONS, previous[0]))
        ).fetchone()[0]
        churn = 1 - kept / slots
    health = {
        "known_users": int(known_users), "active_videos": int(active_videos),
        "users_served": int(sum(segments.values())), "videos_listed": int(videos_listed), "similar_for": int(similar_for),
        "slots": int(slots), "top1pct_share": top_share, "previous_run_id": previous[0] if previous else None,
        "churn": churn, "segments": {k: int(v) for k, v in segments.items()},
        "sample_users": {k: int(v) for k, v in samples.items()},
    }
    conn.execute(
        "INSERT INTO rec.run_health (model_run_id, known_users, active_videos, users_served, videos_listed, "
        "similar_for, slots, top1pct_share, previous_run_id, churn, segments, sample_users) "
        "VALUES (%(id)s, %(known_users)s, %(active_videos)s, %(users_served)s, %(videos_listed)s, %(similar_for)s, "
        "%(slots)s, %(top1pct_share)s, %(previous_run_id)s, %(churn)s, %(segments_json)s, %(samples_json)s) "
        "ON CONFLICT (model_run_id) DO UPDATE SET computed_at = now(), known_users = EXCLUDED.known_users, "
        "active_videos = EXCLUDED.active_videos, users_served = EXCLUDED.users_served, "
        "videos_listed = EXCLUDED.videos_listed, similar_for = EXCLUDED.similar_for, slots = EXCLUDED.slots, "
        "top1pct_share = EXCLUDED.top1pct_share, previous_run_id = EXCLUDED.previous_run_id, churn = EXCLUDED.churn, "
        "segments = EXCLUDED.segments, sample_users = EXCLUDED.sample_users",
        {"id": model_run_id, **health, "segments_json": json.dumps(health["segments"]),
         "samples_json": json.dumps(health["sample_users"])})
    conn.commit()
    return health
