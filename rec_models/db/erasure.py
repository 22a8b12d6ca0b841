"""rec.erasure_requests and the erasure of people from the tables the product owns.

A request is filed (``file_requests``), the rows of its person are deleted from every table of ours
that can hold them (``erase_rows``), and it is marked done with what was removed, per place, only when
the run folders are clean too (the caller's part). Upstream's source tables are not ours: the rules
skip requested people's rows there (``rec_models.data.rules.not_erased``) and publishing withholds
their lists (``rec_models.db.publish.withhold_requested``), so nobody requested is trained on or published again.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np
import psycopg
from psycopg import sql

from rec_models.db.outputs import USER_RECOMMENDATIONS
from rec_models.db.publish import PUBLISH_LOCK, partition_name, staging_name
from rec_models.names import USER_DOMAIN_VISITS, VIDEO_VIEWS, judged_table

# One erasure at a time (the night's step and the on-demand DAG): held for the whole erasure.
ERASURE_LOCK = 727_003

# The places in the database an erasure cleans, as rec.erasure_requests.removed names them.
PUBLISHED_LISTS = "published lists (current and kept partitions)"
STAGED_LISTS = "staged lists"
REJECTED_ROWS = "rejected rows"
VALIDATED_ROWS = "judged source rows"
HEALTH_SAMPLES = "health samples"
TABLE_PLACES = (PUBLISHED_LISTS, STAGED_LISTS, REJECTED_ROWS, VALIDATED_ROWS, HEALTH_SAMPLES)


def file_requests(conn: psycopg.Connection, user_ids: Iterable[int], requested_by: str | None = None) -> int:
    """File an erasure request per person (a person with an open request is not filed twice); returns
    how many were filed now."""
    people = sorted({int(u) for u in user_ids})
    bad = [u for u in people if u <= 0]
    if bad:
        raise ValueError(f"user ids are positive integers; got {', '.join(map(str, bad[:5]))}")
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO rec.erasure_requests (user_id, requested_by) "
            "SELECT u, coalesce(%s, current_user) FROM unnest(%s::int8[]) AS u "
            "ON CONFLICT (user_id) WHERE done_at IS NULL DO NOTHING", (requested_by, people))
        filed = cur.rowcount
    conn.commit()
    return filed


def open_requests(conn: psycopg.Connection) -> dict[int, int]:
    """user id -> request id of every request not done yet."""
    return dict(conn.execute(
        "SELECT user_id, request_id FROM rec.erasure_requests WHERE done_at IS NULL ORDER BY request_id").fetchall())


def requested_users(conn: psycopg.Connection) -> tuple[np.ndarray, int]:
    """Every person with a request, done or not (never to be published), and the newest request id."""
    rows = conn.execute("SELECT user_id, request_id FROM rec.erasure_requests").fetchall()
    users = np.unique(np.array([r[0] for r in rows], dtype=np.int64))
    return users, max((r[1] for r in rows), default=0)


@contextlib.contextmanager
def erasure_lock(conn: psycopg.Connection) -> Iterator[None]:
    """Wait for any other erasure to finish, then hold the erasure to ourselves."""
    conn.execute("SELECT pg_advisory_lock(%s)", (ERASURE_LOCK,))
    conn.commit()
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (ERASURE_LOCK,))
        conn.commit()


def erase_rows(conn: psycopg.Connection, user_ids: np.ndarray) -> dict[str, dict[int, int]]:
    """Delete these people's rows from every table of ours, in one transaction (readers of the
    ``_current`` views see their lists or none, never part of one); returns place -> person -> rows."""
    people = [int(u) for u in user_ids]
    removed: dict[str, Counter] = {place: Counter() for place in TABLE_PLACES}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
        for model_run_id, table in _user_tables(conn):
            # model_run_id first: each table's key (model_run_id, user_id, rank) finds the rows.
            place = PUBLISHED_LISTS if table == partition_name(USER_RECOMMENDATIONS, model_run_id) else STAGED_LISTS
            removed[place].update(r[0] for r in conn.execute(sql.SQL(
                "DELETE FROM {} WHERE model_run_id = %s AND user_id = ANY(%s) RETURNING user_id").format(table),
                (model_run_id, people)).fetchall())
        removed[REJECTED_ROWS].update(int(r[0]) for r in conn.execute(
            "DELETE FROM rec.rejected_rows WHERE row_data ? 'user_id' AND row_data ->> 'user_id' = ANY(%s) "
            "RETURNING row_data ->> 'user_id'", ([str(u) for u in people],)).fetchall())
        for source in (VIDEO_VIEWS, USER_DOMAIN_VISITS):
            removed[VALIDATED_ROWS].update(r[0] for r in conn.execute(sql.SQL(
                "DELETE FROM {} WHERE user_id = ANY(%s) RETURNING user_id").format(
                    sql.Identifier("rec", judged_table(source))),
                (people,)).fetchall())
        removed[HEALTH_SAMPLES].update(_replace_health_samples(conn, people))
    return {place: dict(counts) for place, counts in removed.items()}


def _user_tables(conn: psycopg.Connection) -> list[tuple[int, sql.Identifier]]:
    """(model run id, table) of every table of user lists: attached partitions and staging tables."""
    present = [sql.Identifier("rec", r[0]) for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'rec'::regnamespace AND relkind = 'r'").fetchall()]
    return [(model_run_id, table)
            for (model_run_id,) in conn.execute("SELECT model_run_id FROM rec.model_runs ORDER BY 1").fetchall()
            for table in (partition_name(USER_RECOMMENDATIONS, model_run_id),
                          staging_name(USER_RECOMMENDATIONS, model_run_id))
            if table in present]


def _replace_health_samples(conn: psycopg.Connection, people: list[int]) -> list[int]:
    """A run's health names one sample user per segment: a requested one is replaced by another user of
    that segment (the same pick as at publish), or dropped when the run's lists are gone."""
    erased = []
    for model_run_id, samples in conn.execute(
            "SELECT model_run_id, sample_users FROM rec.run_health h WHERE EXISTS ("
            "SELECT 1 FROM jsonb_each_text(h.sample_users) s WHERE s.value::int8 = ANY(%s))", (people,)).fetchall():
        kept = {}
        for segment, user in samples.items():
            if int(user) not in people:
                kept[segment] = user
                continue
            erased.append(int(user))
            other = conn.execute(
                "SELECT user_id FROM rec.user_recommendations WHERE model_run_id = %s AND rank = 1 AND segment = %s "
                "AND user_id <> ALL(%s) ORDER BY hashint8(user_id) LIMIT 1", (model_run_id, segment, people)).fetchone()
            if other:
                kept[segment] = int(other[0])
        conn.execute("UPDATE rec.run_health SET sample_users = %s WHERE model_run_id = %s",
                     (json.dumps(kept), model_run_id))
    return erased


