"""The Recommendations view, for real: the Airflow api-server started with the plugin, the pages
fetched with an authenticated client and their content asserted, then screenshots from headless
Chromium saved under test-artifacts/ui/."""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.db.migrate import apply_migrations
from rec_models.stack.devstack import airflow_uri, free_port, login_token, start_api_server, ui_login_url
from rec_models.run import Run
from tests.conftest import END, ROOT
from tests.ui.browser import Browser, chromium_path

ARTIFACTS = ROOT / "test-artifacts" / "ui"


@pytest.fixture(scope="module")
def recs_db(database_factory, small_world, tmp_path_factory):
    url = database_factory()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, small_world)
    # Both models published every night: the view compares models side by side.
    config = dataclasses.replace(PipelineConfig.from_params({"top_n": 10, "mf_epochs": 5, "two_tower_epochs": 10,
                                                             "publish_models": "all"}),
                                 run_root=str(tmp_path_factory.mktemp("runs")))
    # Three nights: churn has a previous run, next-day metrics a line of two nights.
    for end in (END - timedelta(days=2), END - timedelta(days=1), END):
        pipeline.run_all(Run(database_url=url, interval_end=end, config=config), ("mf", "two_tower"))
    return url


# Two Airflow users: an admin, who may see browsing histories, and a viewer, who may not.
USERS = {"admin": "admin", "analyst": "viewer"}


@pytest.fixture(scope="module")
def api_server(airflow_metadata, recs_db, tmp_path_factory):
    port = free_port()
    env = {**os.environ, "AIRFLOW_CONN_RECS_DB": airflow_uri(recs_db),
           "AIRFLOW_CONN_RECS_DB_UI": airflow_uri(ui_login_url(recs_db, home=tmp_path_factory.mktemp("ui-login"))),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
           "PYTHONPATH": str(ROOT)}
    home = Path(env["AIRFLOW_HOME"])
    proc = start_api_server(env, port, home / "api-server.log")
    base = f"http://127.0.0.1:{port}"
    tokens = {user: login_token(base, home, user) for user in USERS}
    yield base, tokens["admin"], tokens
    proc.terminate()
    proc.wait(timeout=30)


def fetch(api_server, path: str, user: str = "admin") -> httpx.Response:
    base, _, tokens = api_server
    return httpx.get(f"{base}/recommendations{path}", headers={"Authorization": f"Bearer {tokens[user]}"}, timeout=30)


def get(api_server, path: str, user: str = "admin") -> str:
    response = fetch(api_server, path, user)
    assert response.status_code == 200, response.text[:300]
    return response.text


def test_anonymous_requests_are_refused(api_server):
    base, _, _ = api_server
    assert httpx.get(f"{base}/recommendations/", timeout=10).status_code == 401


