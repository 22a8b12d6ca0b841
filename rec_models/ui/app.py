"""The FastAPI app of the Recommendations view. Routes take the caller's user dependency, so inside
Airflow they sit behind Airflow's own auth (the UI's token cookie or a bearer token)."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import psycopg
from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from rec_models.ui import pages, queries


def create_app(database_url: Callable[[], str], user_dependency: Callable[..., Any], base: str) -> FastAPI:
    """database_url: called per request (the Airflow Connection may change); base: the mount prefix."""
    app = FastAPI(title="Recommendations", docs_url=None, redoc_url=None, openapi_url=None)
    auth = [Depends(user_dependency)]

    def conn() -> psycopg.Connection:
        return psycopg.connect(database_url(), application_name="rec_models_ui", connect_timeout=5)

    @app.get("/", response_class=HTMLResponse, dependencies=auth)
    def model_runs() -> str:
        with conn() as c:
            runs = queries.model_runs(c)
        charts = pages.metric_chart(runs, "ndcg@10") + " " + pages.metric_chart(runs, "recall@10")
        body = (f"<h2>Holdout quality per model</h2>{charts}<h2>Recent runs</h2>"
                f"<p class='muted'>Every model trained each night is recorded; a candidate publishes only if its "
                f"holdout NDCG@10 passes the quality gate. The reason column says why.</p>{pages.runs_table(runs)}")
        return pages.page("Model runs", body, base)

    @app.get("/videos", response_class=HTMLResponse, dependencies=auth)
    def search_videos(q: str = Query("", max_length=200)) -> str:
        form = (f"<form method='get' action='{base}/videos'><input name='q' value='{escape(q)}' "
                f"placeholder='video id or words of a title'> <button>Search</button></form>")
        results = ""
        if q.strip():
            with conn() as c:
                found = queries.find_videos(c, q)
            results = "".join(f"<li><a href='{base}/videos/{v}'>{escape(t)}</a> <span class='muted'>id {v} · "
                              f"{escape(', '.join(g or []))}</span></li>" for v, t, g in found) or \
                "<p class='muted'>No video matches.</p>"
            results = f"<ul>{results}</ul>"
        return pages.page("Similar videos", form + results, base)

    @app.get("/videos/{video_id}", response_class=HTMLResponse, dependencies=auth)
    def video(video_id: int) -> str:
        with conn() as c:
            info = queries.video(c, video_id)
            similar = queries.similar_videos(c, video_id)
        if info is None:
            return pages.page("Similar videos", f"<p>No video with id {video_id}.</p>", base)
        _, title, description, tags, active = info
        run = f" (model run {similar[0][5]})" if similar else ""
        body = (f"<p><b>{escape(title)}</b> <span class='muted'>id {video_id} · {escape(', '.join(tags or []))}"
                f"{'' if active is not False else ' · inactive'}</span></p><p class='muted'>{escape(description or '')}</p>"
                f"<h2>Most similar videos{run}</h2>{pages.video_cards([r[:5] for r in similar], base)}")
        return pages.page(f"Similar to: {title}", body, base)

    @app.get("/users", response_class=HTMLResponse, dependencies=auth)
    def users(q: str = Query("", max_length=30)) -> str:
        if q.strip().isdigit():
            return user(int(q))
        with conn() as c:
            samples = queries.sample_users(c)
        links = "".join(f"<li><a href='{base}/users/{u}'>user {u}</a> <span class='muted'>({escape(s)})</span></li>"
                        for s, u in samples)
        form = f"<form method='get' action='{base}/users'><input name='q' placeholder='user id'> <button>Show</button></form>"
        return pages.page("Users", f"{form}<p class='muted'>Examples, one per segment:</p><ul>{links}</ul>", base)

    @app.get("/users/{user_id}", response_class=HTMLResponse, dependencies=auth)
    def user(user_id: int) -> str:
        with conn() as c:
            domains = queries.user_domains(c, user_id)
            recs = queries.user_recommendations(c, user_id)
        segment = recs[0][5] if recs else "unknown: served the popular list"
        domain_rows = "".join(f"<tr><td>{escape(d)}</td><td>{n}</td><td>{days}</td></tr>" for d, n, days in domains)
        body = (f"<p>Segment: <span class='pill'>{escape(segment)}</span></p>"
                f"<h2>Top domains</h2><table><tr><th>domain</th><th>visits</th><th>days</th></tr>{domain_rows}</table>"
                f"<h2>Recommended videos</h2>{pages.video_cards(recs, base)}")
        return pages.page(f"User {user_id}", body, base)

    @app.get("/health", response_class=HTMLResponse, dependencies=auth)
    def health() -> str:
        with conn() as c:
            h = queries.health(c)
        if not h:
            return pages.page("Health", "<p>Nothing is published yet.</p>", base)
        pct = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        body = pages.kpis([
            ("Users with a list", pct(h["user_coverage"]), f"{h['users_served']:,} users"),
            ("Active videos recommended", pct(h["video_coverage"]), "in any user's list"),
            ("Active videos with neighbours", pct(h["similar_coverage"]), "similar-videos coverage"),
            ("Churn vs previous run", pct(h["churn"]),
             f"run {h['previous_run_id']}" if h["previous_run_id"] else "no previous published run"),
            ("Slots taken by the top 1% of videos", pct(h["top1pct_share"]), "concentration"),
        ])
        segments = ", ".join(f"{escape(k)}: {v:,}" for k, v in sorted(h["segments"].items()))
        body += (f"<p class='muted'>Serving model run {h['run_id']} ({escape(h['model'])}, data up to "
                 f"{escape(str(h['end']))}). Users per segment: {segments}.</p>")
        return pages.page("Health", body, base)

    return app
