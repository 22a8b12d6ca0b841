"""Next-day replay: did people watch what we served? Each published run's lists (top 10) scored
against the new views of the interval after it, per segment, next to that run's popular list.

There is no impression log: this measures whether the lists predicted what people then watched. As
in the holdout, a target is a (user, video) pair first watched in the interval (a rewatch is not a
discovery), of a known video; the run's own lists never hold what the user had watched before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg

K = 10
SEGMENTS = ("hot", "warm", "cold")
RANKERS = ("model", "popularity")


@dataclass(frozen=True)
class ServedRun:
    model_run_id: int
    model_name: str
    interval_start: datetime | None
    interval_end: datetime


def served_runs(conn: psycopg.Connection, interval_start: datetime) -> list[ServedRun]:
    """The runs published by the latest night whose data ends by ``interval_start`` (outputs still kept):
    what served through the interval starting then (the serving model's, and any other model's that
    publish_models published that night; an older night's lists of a model no longer published are not)."""
    kept = "published_at IS NOT NULL AND coalesce(status_reason, '') NOT LIKE 'pruned%%'"
    rows = conn.execute(
        "SELECT DISTINCT ON (model_name) model_run_id, model_name, data_interval_start, data_interval_end "
        f"FROM rec.model_runs WHERE {kept} AND data_interval_end = (SELECT max(data_interval_end) "
        f"FROM rec.model_runs WHERE {kept} AND data_interval_end <= %s) "
        "ORDER BY model_name, data_interval_end DESC",
        (interval_start,)).fetchall()
    return [ServedRun(int(r[0]), r[1], r[2], r[3]) for r in rows]


_TARGETS = """
    WITH targets AS (
        SELECT DISTINCT v.user_id, v.video_id FROM video_views v JOIN videos USING (video_id)
        WHERE v.viewed_at >= %(start)s AND v.viewed_at < %(end)s AND v.user_id > 0
        EXCEPT
        SELECT user_id, video_id FROM video_views WHERE viewed_at >= %(window_start)s AND viewed_at < %(start)s
    )"""


def ranking_metrics(n_targets: np.ndarray, hit_user: np.ndarray, hit_rank: np.ndarray, k: int = K) -> dict[str, np.ndarray]:
    """Per user HR@k, Recall@k (hits / min(targets, k)) and NDCG@k from their number of targets and the
    (user position, 1-based rank) of each hit."""
    n = len(n_targets)
    hits = np.bincount(hit_user, minlength=n).astype(np.float64)
    dcg = np.bincount(hit_user, weights=1.0 / np.log2(hit_rank + 1.0), minlength=n)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(n_targets, k) - 1]
    return {f"hr@{k}": (hits > 0).astype(np.float64), f"recall@{k}": hits / np.minimum(n_targets, k),
            f"ndcg@{k}": dcg / ideal}