def finish_requests(conn: psycopg.Connection, requests: dict[int, int], removed: dict[str, dict[int, int]]) -> None:
    """Mark these requests (user id -> request id) done, each with its rows or files removed per place."""
    for user, request_id in requests.items():
        counts = {place: by_person.get(user, 0) for place, by_person in removed.items()}
        conn.execute("UPDATE rec.erasure_requests SET done_at = now(), removed = %s, attempts = attempts + 1, "
                     "last_error = NULL WHERE request_id = %s", (json.dumps(counts), request_id))
    conn.commit()


def record_unfinished(conn: psycopg.Connection, requests: dict[int, int], reason: str) -> int:
    """These requests stay open: one more attempt, and why it did not finish. Returns the most attempts
    any of them has had."""
    attempts = conn.execute("UPDATE rec.erasure_requests SET attempts = attempts + 1, last_error = %s "
                            "WHERE request_id = ANY(%s) RETURNING attempts",
                            (reason[:2000], list(requests.values()))).fetchall()
    conn.commit()
    return max((a[0] for a in attempts), default=0)


def open_summary(conn: psycopg.Connection) -> dict:
    """Requests not done yet: how many, the oldest, and the most attempts one has had (the night's report)."""
    count, oldest, attempts = conn.execute(
        "SELECT count(*), min(requested_at), max(attempts) FROM rec.erasure_requests WHERE done_at IS NULL").fetchone()
    return {"open_requests": count, "oldest_open": oldest.isoformat() if oldest else None,
            "most_attempts": attempts or 0}


def requested_in_sources(conn: psycopg.Connection, window_start, end) -> int:
    """People with an erasure request whose rows upstream's tables still hold in the window (the
    product does not delete from them; it leaves those rows unread)."""
    if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM rec.erasure_requests)").fetchone()[0]:
        return 0
    return conn.execute(
        "SELECT count(DISTINCT user_id) FROM ("
        " SELECT user_id FROM video_views WHERE viewed_at >= %(start)s AND viewed_at < %(end)s"
        "   AND user_id IN (SELECT user_id FROM rec.erasure_requests)"
        " UNION ALL SELECT user_id FROM user_domain_visits"
        "   WHERE visit_date >= (%(start)s AT TIME ZONE 'UTC')::date AND visit_date < (%(end)s AT TIME ZONE 'UTC')::date"
        "   AND user_id IN (SELECT user_id FROM rec.erasure_requests)) s",
        {"start": window_start, "end": end}).fetchone()[0]
