"""Write a synthetic world into the source tables with binary COPY (the demo and the benchmarks)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict

import numpy as np
import psycopg
from psycopg import sql

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
    conn.execute(
        "CREATE TABLE IF NOT EXISTS public.rec_demo_seed (fingerprint text NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now())"
    )
    previous = conn.execute("SELECT fingerprint FROM public.rec_demo_seed").fetchone()
    if previous and previous[0] == fingerprint:
        conn.commit()
        return False
    if not previous and not replace_foreign:
        busy = [t for t in SOURCE_TABLES if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(t))).fetchone()[0]]
        if busy:
            conn.rollback()
            raise SourcesNotOursError(
                f"source tables {', '.join(busy)} already hold data that the demo seeder did not write; "
                "refusing to replace it (pass --replace to overwrite)"
            )
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("TRUNCATE video_views, user_domain_visits, videos")
        conn.execute("DELETE FROM public.rec_demo_seed")
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


def _copy_videos(conn: psycopg.Connection, world: World) -> None:
    stmt = "COPY videos (video_id, title, description, tags, published_at, is_active) FROM STDIN (FORMAT binary)"
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(["int8", "text", "text", "text[]", "int8", "bool"])
        for i in range(len(world.video_id)):
            copy.write_row((
                int(world.video_id[i]), world.title[i], world.description[i], world.tags[i],
                int(pg_timestamp(world.published_at[i])), bool(world.is_active[i]),
            ))


def _copy_views(conn: psycopg.Connection, world: World) -> None:
    n = len(world.view_user)
    chunks = (
        (world.view_user[s:s + _CHUNK], world.view_video[s:s + _CHUNK],
         pg_timestamp(world.viewed_at[s:s + _CHUNK]), world.watch_seconds[s:s + _CHUNK])
        for s in range(0, n, _CHUNK)
    )
    copy_in_chunks(conn, sql.Identifier("video_views"), ["user_id", "video_id", "viewed_at", "watch_seconds"],
                   ["int8", "int8", "timestamptz", "int4"], chunks)


def _copy_visits(conn: psycopg.Connection, world: World) -> None:
    # The domain is text of varying length: one chunk per domain keeps every chunk fixed-width.
    order = np.argsort(world.visit_domain, kind="stable")
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
