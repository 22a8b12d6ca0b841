"""The Recommendations view, for real: the Airflow api-server started with the plugin, the pages
fetched with an authenticated client and their content asserted, then screenshots from headless
Chromium saved under test-artifacts/ui/."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.db.migrate import apply_migrations
from rec_models.devstack import airflow_uri
from rec_models.run import Run
from tests.conftest import END, ROOT
from tests.ui.browser import Browser, chromium_path

ARTIFACTS = ROOT / "test-artifacts" / "ui"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def recs_db(database_factory, small_world, tmp_path_factory):
    url = database_factory()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, small_world)
    config = dataclasses.replace(PipelineConfig.from_params({"top_n": 10, "mf_epochs": 5, "two_tower_epochs": 10}),
                                 run_root=str(tmp_path_factory.mktemp("runs")))
    for end in (END - timedelta(days=1), END):  # two nights, so churn has a previous run
        pipeline.run_all(Run(database_url=url, interval_end=end, config=config), ("mf", "two_tower"))
    return url


@pytest.fixture(scope="module")
def api_server(airflow_metadata, recs_db):
    port = _free_port()
    env = {**os.environ, "AIRFLOW_CONN_RECS_DB": airflow_uri(recs_db), "AIRFLOW__API__HOST": "127.0.0.1",
           "AIRFLOW__API__PORT": str(port), "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "PYTHONPATH": str(ROOT)}
    log = open(Path(env["AIRFLOW_HOME"]) / "api-server.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "api-server", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            httpx.get(f"{base}/api/v2/version", timeout=2)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"api-server did not start; see {log.name}")
            time.sleep(1)
    passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text())["admin"]
    token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}).json()["access_token"]
    yield base, token
    proc.terminate()
    proc.wait(timeout=30)


def get(api_server, path: str) -> str:
    base, token = api_server
    response = httpx.get(f"{base}/recommendations{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text[:300]
    return response.text


def test_anonymous_requests_are_refused(api_server):
    base, _ = api_server
    assert httpx.get(f"{base}/recommendations/", timeout=10).status_code == 401


def test_plugin_is_in_the_nav(api_server):
    base, token = api_server
    plugins = httpx.get(f"{base}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()["plugins"]
    views = [v for p in plugins if p["name"] == "recommendations" for v in p["external_views"]]
    assert views and views[0]["destination"] == "nav" and views[0]["url_route"] == "recommendations"


def test_model_runs_page(api_server, recs_db):
    body = get(api_server, "/")
    assert "Holdout quality per model" in body and "<svg" in body and "<polyline" in body
    assert "serving now" in body and "two_tower" in body and "mf" in body
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


def test_health_page(api_server):
    page = get(api_server, "/health")
    for label in ("Users with a list", "Active videos recommended", "Churn vs previous run", "top 1% of videos"):
        assert label in page
    assert "no previous published run" not in page  # two nights were published


@pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed")
def test_screenshots_in_a_real_browser(api_server, recs_db):
    base, token = api_server
    with psycopg.connect(recs_db) as conn:
        video_id = conn.execute("SELECT video_id FROM rec.similar_videos_current LIMIT 1").fetchone()[0]
        user_id = conn.execute("SELECT user_id FROM rec.user_recommendations_current LIMIT 1").fetchone()[0]
    browser = Browser()
    try:
        browser.set_cookie("_token", token, base)
        pages = {"model_runs": "/recommendations/", "similar_videos": f"/recommendations/videos/{video_id}",
                 "user": f"/recommendations/users/{user_id}", "health": "/recommendations/health"}
        for name, path in pages.items():
            text = browser.screenshot(base + path, ARTIFACTS / f"{name}.png")
            assert "Recommendations" in text and "Unauthorized" not in text, (name, text[:200])
            assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000
        # The view inside Airflow's own UI: nav entry and iframe.
        browser.screenshot(f"{base}/plugin/recommendations", ARTIFACTS / "airflow_nav.png", settle_s=4.0)
    finally:
        browser.close()
