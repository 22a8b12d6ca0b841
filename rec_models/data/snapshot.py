"""The extract task: read the valid rows of the run's window in one consistent database snapshot and
store them as column files in the run folder (the input of every model task)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from rec_models.data.packed import load_packed, save_packed
from rec_models.data.rules import checked_anew, rule_params, videos_rules, views_rules, visits_rules
from rec_models.db.bulk import copy_out_columns

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    """The valid source rows of one run, as columns."""

    # views
    view_user: np.ndarray
    view_video: np.ndarray
    viewed_at: np.ndarray  # epoch seconds
    watch_seconds: np.ndarray
    # videos
    video_id: np.ndarray
    is_active: np.ndarray
    published_at: np.ndarray  # epoch seconds, -1 when unknown
    video_text: dict[int, dict]  # video_id -> {"title", "description", "tags"}
    # domain visits
    visit_user: np.ndarray
    visit_domain: np.ndarray  # index into domains
    visit_date: np.ndarray  # epoch days
    visits: np.ndarray
    domains: list[str]
    end: float  # epoch seconds of the data interval end

    def save(self, folder: Path) -> None:
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_packed(tmp / "views.npz", user=self.view_user, video=self.view_video, viewed_at=self.viewed_at,
                    watch_seconds=self.watch_seconds)
        save_packed(tmp / "videos.npz", video_id=self.video_id, is_active=self.is_active,
                    published_at=self.published_at)
        save_packed(tmp / "visits.npz", user=self.visit_user, domain=self.visit_domain, date=self.visit_date,
                    visits=self.visits)
        (tmp / "meta.json").write_text(json.dumps({"domains": self.domains, "end": self.end}))
        (tmp / "video_text.json").write_text(json.dumps({str(k): v for k, v in self.video_text.items()}))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)  # a reader sees the whole snapshot or none

    def without_users(self, user_ids: np.ndarray) -> tuple["Snapshot", dict[int, int]]:
        """This snapshot without the views and visits of these people, and the rows removed per person."""
        views = np.isin(self.view_user, user_ids)
        visits = np.isin(self.visit_user, user_ids)
        removed = np.concatenate([self.view_user[views], self.visit_user[visits]])
        people, counts = np.unique(removed, return_counts=True)
        kept = dataclasses.replace(
            self, view_user=self.view_user[~views], view_video=self.view_video[~views],
            viewed_at=self.viewed_at[~views], watch_seconds=self.watch_seconds[~views],
            visit_user=self.visit_user[~visits], visit_domain=self.visit_domain[~visits],
            visit_date=self.visit_date[~visits], visits=self.visits[~visits])
        return kept, {int(u): int(n) for u, n in zip(people, counts)}

    @classmethod
    def load(cls, folder: Path) -> "Snapshot":
        views, videos, visits = (load_packed(folder / f) for f in ("views.npz", "videos.npz", "visits.npz"))
        meta = json.loads((folder / "meta.json").read_text())
        text = {int(k): v for k, v in json.loads((folder / "video_text.json").read_text()).items()}
        return cls(
            view_user=views["user"], view_video=views["video"], viewed_at=views["viewed_at"],
            watch_seconds=views["watch_seconds"],
            video_id=videos["video_id"], is_active=videos["is_active"], published_at=videos["published_at"],
            video_text=text,
            visit_user=visits["user"], visit_domain=visits["domain"], visit_date=visits["date"],
            visits=visits["visits"], domains=meta["domains"], end=meta["end"],
        )


def extract_snapshot(conn: psycopg.Connection, end: datetime, window_start: datetime, service_start: datetime,
                     validated: dict[str, int] | None = None) -> Snapshot:
    """Read every valid row visible at ``end`` in one REPEATABLE READ snapshot: from the verdicts the
    validate task kept, when it counted ``validated`` (source table -> valid rows) for this window, else
    by judging every row now. When the kept verdicts do not give validate's counts (another night, or an
    erasure, changed them in between), the rows are judged anew instead, with a warning."""
    params = rule_params(end, window_start, service_start)
    started = time.perf_counter()
    if validated is not None:
        snapshot = _read(conn, params, from_judged=True)
        read = {"videos": len(snapshot.video_id), "video_views": len(snapshot.view_user),
                "user_domain_visits": len(snapshot.visit_user)}
        if read == {t: validated.get(t) for t in read}:
            _log_read(snapshot, started)
            return snapshot
        log.warning("the kept verdicts give %s valid rows, validate counted %s: judging the window anew", read,
                    validated)
    snapshot = _read(conn, params, from_judged=False)
    _log_read(snapshot, started)
    return snapshot


def _read(conn: psycopg.Connection, params: dict, from_judged: bool) -> Snapshot:
    def checked(rules) -> sql.Composed:
        if from_judged:
            return rules.checked(rules.judged_table, videos_rules().judged_table)
        return checked_anew(rules)

    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction(), ThreadPoolExecutor(max_workers=1) as pool:
            videos = conn.execute(sql.SQL(
                "SELECT c.video_id, coalesce(c.is_active, true), coalesce(extract(epoch FROM c.published_at)::int8, -1), "
                "c.title, coalesce(c.description, ''), coalesce(c.tags, '{{}}') "
                "FROM ({}) c WHERE c.reason IS NULL ORDER BY c.video_id").format(checked(videos_rules())), params,
            ).fetchall()
            # The views stream in on a thread of their own (a connection of their own in this snapshot, see
            # copy_out_columns) while the domains and their visits are read here.
            reading_views = pool.submit(
                copy_out_columns, conn,
                sql.SQL("SELECT c.user_id, c.video_id, extract(epoch FROM c.viewed_at)::int8, c.watch_seconds "
                        "FROM ({}) c WHERE c.reason IS NULL").format(checked(views_rules())),
                params, ["int8", "int8", "int8", "int4"],
            )
            visits = checked(visits_rules())
            domains = [r[0] for r in conn.execute(
                sql.SQL("SELECT DISTINCT c.domain FROM ({}) c WHERE c.reason IS NULL ORDER BY 1").format(visits),
                params,
            ).fetchall()]
            # Domain index by a hash join on the sorted distinct list: no sort of every row.
            visit_user, visit_domain, visit_date, visit_count = copy_out_columns(
                conn,
                sql.SQL("SELECT c.user_id, (d.ord - 1)::int4, (c.visit_date - date '1970-01-01')::int4, c.visits "
                        "FROM ({}) c JOIN unnest(%(domains)s::text[]) WITH ORDINALITY AS d(domain, ord) "
                        "ON d.domain = c.domain WHERE c.reason IS NULL").format(visits),
                {**params, "domains": domains}, ["int8", "int4", "int4", "int4"],
            )
            view_user, view_video, viewed_at, watch = reading_views.result()
    finally:
        conn.isolation_level = None
        conn.read_only = False
    return Snapshot(
        view_user=view_user, view_video=view_video, viewed_at=viewed_at, watch_seconds=watch,
        video_id=np.array([r[0] for r in videos], dtype=np.int64),
        is_active=np.array([r[1] for r in videos], dtype=bool),
        published_at=np.array([r[2] for r in videos], dtype=np.int64),
        video_text={r[0]: {"title": r[3], "description": r[4], "tags": list(r[5])} for r in videos},
        visit_user=visit_user, visit_domain=visit_domain, visit_date=visit_date, visits=visit_count,
        domains=domains, end=params["end"].timestamp(),
    )


def _log_read(snapshot: Snapshot, started: float) -> None:
    log.info("extracted %d views, %d videos, %d domain-visit rows (%d domains) in %.2f s", len(snapshot.view_user),
             len(snapshot.video_id), len(snapshot.visit_user), len(snapshot.domains), time.perf_counter() - started)
