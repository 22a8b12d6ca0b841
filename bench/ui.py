"""The Recommendations view at production size: every page timed over real HTTP.

    python -m bench.ui --size M [--rounds 5]          (make bench-ui SIZE=M)

The world (bench.scale's S / M / L) lives in its own database, recs_bench_ui_<size>, kept for reruns:
it is seeded, and two nights published, only when that database has no serving run yet. The nights
run the nightly pipeline's own steps with MF trained one epoch (a page's cost depends on the run's
size, not on the model's quality); the second night gives the Health page a churn to show. As the
README asks of the upstream owner, the bench creates the index user_domain_visits (user_id) that the
user page's domain lookup needs, and says so.

Then Airflow's api-server starts with the plugin (reading through the view's own role, rec_ui), an
admin logs in, and each page is fetched once to warm up and then ``rounds`` times; the median counts.
The plan of each page's queries is checked with EXPLAIN ANALYZE as the view's role. Last line:
    ui: pages <n>, slowest <page> <ms> ms at <SIZE>
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg

from bench.scale import SIZES
from rec_models import pipeline
from rec_models.config import PROJECT_ROOT, PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.data.synthetic import default_end, generate_world
from rec_models.db.connect import resolve_database_url
from rec_models.db.migrate import apply_migrations
from rec_models.stack.devstack import airflow_uri, free_port, login_token, start_api_server, ui_login_url
from rec_models.names import MF
from rec_models.run import Run

UPSTREAM_INDEX = "CREATE INDEX IF NOT EXISTS user_domain_visits_user_id_idx ON user_domain_visits (user_id)"


def prepare_world(size: str) -> str:
    """The size's database with a world and two published nights (made once, then reused)."""
    url = resolve_database_url(f"recs_bench_ui_{size.lower()}")
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT count(*) FROM rec.serving").fetchone()[0]:
            print(f"world {size}: reusing the published runs in {conn.info.dbname}", flush=True)
            return url
    spec, end = SIZES[size], default_end()
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        seed_world(conn, generate_world(spec, end), replace_foreign=True)
        conn.execute(UPSTREAM_INDEX)
        conn.commit()
    print(f"world {size}: seeded {spec.n_users:,} users, {spec.n_videos:,} videos, {spec.n_views:,} views, "
          f"{spec.n_domain_visits:,} domain visits in {time.perf_counter() - started:.0f} s; created the index the "
          f"README asks upstream for: {UPSTREAM_INDEX.split(' ON ')[1]}", flush=True)
    config = dataclasses.replace(PipelineConfig.from_params({"mf_epochs": 1, "user_shards": 1}),
                                 run_root=str(PROJECT_ROOT / "var" / "bench-ui" / size))
    for night in (end - timedelta(days=1), end):
        started = time.perf_counter()
        result = pipeline.run_all(Run(database_url=url, interval_end=night, config=config), (MF,))
        print(f"world {size}: published night {night:%Y-%m-%d} (model run {result['model_run_id']}) in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return url


def page_paths(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        video_id, title = conn.execute(
            "SELECT s.video_id, v.title FROM rec.similar_videos_current s JOIN videos v USING (video_id) "
            "WHERE s.rank = 1 ORDER BY s.video_id LIMIT 1").fetchone()
        hot, warm = (conn.execute("SELECT user_id FROM rec.user_recommendations_current WHERE segment = %s AND rank = 1 "
                                  "ORDER BY user_id LIMIT 1", (segment,)).fetchone()[0] for segment in ("hot", "warm"))
    return {"model_runs": "/", "video_search": f"/videos?q={title.split()[1]}", "similar_videos": f"/videos/{video_id}",
            "users": "/users", "user_hot": f"/users/{hot}", "user_warm": f"/users/{warm}", "health": "/health"}


def explain(ui_url: str, paths: dict[str, str]) -> None:
    """Each page's queries as the view's role: plan root and execution time."""
    from rec_models.ui import queries

    video_id = int(paths["similar_videos"].rsplit("/", 1)[1])
    user_id = int(paths["user_hot"].rsplit("/", 1)[1])
    checks = {
        "model runs": ("SELECT * FROM rec.model_runs ORDER BY data_interval_end DESC, model_name LIMIT 60", ()),
        "similar videos": ("SELECT s.*, v.title FROM rec.similar_videos_current s JOIN videos v "
                           "ON v.video_id = s.similar_video_id WHERE s.video_id = %s ORDER BY s.rank", (video_id,)),
        "user lists": ("SELECT r.*, v.title FROM rec.user_recommendations_current r JOIN videos v USING (video_id) "
                       "WHERE r.user_id = %s ORDER BY r.rank", (user_id,)),
        "user domains": ("SELECT * FROM rec.user_top_domains(%s, 10)", (user_id,)),
        "health": ("SELECT * FROM rec.serving s JOIN rec.run_health h USING (model_run_id)", ()),
    }
    with psycopg.connect(ui_url) as conn:
        assert queries.health(conn), "the view's role cannot read the health"
        for name, (query, params) in checks.items():
            plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params).fetchone()[0][0]
            print(f"  plan {name:<15} {plan['Plan']['Node Type']:<22} {plan['Execution Time']:9.2f} ms", flush=True)


def start_view(url: str, home: Path) -> tuple[subprocess.Popen, str, str]:
    """Airflow's api-server with the plugin, reading through the view's own role; an admin's token."""
    port = free_port()
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
           "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(48).hex(),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin", "AIRFLOW_CONN_RECS_DB": airflow_uri(url),
           "AIRFLOW_CONN_RECS_DB_UI": airflow_uri(ui_login_url(url, home=home)), "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = start_api_server(env, port, home / "api-server.log")
    base = f"http://127.0.0.1:{port}"
    return proc, base, login_token(base, home, "admin")


def screenshots(base: str, token: str, paths: dict[str, str], size: str) -> None:
    """The Health, model runs and a user page as a person sees them (where Debian's chromium is installed)."""
    from tests.ui.browser import Browser, chromium_path

    if chromium_path() is None:
        print("  screenshots: skipped (no chromium)", flush=True)
        return
    folder = PROJECT_ROOT / "test-artifacts" / "ui"
    browser = Browser()
    try:
        browser.set_cookie("_token", token, base)
        for name in ("health", "model_runs", "user_hot"):
            path = folder / f"bench-{size}-{name}.png"
            browser.screenshot(f"{base}/recommendations{paths[name]}", path)
            print(f"  screenshot {path.relative_to(PROJECT_ROOT)}", flush=True)
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="M", choices=sorted(SIZES))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = prepare_world(args.size)
    paths = page_paths(url)
    with tempfile.TemporaryDirectory(prefix="recs-bench-ui-") as folder:
        home = Path(folder)
        proc, base, token = start_view(url, home)
        try:
            explain(ui_login_url(url, home=home), paths)
            timings = {}
            with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
                for name, path in paths.items():
                    seconds = []
                    for attempt in range(args.rounds + 1):  # the first is a warm-up
                        started = time.perf_counter()
                        response = client.get(f"{base}/recommendations{path}")
                        elapsed = time.perf_counter() - started
                        if response.status_code != 200:
                            raise RuntimeError(f"{name} ({path}) answered {response.status_code}: {response.text[:300]}")
                        if attempt:
                            seconds.append(elapsed)
                    timings[name] = 1000 * statistics.median(seconds)
                    print(f"  page {name:<15} {path:<32} {timings[name]:9.1f} ms (median of {args.rounds})", flush=True)
            screenshots(base, token, paths, args.size)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    slowest = max(timings, key=timings.get)
    print(f"ui: pages {len(timings)}, slowest {slowest} {timings[slowest]:.0f} ms at {args.size}")


if __name__ == "__main__":
    main()
