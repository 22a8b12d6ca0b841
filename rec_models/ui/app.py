"""The FastAPI app of the Recommendations view. Routes take the caller's user dependency, so inside
Airflow they sit behind Airflow's own auth (the UI's token cookie or a bearer token).

Browsing histories are personal data: a user's top domains are shown only to callers for whom
``may_see_histories(user)`` is true, and are read through a SECURITY DEFINER function the view's
database role may call (rec.user_top_domains), never from the source table. Every bad input gets a
4xx page that says what was wrong, with the input escaped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from rec_models.db.disk import night_disk
from rec_models.ui import pages, queries

# Ids are PostgreSQL bigints, and positive (the pipeline quarantines the others).
MAX_ID = 2**63 - 1
_ID_RULE = f"a whole number from 1 to {MAX_ID}"
VideoId = Annotated[int, Path(ge=1, le=MAX_ID, description="video id")]
UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="user id")]


@dataclass(frozen=True)
class UIDatabase:
    """Where the view reads, and a warning every page shows while that is not the view's own role."""

    url: str
    warning: str | None = None


def create_app(database: Callable[[], UIDatabase], user_dependency: Callable[..., Any],
               may_see_histories: Callable[[Any], bool], base: str) -> FastAPI:
    """database: called per request (the Airflow Connection may change); may_see_histories(user): whether
    this caller may see browsing histories; base: the mount prefix."""
    app = FastAPI(title="Recommendations", docs_url=None, redoc_url=None, openapi_url=None)
    auth = [Depends(user_dependency)]
    caller = Depends(user_dependency)

    def render(title: str, body: str, db: UIDatabase | None = None, status_code: int = 200) -> HTMLResponse:
        return HTMLResponse(pages.page(title, body, base, db.warning if db else None), status_code=status_code)

    def connect(db: UIDatabase) -> psycopg.Connection:
        return psycopg.connect(db.url, application_name="rec_models_ui", connect_timeout=5)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> HTMLResponse:
        problems = "".join(f"<li>{escape(_describe(error))}</li>" for error in exc.errors())
        return render("Bad request", f"<p>The request could not be read:</p><ul>{problems}</ul>"
                                     f"<p><a href='{base}/'>Back to model runs</a></p>", status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> HTMLResponse:
        path = request.url.path
        shown = path if len(path) <= 120 else f"{path[:120]}..."
        message = (f"No such page: {shown}. Video and user pages are /videos/<id> and /users/<id>, with an id that "
                   f"is {_ID_RULE}." if exc.status_code == 404 else str(exc.detail))
        return render(f"Error {exc.status_code}", f"<p>{escape(message)}</p><p><a href='{base}/'>Back to model runs</a></p>",
                      status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse, dependencies=auth)
    def model_runs() -> HTMLResponse:
        db = database()
        with connect(db) as c:
            runs = queries.model_runs(c)
            next_day = queries.next_day_points(c)
        charts = pages.metric_chart(runs, "ndcg@10") + " " + pages.metric_chart(next_day, "ndcg@10", label="next day")
        body = (f"<h2>Quality per model: holdout, and the next day</h2>{charts}"
                f"<p class='muted'>Holdout: each candidate on the last day before its data ends. Next day: the lists "
                f"a published run served, against what people watched the day after (its popular list as "
                f"the baseline).</p><h2>Recent runs</h2>"
                f"<p class='muted'>Every model trained each night is recorded; a candidate publishes only if its "
                f"holdout NDCG@10 passes the quality gate. The reason column says why.</p>{pages.runs_table(runs)}")
        return render("Model runs", body, db)

    @app.get("/videos", response_class=HTMLResponse, dependencies=auth)
    def search_videos(q: Annotated[str, Query(max_length=200, description="video id or words of a title")] = ""
                      ) -> HTMLResponse:
        db = database()
        form = (f"<form method='get' action='{base}/videos'><input name='q' value='{escape(q)}' "
                f"placeholder='video id or words of a title'> <button>Search</button></form>")
        results = ""
        if q.strip():
            with connect(db) as c:
                found = queries.find_videos(c, q.strip())
            results = "".join(f"<li><a href='{base}/videos/{v}'>{escape(t)}</a> <span class='muted'>id {v} · "
                              f"{escape(', '.join(g or []))}</span></li>" for v, t, g in found) or \
                "<p class='muted'>No video matches.</p>"
            results = f"<ul>{results}</ul>"
        return render("Similar videos", form + results, db)

    @app.get("/videos/{video_id}", response_class=HTMLResponse, dependencies=auth)
    def video(video_id: VideoId) -> HTMLResponse:
        db = database()
        with connect(db) as c:
            info = queries.video(c, video_id)
            similar = queries.similar_videos(c, video_id) if info else []
        if info is None:
            return render("Similar videos", f"<p>No video with id {video_id}.</p>", db, status_code=404)
        _, title, description, tags, active = info
        run = f" (model run {similar[0][5]})" if similar else ""
        body = (f"<p><b>{escape(title)}</b> <span class='muted'>id {video_id} · {escape(', '.join(tags or []))}"
                f"{'' if active is not False else ' · inactive'}</span></p><p class='muted'>{escape(description or '')}</p>"
                f"<h2>Most similar videos{run}</h2>{pages.video_cards([r[:5] for r in similar], base)}")
        return render(f"Similar to: {title}", body, db)

    @app.get("/users", response_class=HTMLResponse)
    def users(q: Annotated[str, Query(max_length=30, description="user id")] = "", user: Any = caller) -> HTMLResponse:
        if q.strip():
            if not (q.strip().isascii() and q.strip().isdigit()) or not 1 <= int(q.strip()) <= MAX_ID:
                return render("Bad request", f"<p>A user id is {_ID_RULE}; got {escape(q)!s}.</p>", status_code=422)
            return user_page(int(q.strip()), user)
        db = database()
        with connect(db) as c:
            samples = queries.sample_users(c)
        links = "".join(f"<li><a href='{base}/users/{u}'>user {u}</a> <span class='muted'>({escape(s)})</span></li>"
                        for s, u in sorted(samples.items()))
        form = f"<form method='get' action='{base}/users'><input name='q' placeholder='user id'> <button>Show</button></form>"
        return render("Users", f"{form}<p class='muted'>Examples, one per segment:</p><ul>{links}</ul>", db)

    @app.get("/users/{user_id}", response_class=HTMLResponse)
    def user_page(user_id: UserId, user: Any = caller) -> HTMLResponse:
        db = database()
        shows_history = may_see_histories(user)
        with connect(db) as c:
            domains = queries.user_domains(c, user_id) if shows_history else []
            recs = queries.user_recommendations(c, user_id)
        segment = recs[0][5] if recs else "unknown: served the popular list"
        if shows_history:
            domain_rows = "".join(f"<tr><td>{escape(d)}</td><td>{n}</td><td>{days}</td></tr>" for d, n, days in domains)
            history = (f"<h2>Top domains</h2><table><tr><th>domain</th><th>visits</th><th>days</th></tr>{domain_rows}"
                       f"</table>")
        else:
            history = ("<h2>Top domains</h2><p class='muted'>Browsing history is hidden: it is personal data, shown "
                       "only to roles granted it (README: The Airflow UI).</p>")
        body = (f"<p>Segment: <span class='pill'>{escape(segment)}</span></p>{history}"
                f"<h2>Recommended videos</h2>{pages.video_cards(recs, base)}")
        return render(f"User {user_id}", body, db)

    @app.get("/health", response_class=HTMLResponse, dependencies=auth)
    def health() -> HTMLResponse:
        db = database()
        with connect(db) as c:
            h = queries.health(c)
            nights = night_disk(c)
        disk = ("<h2>Disk per night</h2><p class='muted'>Expected: the pre-flight check before training (the newest "
                "earlier run folder; what the newest published runs took, times the models the night may publish); "
                "the night fails early when the free space is short of that times disk_free_margin.</p>"
                + pages.disk_table(nights))
        if h is None:
            return render("Health", "<p>Nothing is published yet.</p>" + disk, db)
        if not h["computed"]:
            return render("Health", f"<p>Model run {h['run_id']} serves, but its health was not computed when it "
                                    f"published (a run published before this version): the next run has it.</p>", db)
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
                 f"{escape(str(h['end']))}); figures computed when it published, {escape(str(h['computed_at']))}. "
                 f"Users per segment: {segments}.</p>")
        return render("Health", body + disk, db)

    return app


def _describe(error: dict) -> str:
    """One validation error in words: which input, what it must be, what came."""
    where = " ".join(str(part) for part in error.get("loc", ()) if part not in ("path", "query"))
    value = error.get("input")
    shown = value if not isinstance(value, str) or len(value) <= 60 else f"{value[:60]}... ({len(value):,} characters)"
    rule = _ID_RULE if where in ("video_id", "user_id") else error.get("msg", "invalid")
    return f"{where or 'input'}: {rule}; got {shown!r}"
