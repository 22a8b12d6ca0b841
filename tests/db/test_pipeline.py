"""The whole nightly run through the pipeline functions (no Airflow), then the output contracts."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import timedelta

import numpy as np
import psycopg
import pytest

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.names import MODEL_NAMES
from rec_models.run import Run
from tests.conftest import END, ROOT

TOP_N = 10


def run_all(run: Run) -> dict:
    return pipeline.run_all(run)


@pytest.fixture(scope="module")
def published(database_factory, small_world, tmp_path_factory):
    url = database_factory()
    with psycopg.connect(url) as conn:
        from rec_models.db.migrate import apply_migrations

        apply_migrations(url)
        seed_world(conn, small_world)
        # New videos, known only by their content: copies of existing videos' text under new ids,
        # published in the night's last hour.
        conn.execute("INSERT INTO videos (video_id, title, description, tags, published_at, is_active) "
                     "SELECT video_id + 900000, 'New: ' || title, description, tags, %s, true "
                     "FROM videos WHERE is_active ORDER BY video_id LIMIT 12", (END - timedelta(hours=1),))
        conn.commit()
    # Every model published: the output contracts below hold for each (the default publishes the serving one).
    config = PipelineConfig.from_params({"top_n": TOP_N, "mf_epochs": 20, "neumf_epochs": 10, "two_tower_epochs": 15,
                                         "publish_models": "all"})
    config = dataclasses.replace(config, run_root=str(tmp_path_factory.mktemp("runs")))
    run = Run(database_url=url, interval_end=END, dag_run_id="test", config=config)
    result = run_all(run)
    return url, run, result


def test_every_model_is_recorded_and_the_best_dot_product_model_serves(published):
    url, run, result = published
    assert {name for name, p in result["published"].items() if p["published"]} == {"mf", "neumf", "two_tower"}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT model_name, model_run_id, status, metrics, n_users, n_train_rows "
                            "FROM rec.model_runs").fetchall()
        assert {r[0] for r in rows} == {"mf", "neumf", "two_tower"}
        for name, _, status, metrics, n_users, n_train in rows:
            assert status == "published"
            assert metrics["ndcg@10"] > metrics["baseline_popularity"]["ndcg@10"], name
            assert n_users > 0 and n_train > 0
        by_name = {r[0]: r for r in rows}
        best = max(("mf", "two_tower"), key=lambda m: by_name[m][3]["ndcg@10"])
        assert result["serving"] == best
        serving = dict(conn.execute("SELECT output_name, model_run_id FROM rec.serving").fetchall())
        assert set(serving.values()) == {by_name[best][1]}
        # Domain-only users reach most of the recall the same users get with their views known.
        tt = by_name["two_tower"][3]
        assert tt["domains_only"]["recall@10"] >= 0.8 * tt["recall@10"]


def test_domain_only_users_are_served_by_the_recorded_choice_in_their_planted_topic(published, small_world):
    """Each model run records who serves its domain-only users (the best domain-only holdout NDCG@10
    among the candidates, none served before) and the warm segment is theirs; their lists hold their
    planted topic far above chance."""
    url, run, result = published
    candidates = {"domain_ridge", "feature_popularity", "two_tower"}
    with psycopg.connect(url) as conn:
        choices = dict(conn.execute("SELECT model_name, metrics->'warm' FROM rec.model_runs").fetchall())
        tower = conn.execute("SELECT (metrics->'domains_only'->>'ndcg@10')::float8 FROM rec.model_runs "
                             "WHERE model_name = 'two_tower'").fetchone()[0]
        rows = conn.execute("SELECT user_id, video_id FROM rec.user_recommendations_current "
                            "WHERE segment = 'warm' AND rank <= 10").fetchall()
    for model, choice in choices.items():
        assert choice["model"] in candidates and choice["reason"] and choice["ndcg@10"] > 0, model
    fallbacks = {name: run.files.read_baseline(name)["ndcg@10"] for name in ("domain_ridge", "feature_popularity")}
    best_possible = max([*fallbacks.values(), tower])
    assert all(c["ndcg@10"] == best_possible for c in choices.values())
    assert all(c["candidates"] == {**fallbacks, "two_tower": tower} for c in choices.values())
    without_views = set(small_world.user_id.tolist()) - set(small_world.view_user.tolist())
    assert rows and {u for u, _ in rows} <= without_views
    topic_of_user = dict(zip(small_world.user_id.tolist(), small_world.user_topic_pref.argmax(1).tolist()))
    topic_of_video = dict(zip(small_world.video_id.tolist(), small_world.video_topic.tolist()))
    in_topic = np.mean([topic_of_video.get(v) == topic_of_user[u] for u, v in rows])
    assert in_topic > 3 / small_world.spec.n_topics


def test_similar_videos_contract(published, small_world):
    url, _, result = published
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT video_id, rank, similar_video_id, score FROM rec.similar_videos_current "
                            "ORDER BY video_id, rank").fetchall()
        watched_active = {r[0] for r in conn.execute(
            "SELECT DISTINCT w.video_id FROM video_views w JOIN videos v USING (video_id) WHERE v.is_active")}
        active = {r[0] for r in conn.execute("SELECT video_id FROM videos WHERE is_active")}
    by_video: dict[int, list] = {}
    for video, rank, other, score in rows:
        by_video.setdefault(video, []).append((rank, other, score))
    new_videos = {v for v in active if v > 900000}
    assert new_videos and set(by_video) == watched_active | new_videos  # every active video has neighbours
    topic = dict(zip(small_world.video_id.tolist(), small_world.video_topic.tolist()))
    topic.update({v: topic[v - 900000] for v in new_videos})
    new_same = [topic[v] == topic[o] for v in new_videos for _, o, _ in by_video[v]]
    assert np.mean(new_same) > 0.6, np.mean(new_same)  # placed by content alone
    same_topic = []
    for video, items in by_video.items():
        assert len(items) == TOP_N
        assert [r for r, _, _ in items] == list(range(1, TOP_N + 1))
        scores = [s for _, _, s in items]
        assert all(a >= b for a, b in zip(scores, scores[1:]))
        assert video not in {o for _, o, _ in items}
        assert {o for _, o, _ in items} <= active  # never an inactive video
        same_topic.extend(topic[video] == topic[o] for _, o, _ in items)
    chance = 1 / small_world.spec.n_topics
    assert np.mean(same_topic) > 5 * chance, np.mean(same_topic)


def test_user_recommendations_contract(published, small_world):
    url, _, _ = published
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations_current "
                            "ORDER BY user_id, rank").fetchall()
        watched = set(conn.execute("SELECT user_id, video_id FROM video_views").fetchall())
        users_with_views = {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM video_views")}
        all_users = users_with_views | {r[0] for r in conn.execute("SELECT DISTINCT user_id FROM user_domain_visits")}
    by_user: dict[int, list] = {}
    for user, rank, video, score, segment in rows:
        by_user.setdefault(user, []).append((rank, video, score, segment))
        assert (user, video) not in watched  # no already-watched video by default
    assert set(by_user) == all_users
    for user, items in by_user.items():
        assert [r for r, *_ in items] == list(range(1, len(items) + 1))
        assert len({s for *_, s in items}) == 1
        scores = [s for _, _, s, _ in items]
        assert all(a >= b for a, b in zip(scores, scores[1:]))
        expected_segment = "hot" if user in users_with_views else "warm"
        assert items[0][3] == expected_segment
    domain_only = set(small_world.user_id[small_world.domain_only_user].tolist()) & all_users
    assert domain_only and all(by_user[u][0][3] == "warm" for u in domain_only)


def test_current_views_show_exactly_one_run(published):
    url, _, _ = published
    with psycopg.connect(url) as conn:
        for view in ("similar_videos_current", "user_recommendations_current", "popular_videos_current"):
            assert conn.execute(f"SELECT count(DISTINCT model_run_id) FROM rec.{view}").fetchone()[0] == 1


def test_rerun_of_the_same_interval_replaces_not_duplicates(published):
    url, run, first = published
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations_current "
                              "ORDER BY user_id, rank").fetchall()
        similar_before = conn.execute("SELECT * FROM rec.similar_videos_current ORDER BY video_id, rank").fetchall()
    again = run_all(run)
    assert {m: p["model_run_id"] for m, p in again["published"].items()} == \
        {m: p["model_run_id"] for m, p in first["published"].items()}
    with psycopg.connect(url) as conn:
        after = conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations_current "
                             "ORDER BY user_id, rank").fetchall()
        assert after == before  # same data, same seed: identical rows
        assert conn.execute("SELECT * FROM rec.similar_videos_current ORDER BY video_id, rank").fetchall() == similar_before
        assert conn.execute("SELECT count(*) FROM rec.model_runs").fetchone()[0] == 3
        served = conn.execute("SELECT model_run_id FROM rec.serving WHERE output_name = 'user_recommendations'").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM rec.user_recommendations WHERE model_run_id = %s",
                            (served,)).fetchone()[0] == len(before)
        leftovers = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'rec' AND tablename LIKE '%%_stage_%%'").fetchone()[0]
        assert leftovers == 0


@pytest.mark.parametrize("query_file", sorted(p.name for p in (ROOT / "sql" / "queries").glob("*.sql")))
def test_example_downstream_queries_run(published, query_file):
    url, _, _ = published
    text = (ROOT / "sql" / "queries" / query_file).read_text()
    with psycopg.connect(url) as conn:
        some_video = conn.execute("SELECT video_id FROM rec.similar_videos_current LIMIT 1").fetchone()[0]
        some_user = conn.execute("SELECT user_id FROM rec.user_recommendations_current LIMIT 1").fetchone()[0]
        if query_file == "erasure_requests.sql":  # one request to list, rolled back below
            conn.execute("INSERT INTO rec.erasure_requests (user_id, requested_by) VALUES (%s, 'test')", (some_user,))
        cur = psycopg.RawCursor(conn)
        params = {"similar_videos_for_video.sql": (some_video,), "recommendations_for_user.sql": (some_user,)}.get(query_file)
        cur.execute(text, params)
        rows = cur.fetchall()
        assert rows, f"{query_file} returned nothing"
        if query_file == "recommendations_for_user.sql":
            cur.execute(text, (-1,))  # unknown user: the popular fallback
            fallback = cur.fetchall()
            assert fallback and {r[4] for r in fallback} == {"unknown"}
        conn.rollback()


def test_sharded_scoring_equals_unsharded_row_for_row(published, tmp_path):
    """The serving model's user lists scored in 3 shards (as 3 mapped tasks would) and published again
    equal the unsharded rows. The run's trained models are reused (a copy of its folder), not retrained."""
    url, run, result = published
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations_current "
                              "ORDER BY user_id, rank").fetchall()
    sharded = dataclasses.replace(run, config=dataclasses.replace(run.config, user_shards=3, run_root=str(tmp_path)))
    shutil.copytree(run.files.path, sharded.files.path)
    serving = result["serving"]
    evaluations = [sharded.files.read_evaluation(name) for name in MODEL_NAMES]
    assert pipeline.score(sharded, serving, evaluations)["shards"] == 3
    assert pipeline.publish(sharded, serving, evaluations)["published"]
    assert pipeline.choose_serving(sharded, evaluations)["model_run_id"] == result["model_run_id"]
    assert len(list(sharded.files.scores_dir(serving).glob("users_*"))) == 3
    with psycopg.connect(url) as conn:
        after = conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations_current "
                             "ORDER BY user_id, rank").fetchall()
    assert after == before


def test_each_published_run_has_its_health_computed_at_publish(published):
    url, _, result = published
    with psycopg.connect(url) as conn:
        for name, outcome in result["published"].items():
            run_id = outcome["model_run_id"]
            users, videos, slots = conn.execute(
                "SELECT count(DISTINCT user_id), count(DISTINCT video_id), count(*) FROM rec.user_recommendations "
                "WHERE model_run_id = %s", (run_id,)).fetchone()
            health = conn.execute("SELECT users_served, videos_listed, slots, known_users, active_videos, segments, "
                                  "sample_users, previous_run_id, churn FROM rec.run_health WHERE model_run_id = %s",
                                  (run_id,)).fetchone()
            assert health is not None, name
            served, listed, n_slots, known, active, segments, samples, previous, churn = health
            assert (served, listed, n_slots) == (users, videos, slots), name
            assert known >= served and active > 0 and sum(segments.values()) == served
            assert set(samples) == set(segments) and previous is None and churn is None  # the first night
            segment_of = dict(conn.execute("SELECT DISTINCT user_id, segment FROM rec.user_recommendations "
                                           "WHERE model_run_id = %s", (run_id,)).fetchall())
            assert all(segment_of[user] == segment for segment, user in samples.items())
