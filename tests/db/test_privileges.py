"""Least privilege: the pipeline runs as rec_pipeline (reads sources, owns rec) and cannot write the
sources; rec_reader can only read the _current views; secrets never reach the logs."""

import dataclasses
import logging

import psycopg
import pytest

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.data.synthetic import WorldSpec, generate_world
from rec_models.db.migrate import apply_migrations
from rec_models.run import Run
from tests.conftest import END


SECRET = "pw-7f3a9c-never-log-me"


def as_role(url: str, role: str) -> str:
    # Trust auth lets the test log in as the superuser and become the role for the whole session.
    return f"{url} options='-c role={role}' password={SECRET}"


@pytest.fixture(scope="module")
def published(database_factory, tmp_path_factory):
    url = database_factory()
    apply_migrations(url)
    world = generate_world(WorldSpec(n_users=400, n_videos=100, n_views=8000, n_domain_visits=9000, seed=9), END)
    with psycopg.connect(url) as conn:
        seed_world(conn, world)
    config = dataclasses.replace(PipelineConfig.from_params({"top_n": 5, "mf_epochs": 3}),
                                 run_root=str(tmp_path_factory.mktemp("runs")))
    ctx = Run(database_url=as_role(url, "rec_pipeline"), interval_end=END, config=config)
    return url, ctx


def test_the_whole_run_works_as_the_pipeline_role(published, caplog):
    url, ctx = published
    with caplog.at_level(logging.DEBUG):
        result = pipeline.run_all(ctx, ("mf",))
    assert result["model_run_id"]
    with psycopg.connect(url) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'rec' AND tablename = %s",
                             (f"user_recommendations_r{result['model_run_id']}",)).fetchone()[0]
        assert owner == "rec_pipeline"
    assert SECRET not in caplog.text and "password" not in caplog.text
    assert SECRET not in repr(ctx)


