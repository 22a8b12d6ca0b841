import psycopg
import pytest

from rec_models.db.migrate import apply_migrations, migration_files



def test_migrations_apply_twice_and_are_recorded(database_factory):
    url = database_factory()
    first = apply_migrations(url)
    assert first == [p.name for p in migration_files()]
    assert apply_migrations(url) == []
    with psycopg.connect(url) as conn:
        recorded = [r[0] for r in conn.execute("SELECT name FROM public.rec_schema_migrations ORDER BY version")]
        assert recorded == first
        views = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'rec'")}
        assert {"similar_videos_current", "user_recommendations_current", "popular_videos_current"} <= views


def test_badly_named_migration_is_refused(tmp_path):
    (tmp_path / "001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "2_bad.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="2_bad.sql"):
        migration_files(tmp_path)


def test_failed_migration_leaves_nothing_half_applied(database_factory, tmp_path):
    url = database_factory()
    (tmp_path / "001_good.sql").write_text("CREATE TABLE t_good (x int);")
    (tmp_path / "002_broken.sql").write_text("CREATE TABLE t_half (x int); SELECT no_such_function();")
    with pytest.raises(psycopg.Error):
        apply_migrations(url, tmp_path)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('t_good') IS NOT NULL, to_regclass('t_half') IS NULL").fetchone() == (True, True)
        assert [r[0] for r in conn.execute("SELECT version FROM public.rec_schema_migrations")] == ["001"]


def test_a_model_run_status_is_one_the_pipeline_writes(fresh_db):
    """'failed' was allowed but never written (migration 004 drops it): only written statuses remain."""
    with psycopg.connect(fresh_db) as conn:
        conn.execute("INSERT INTO rec.model_runs (run_key, model_name, data_interval_end, status) "
                     "VALUES ('k', 'mf', now(), 'rejected')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO rec.model_runs (run_key, model_name, data_interval_end, status) "
                         "VALUES ('k2', 'mf', now(), 'failed')")
