"""Write a synthetic world into the source tables with binary COPY (the demo and the benchmarks)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict

import numpy as np
import psycopg
from psycopg import sql

from rec_models.data.evolving import EvolvingWorld, day_rows
from rec_models.data.synthetic import World
from rec_models.db.bulk import copy_in_chunks, pg_date, pg_timestamp

log = logging.getLogger(__name__)

SOURCE_TABLES = ("video_views", "user_domain_visits", "videos")
_CHUNK = 500_000


class SourcesNotOursError(RuntimeError):
    """The source tables hold data this seeder did not write: refuse to overwrite it."""


def seed_world(conn: psycopg.Connection, world: World, *, replace_foreign: bool = False) -> bool:
    """Load ``world`` into the source tables, replacing an earlier seed; returns False if already loaded.

    Idempotent: the seed's spec and end date are recorded, and the same seed is not loaded twice.
    Refuses to touch source tables that hold rows it did not write unless ``replace_foreign``.
    """
    fingerprint = json.dumps({"spec": asdict(world.spec), "end": world.end.isoformat()}, sort_keys=True)
    _ensure_bookkeeping(conn)
    previous = conn.execute("SELECT fingerprint FROM public.rec_demo_seed").fetchone()
    if previous and previous[0] == fingerprint:
        conn.commit()
        return False
    if not previous and not replace_foreign:
        _refuse_foreign(conn)
    started = time.perf_counter()
    with conn.transaction():
        _clear(conn)
        _copy_videos(conn, world)
        _copy_views(conn, world)
        _copy_visits(conn, world)
        conn.execute("INSERT INTO public.rec_demo_seed (fingerprint) VALUES (%s)", (fingerprint,))
    conn.execute("ANALYZE videos")
    conn.execute("ANALYZE video_views")
    conn.execute("ANALYZE user_domain_visits")
    conn.commit()
    log.info(
        "seeded %d videos, %d views, %d domain-visit rows in %.1f s",
        len(world.video_id), len(world.view_user), len(world.visit_user), time.perf_counter() - started,
    )
    return True


def _refuse_foreign(conn: psycopg.Connection) -> None:
    busy = [t for t in SOURCE_TABLES if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(t))).fetchone()[0]]
    if busy:
        conn.rollback()
        raise SourcesNotOursError(
            f"source tables {', '.join(busy)} already hold data that the demo seeder did not write; "
            "refusing to replace it (pass --replace to overwrite)"
        )


def _clear(conn: psycopg.Connection) -> None:
    """Empty the source tables and forget what was seeded (inside the caller's transaction)."""
    conn.execute("TRUNCATE video_views, user_domain_visits, videos")
    conn.execute("DELETE FROM public.rec_demo_seed")
    conn.execute("DELETE FROM public.rec_demo_days")


def seed_days(conn: psycopg.Connection, ew: EvolvingWorld, through: int, *, replace_foreign: bool = False) -> list[int]:
    """Append the evolving world's days up to ``through`` (0: the warm-up only), each in its own
    transaction; returns the days written now. Idempotent: a day already seeded is not written again;
    a different evolving world (or the one-shot demo world) is replaced from its warm-up on."""
    if not 0 <= through <= ew.spec.nights:
        raise ValueError(f"day {through} is outside 0..{ew.spec.nights}")
    fingerprint = json.dumps({"evolving": asdict(ew.spec), "end": ew.night_end(ew.spec.nights).isoformat()},
                             sort_keys=True)
    _ensure_bookkeeping(conn)
    previous = conn.execute("SELECT fingerprint FROM public.rec_demo_seed").fetchone()
    seeded = {d for d, f in conn.execute("SELECT day, fingerprint FROM public.rec_demo_days") if f == fingerprint}
    if not previous and not replace_foreign:
        _refuse_foreign(conn)
    if previous and previous[0] != fingerprint:
        seeded = set()  # another world: start over from its warm-up
    written = []
    for day in range(through + 1):
        if day in seeded:
            continue
        rows = day_rows(ew, day)
        with conn.transaction():
            if day == 0:
                _clear(conn)
                conn.execute("INSERT INTO public.rec_demo_seed (fingerprint) VALUES (%s)", (fingerprint,))
            elif day - 1 not in seeded and day - 1 not in written:
                raise ValueError(f"day {day} cannot be seeded before day {day - 1}")
            _copy_videos(conn, ew.world, rows.videos)
            _copy_views(conn, ew.world, rows.views)
            _copy_malformed_views(conn, rows.malformed_views)
            _copy_visits(conn, ew.world, rows.visits)
            conn.execute("INSERT INTO public.rec_demo_days (day, fingerprint) VALUES (%s, %s)", (day, fingerprint))
        written.append(day)
    for table in SOURCE_TABLES:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    conn.commit()
    if written:
        log.info("seeded days %s of the evolving world", ", ".join(map(str, written)))
    return written


def _ensure_bookkeeping(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS public.rec_demo_seed (fingerprint text NOT NULL, "
                 "seeded_at timestamptz NOT NULL DEFAULT now())")
    conn.execute("CREATE TABLE IF NOT EXISTS public.rec_demo_days (day integer PRIMARY KEY, fingerprint text NOT NULL, "
                 "seeded_at timestamptz NOT NULL DEFAULT now())")


def _copy_malformed_views(conn: psycopg.Connection, rows: list[tuple]) -> None:
    if not rows:
        return
    stmt = "COPY video_views (user_id, video_id, viewed_at, watch_seconds) FROM STDIN (FORMAT binary)"
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(["int8", "int8", "int8", "int4"])
        for user, video, at, watch in rows:
            copy.write_row((user, video, None if at is None else int(pg_timestamp(at)), watch))


def _copy_videos(conn: psycopg.Connection, world: World, rows: np.ndarray | None = None) -> None:
    stmt = "COPY videos (video_id, title, description, tags, published_at, is_active) FROM STDIN (FORMAT binary)"
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(["int8", "text", "text", "text[]", "int8", "bool"])
        for i in (range(len(world.video_id)) if rows is None else rows.tolist()):
            copy.write_row((
                int(world.video_id[i]), world.title[i], world.description[i], world.tags[i],
                int(pg_timestamp(world.published_at[i])), bool(world.is_active[i]),
            ))


def _copy_views(conn: psycopg.Connection, world: World, rows: np.ndarray | None = None) -> None:
    rows = np.arange(len(world.view_user)) if rows is None else rows
    chunks = (
        (world.view_user[r], world.view_video[r], pg_timestamp(world.viewed_at[r]), world.watch_seconds[r])
        for r in (rows[s:s + _CHUNK] for s in range(0, len(rows), _CHUNK))
    )
    copy_in_chunks(conn, sql.Identifier("video_views"), ["user_id", "video_id", "viewed_at", "watch_seconds"],
                   ["int8", "int8", "timestamptz", "int4"], chunks)


def _copy_visits(conn: psycopg.Connection, world: World, rows: np.ndarray | None = None) -> None:
    # The domain is text of varying length: one chunk per domain keeps every chunk fixed-width.
    rows = np.arange(len(world.visit_user)) if rows is None else rows
    order = rows[np.argsort(world.visit_domain[rows], kind="stable")]
    domains = world.visit_domain[order]
    bounds = np.flatnonzero(np.diff(domains)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(order)]])
    chunks = (
        (world.visit_user[order[a:b]], world.domain_names[domains[a]],
         pg_date(world.visit_date[order[a:b]]), world.visits[order[a:b]])
        for a, b in zip(starts, ends) if b > a
    )
    copy_in_chunks(conn, sql.Identifier("user_domain_visits"), ["user_id", "domain", "visit_date", "visits"],
                   ["int8", "text", "date", "int4"], chunks)