def measure(conn: psycopg.Connection, run: ServedRun, start: datetime, end: datetime,
            window_start: datetime) -> list[tuple[str, str, str, float]]:
    """(ranker, segment, metric, value) rows of one served run against the views in [start, end)."""
    params = {"run": run.model_run_id, "start": start, "end": end, "window_start": window_start}
    users = conn.execute(_TARGETS + """,
        listed AS (SELECT DISTINCT user_id, segment FROM rec.user_recommendations WHERE model_run_id = %(run)s)
        SELECT t.user_id, count(*), l.segment FROM targets t JOIN listed l USING (user_id)
        GROUP BY t.user_id, l.segment ORDER BY t.user_id""", params).fetchall()
    user_ids = np.array([r[0] for r in users], dtype=np.int64)
    n_targets = np.array([r[1] for r in users], dtype=np.int64)
    segment = np.array([r[2] for r in users], dtype=object)
    model_hits = conn.execute(_TARGETS + """
        SELECT l.user_id, l.rank FROM rec.user_recommendations l JOIN targets t USING (user_id, video_id)
        WHERE l.model_run_id = %(run)s AND l.rank <= %(k)s""", {**params, "k": K}).fetchall()
    # The popular list as each user would get it: without what they had watched before the interval.
    popular_hits = conn.execute(_TARGETS + """,
        target_users AS (SELECT DISTINCT user_id FROM targets),
        offered AS (
            SELECT u.user_id, p.video_id, row_number() OVER (PARTITION BY u.user_id ORDER BY p.rank) AS rank
            FROM target_users u CROSS JOIN rec.popular_videos p
            WHERE p.model_run_id = %(run)s AND NOT EXISTS (
                SELECT 1 FROM video_views s WHERE s.user_id = u.user_id AND s.video_id = p.video_id
                AND s.viewed_at >= %(window_start)s AND s.viewed_at < %(start)s)
        )
        SELECT o.user_id, o.rank FROM offered o JOIN targets t USING (user_id, video_id)
        WHERE o.rank <= %(k)s""", {**params, "k": K}).fetchall()
    rows = []
    for ranker, hits in (("model", model_hits), ("popularity", popular_hits)):
        found = np.array([h[0] for h in hits], dtype=np.int64)
        position = np.searchsorted(user_ids, found)
        listed = (position < len(user_ids)) & (user_ids[np.minimum(position, max(len(user_ids) - 1, 0))] == found) \
            if len(user_ids) else np.zeros(len(found), dtype=bool)
        per_user = ranking_metrics(n_targets, position[listed],
                                   np.array([h[1] for h in hits], dtype=np.float64)[listed]) if len(user_ids) else {}
        for name, mask in [("all", np.ones(len(user_ids), dtype=bool))] + [(s, segment == s) for s in SEGMENTS]:
            rows.append((ranker, name, "users", float(mask.sum())))
            if mask.any():
                rows += [(ranker, name, metric, float(values[mask].mean())) for metric, values in per_user.items()]
    coverage = conn.execute(
        "SELECT (SELECT count(DISTINCT video_id) FROM rec.user_recommendations WHERE model_run_id = %s)::float8 "
        "/ greatest((SELECT count(*) FROM videos WHERE is_active), 1)", (run.model_run_id,)).fetchone()[0]
    rows.append(("model", "all", "coverage", float(coverage)))
    rows += [("model", "new_videos", metric, float(value)) for metric, value in
             zip(("new_videos", "viewed", "listed", "listed_and_viewed"), _new_videos(conn, run, start, end))]
    return rows


def _new_videos(conn: psycopg.Connection, run: ServedRun, start: datetime, end: datetime) -> tuple[int, int, int, int]:
    """Videos published in the run's interval and never watched before the next one: how many there
    were, how many got views the next day, how many were in someone's list, and both."""
    since = run.interval_start or run.interval_end
    # Joins, not a correlated EXISTS per video: that scanned the run's 2M list rows once per new video.
    return conn.execute("""
        WITH new AS (
            SELECT v.video_id FROM videos v
            WHERE v.published_at >= %(since)s AND v.published_at < %(run_end)s
              AND NOT EXISTS (SELECT 1 FROM video_views w WHERE w.video_id = v.video_id AND w.viewed_at < %(start)s)
        ),
        viewed AS (SELECT DISTINCT video_id FROM video_views WHERE viewed_at >= %(start)s AND viewed_at < %(end)s),
        listed AS (SELECT DISTINCT video_id FROM rec.user_recommendations WHERE model_run_id = %(run)s)
        SELECT count(*), count(viewed.video_id), count(listed.video_id),
               count(*) FILTER (WHERE viewed.video_id IS NOT NULL AND listed.video_id IS NOT NULL)
        FROM new LEFT JOIN viewed USING (video_id) LEFT JOIN listed USING (video_id)""",
        {"since": since, "run_end": run.interval_end, "start": start, "end": end, "run": run.model_run_id}).fetchone()


def record_next_day(conn: psycopg.Connection, run_key: str, measured: dict[int, list[tuple[str, str, str, float]]]) -> int:
    """Store each run's rows for this night, replacing an earlier attempt's; returns the rows written."""
    written = 0
    with conn.transaction():
        for model_run_id, rows in measured.items():
            conn.execute("DELETE FROM rec.next_day_metrics WHERE model_run_id = %s AND run_key = %s",
                         (model_run_id, run_key))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO rec.next_day_metrics (model_run_id, run_key, ranker, segment, metric, value) "
                                "VALUES (%s, %s, %s, %s, %s, %s)", [(model_run_id, run_key, *row) for row in rows])
            written += len(rows)
    return written
