import psycopg
import pytest

from rec_models.data.seed import SourcesNotOursError, seed_world



def test_seed_is_idempotent_and_exact(fresh_db, small_world):
    with psycopg.connect(fresh_db) as conn:
        assert seed_world(conn, small_world) is True
        assert seed_world(conn, small_world) is False  # same world: nothing to do, no duplicates
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM videos), (SELECT count(*) FROM video_views), (SELECT count(*) FROM user_domain_visits)"
        ).fetchone()
        assert counts == (len(small_world.video_id), len(small_world.view_user), len(small_world.visit_user))
        title, tags = conn.execute("SELECT title, tags FROM videos WHERE video_id = %s", (int(small_world.video_id[0]),)).fetchone()
        assert title == small_world.title[0] and tags == small_world.tags[0]
        first_view = conn.execute(
            "SELECT extract(epoch FROM viewed_at)::int8 FROM video_views WHERE user_id = %s AND video_id = %s ORDER BY 1 LIMIT 1",
            (int(small_world.view_user[0]), int(small_world.view_video[0]))).fetchone()[0]
        assert first_view <= int(small_world.viewed_at[0])


def test_seed_refuses_to_overwrite_foreign_sources(fresh_db, small_world):
    with psycopg.connect(fresh_db) as conn:
        conn.execute("INSERT INTO videos (video_id, title) VALUES (1, 'somebody else''s video')")
        conn.commit()
        with pytest.raises(SourcesNotOursError, match="videos"):
            seed_world(conn, small_world)
        assert conn.execute("SELECT title FROM videos").fetchall() == [("somebody else's video",)]