@pytest.mark.parametrize("statement", [
    "INSERT INTO video_views VALUES (1, 1, now(), 1)",
    "DELETE FROM videos",
    "UPDATE user_domain_visits SET visits = 0",
])
def test_pipeline_cannot_write_the_sources(published, statement):
    url, _ = published
    with psycopg.connect(as_role(url, "rec_pipeline")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_reader_reads_only_the_current_views(published):
    url, ctx = published
    pipeline.run_all(ctx, ("mf",))
    with psycopg.connect(url) as admin:
        run_id = admin.execute("SELECT model_run_id FROM rec.serving LIMIT 1").fetchone()[0]
        # A staging table as the pipeline would leave it mid-publish.
        admin.execute("SET ROLE rec_pipeline")
        admin.execute("CREATE TABLE rec.similar_videos_stage_999 (LIKE rec.similar_videos)")
        admin.commit()
    with psycopg.connect(as_role(url, "rec_reader")) as conn:
        for view in ("similar_videos_current", "user_recommendations_current", "popular_videos_current"):
            assert conn.execute(f"SELECT count(*) FROM rec.{view}").fetchone()[0] > 0
        conn.commit()
        for forbidden in ("SELECT * FROM rec.user_recommendations LIMIT 1",
                          f"SELECT * FROM rec.user_recommendations_r{run_id} LIMIT 1",
                          "SELECT * FROM rec.similar_videos_stage_999",
                          "SELECT * FROM rec.rejected_rows",
                          "UPDATE rec.serving SET model_run_id = 0",
                          "DELETE FROM rec.user_recommendations_current",
                          "INSERT INTO rec.model_runs (run_key, model_name, data_interval_end) VALUES ('x', 'x', now())"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)
            conn.rollback()


def test_the_view_role_reads_what_the_view_shows_and_nothing_it_must_not(published):
    """rec_ui (the Recommendations view's role): the current views, run history and health, titles, and
    domain histories only through rec.user_top_domains; no writes, no direct read of user_domain_visits."""
    from rec_models.ui import queries

    url, run = published
    pipeline.run_all(run, ("mf",))
    with psycopg.connect(url) as admin:
        user_id, video_id = admin.execute("SELECT user_id, video_id FROM rec.user_recommendations_current "
                                          "WHERE segment = 'hot' LIMIT 1").fetchone()
        direct = admin.execute("SELECT domain, sum(visits), count(*) FROM user_domain_visits WHERE user_id = %s "
                               "GROUP BY domain ORDER BY sum(visits) DESC, domain LIMIT 10", (user_id,)).fetchall()
    with psycopg.connect(as_role(url, "rec_ui")) as conn:
        assert queries.model_runs(conn) and queries.video(conn, video_id)
        assert queries.user_recommendations(conn, user_id) and queries.similar_videos(conn, video_id)
        health = queries.health(conn)
        assert health["computed"] and health["users_served"] > 0 and queries.sample_users(conn)
        assert [tuple(r) for r in queries.user_domains(conn, user_id)] == [tuple(r) for r in direct] and direct
        conn.commit()
        for forbidden in ("SELECT * FROM user_domain_visits LIMIT 1",
                          "SELECT * FROM video_views LIMIT 1",
                          "SELECT * FROM rec.rejected_rows",
                          "SELECT * FROM rec.user_recommendations LIMIT 1",
                          "UPDATE rec.serving SET model_run_id = 0",
                          "INSERT INTO rec.run_health (model_run_id, known_users, active_videos, users_served, "
                          "videos_listed, similar_for, slots, segments, sample_users) VALUES (0,0,0,0,0,0,0,'{}','{}')",
                          "DELETE FROM videos",
                          "CREATE TABLE rec.t (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)
            conn.rollback()
    with psycopg.connect(as_role(url, "rec_reader")) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM rec.user_top_domains(%s)", (user_id,))  # downstream readers: no histories


def test_the_local_stack_creates_the_view_login(published, tmp_path):
    from rec_models.stack.devstack import ui_login_url

    url, _ = published
    login = ui_login_url(url, home=tmp_path)
    assert ui_login_url(url, home=tmp_path) == login  # idempotent: the same password next time
    with psycopg.connect(login) as conn:
        assert conn.execute("SELECT current_user, pg_has_role('rec_ui', 'member')").fetchone() == ("recs_ui", True)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM user_domain_visits LIMIT 1")


def test_the_privacy_role_files_requests_and_reads_nothing_else(published):
    """rec_privacy (upstream's privacy tooling): INSERT and SELECT on rec.erasure_requests, nothing more;
    a person with a request has no history through the view's function any more."""
    from rec_models.ui import queries

    url, run = published
    pipeline.run_all(run, ("mf",))
    with psycopg.connect(url) as admin:
        user_id = admin.execute("SELECT user_id FROM rec.user_recommendations_current WHERE segment = 'hot' "
                                "LIMIT 1").fetchone()[0]
    with psycopg.connect(as_role(url, "rec_privacy")) as conn:
        conn.execute("INSERT INTO rec.erasure_requests (user_id) VALUES (%s)", (user_id,))
        assert conn.execute("SELECT requested_by FROM rec.erasure_requests WHERE user_id = %s",
                            (user_id,)).fetchone()[0] == "rec_privacy"
        conn.commit()
        for forbidden in ("SELECT * FROM rec.user_recommendations_current LIMIT 1",
                          "SELECT * FROM rec.rejected_rows",
                          "SELECT * FROM user_domain_visits LIMIT 1",
                          "UPDATE rec.erasure_requests SET done_at = now()",
                          "DELETE FROM rec.erasure_requests"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(forbidden)
            conn.rollback()
    with psycopg.connect(as_role(url, "rec_ui")) as conn:
        assert queries.user_domains(conn, user_id) == []
    with psycopg.connect(url) as admin:
        admin.execute("DELETE FROM rec.erasure_requests")
        admin.commit()