def test_plugin_is_in_the_nav(api_server):
    base, token, _ = api_server
    plugins = httpx.get(f"{base}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()["plugins"]
    views = [v for p in plugins if p["name"] == "recommendations" for v in p["external_views"]]
    assert views and views[0]["destination"] == "nav" and views[0]["url_route"] == "recommendations"


def test_model_runs_page(api_server, recs_db):
    body = get(api_server, "/")
    assert "Quality per model: holdout, and the next day" in body and "<svg" in body and "<polyline" in body
    # Next day: each model's published lists against the following day's views, popularity alongside.
    assert "ndcg@10 (next day)" in body and "popularity" in body
    with psycopg.connect(recs_db) as conn:
        next_day = conn.execute("SELECT n.value FROM rec.next_day_metrics n JOIN rec.model_runs m USING (model_run_id) "
                                "WHERE m.model_name = 'two_tower' AND n.ranker = 'model' AND n.segment = 'all' "
                                "AND n.metric = 'ndcg@10' ORDER BY n.run_key DESC LIMIT 1").fetchone()[0]
    assert f"{next_day:.4f}" in body
    assert "<td>full</td>" in body and "<td>warm</td>" in body  # how each run was trained
    assert "serving now" in body and "two_tower" in body and "mf" in body
    # Charts with axes: dated x ticks, value ticks from 0, exact values on hover, the serving run ringed.
    assert "data interval end (UTC)" in body and f">{(END - timedelta(days=1)):%Y-%m-%d}<" in body
    assert "text-anchor='end'>0<" in body and ": ndcg@10 0." in body and "(serving now)</title>" in body
    # The run serving now has no next day yet: only the holdout chart rings it and says so in its legend.
    assert body.count(">serving now</text>") == 1
    assert "is not set" not in body  # the view reads through its own connection: no warning
    with psycopg.connect(recs_db) as conn:
        ndcg = conn.execute("SELECT (metrics->>'ndcg@10')::float8 FROM rec.model_runs ORDER BY model_run_id LIMIT 1").fetchone()[0]
    assert f"{ndcg:.4f}" in body


def test_similar_videos_pages(api_server, recs_db):
    with psycopg.connect(recs_db) as conn:
        video_id, title = conn.execute(
            "SELECT s.video_id, v.title FROM rec.similar_videos_current s JOIN videos v USING (video_id) LIMIT 1").fetchone()
        first_title, first_score = conn.execute(
            "SELECT v.title, s.score FROM rec.similar_videos_current s JOIN videos v ON v.video_id = s.similar_video_id "
            "WHERE s.video_id = %s AND s.rank = 1", (video_id,)).fetchone()
    word = title.split()[1]
    assert f"/videos/{video_id}" in get(api_server, f"/videos?q={word}") or word in get(api_server, f"/videos?q={word}")
    assert title in get(api_server, f"/videos?q={video_id}")
    page = get(api_server, f"/videos/{video_id}")
    assert "Most similar videos" in page and first_title in page and f"score {first_score:.3f}" in page


def test_user_page(api_server, recs_db):
    with psycopg.connect(recs_db) as conn:
        user_id = conn.execute("SELECT user_id FROM rec.user_recommendations_current WHERE segment = 'hot' LIMIT 1").fetchone()[0]
        domain = conn.execute("SELECT domain FROM user_domain_visits WHERE user_id = %s GROUP BY domain "
                              "ORDER BY sum(visits) DESC, domain LIMIT 1", (user_id,)).fetchone()[0]
    page = get(api_server, f"/users/{user_id}")
    assert "Top domains" in page and domain in page and "Recommended videos" in page and "#1" in page
    assert "unknown: served the popular list" in get(api_server, "/users/999999999")


def test_browsing_histories_are_shown_only_to_roles_granted_them(api_server, recs_db):
    """Personal data: the viewer sees the user's recommendations and segment, not their domains."""
    with psycopg.connect(recs_db) as conn:
        user_id = conn.execute("SELECT user_id FROM rec.user_recommendations_current WHERE segment = 'hot' LIMIT 1").fetchone()[0]
        domains = [r[0] for r in conn.execute("SELECT DISTINCT domain FROM user_domain_visits WHERE user_id = %s",
                                              (user_id,))]
    admin, viewer = get(api_server, f"/users/{user_id}", "admin"), get(api_server, f"/users/{user_id}", "analyst")
    assert any(d in admin for d in domains)
    assert "Browsing history is hidden" in viewer and not any(d in viewer for d in domains)
    assert "Recommended videos" in viewer and "#1" in viewer and "hot" in viewer


def test_health_page(api_server):
    page = get(api_server, "/health")
    for label in ("Users with a list", "Active videos recommended", "Churn vs previous run", "top 1% of videos"):
        assert label in page
    assert "no previous published run" not in page  # two nights were published
    # Each night's expected bytes (the pre-flight check) next to what it took: three nights, the first
    # with nothing to expect from.
    disk = page[page.index("Disk per night"):]
    assert disk.count("<tr>") == 4 and disk.count(" MB</td>") >= 3 * 3, disk


@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_screenshots_in_a_real_browser(api_server, recs_db):
    base, token, tokens = api_server
    with psycopg.connect(recs_db) as conn:
        video_id = conn.execute("SELECT video_id FROM rec.similar_videos_current LIMIT 1").fetchone()[0]
        user_id = conn.execute("SELECT user_id FROM rec.user_recommendations_current LIMIT 1").fetchone()[0]
    browser = Browser()
    try:
        browser.set_cookie("_token", token, base)
        pages = {"model_runs": "/recommendations/", "similar_videos": f"/recommendations/videos/{video_id}",
                 "user": f"/recommendations/users/{user_id}", "health": "/recommendations/health",
                 "bad_input": "/recommendations/users/-1"}
        for name, path in pages.items():
            text = browser.screenshot(base + path, ARTIFACTS / f"{name}.png")
            assert "Recommendations" in text and "Unauthorized" not in text, (name, text[:200])
            assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000
        browser.set_cookie("_token", tokens["analyst"], base)
        text = browser.screenshot(base + f"/recommendations/users/{user_id}", ARTIFACTS / "user_as_viewer.png")
        assert "Browsing history is hidden" in text
        browser.set_cookie("_token", token, base)
        # The view inside Airflow's own UI: nav entry and iframe.
        browser.screenshot(f"{base}/plugin/recommendations", ARTIFACTS / "airflow_nav.png", settle_s=4.0)
    finally:
        browser.close()


BAD_VALUES = ["-1", "0", "99999999999999999999999", "9223372036854775808", "abc", "1.5", "\u0661\u0662",
              "x" * 10_000, "' OR 1=1 --", "<script>alert(1)</script>", "%_%", "1; DROP TABLE videos"]


@pytest.mark.parametrize("route", ["/videos/{}", "/users/{}", "/videos?q={}", "/users?q={}"])
def test_bad_input_gets_a_clear_4xx_page_on_every_route(api_server, route):
    """Never a 500, a stack trace or a raw JSON error; nothing echoed unescaped. Ids out of range or not
    whole numbers are refused with the rule; a search for any text is answered (wildcards literally)."""
    for value in BAD_VALUES:
        response = fetch(api_server, route.format(quote(value, safe="")))
        body = response.text
        assert response.status_code < 500, (route, value[:40], response.status_code)
        assert response.headers["content-type"].startswith("text/html"), (route, value[:40], body[:200])
        assert "Traceback" not in body and '{"detail"' not in body
        assert "<script>alert(1)</script>" not in body
        if route.startswith("/videos?q=") and len(value) <= 200:  # free text: searched, never an error
            assert response.status_code == 200, (value, body[-300:])
            if value in ("%_%", "<script>alert(1)</script>", "' OR 1=1 --"):
                assert "No video matches" in body, value  # taken literally: no title contains it
        else:
            assert 400 <= response.status_code < 500, (route, value[:40], response.status_code)
            # (a value with "/" in it splits the path: no such page, which also says what an id is)
            assert "whole number from 1 to 9223372036854775807" in body or "should have at most" in body, \
                (route, value[:40], body[-400:])
    missing = fetch(api_server, "/no-such-page")
    assert missing.status_code == 404 and "No such page: /recommendations/no-such-page" in missing.text


def test_a_missing_view_connection_falls_back_with_a_warning(monkeypatch, recs_db):
    """Without recs_db_ui the view reads through recs_db and says so on every page."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("recommendations_view", ROOT / "plugins" / "recommendations_view.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    monkeypatch.setenv("AIRFLOW_CONN_RECS_DB", airflow_uri(recs_db))
    monkeypatch.delenv("AIRFLOW_CONN_RECS_DB_UI", raising=False)
    fallback = plugin._database()
    assert "recs_db_ui is not set" in fallback.warning and "recs_db" in fallback.warning
    monkeypatch.setenv("AIRFLOW_CONN_RECS_DB_UI", airflow_uri(recs_db))
    assert plugin._database().warning is None
