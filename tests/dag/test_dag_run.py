"""A real in-process DAG run (dag.test) against PostgreSQL, then the same logical date again."""

from __future__ import annotations

import os
from datetime import timedelta

import psycopg
import pytest

from rec_models.data.seed import seed_world
from rec_models.db.migrate import apply_migrations
from rec_models.stack.devstack import airflow_uri
from tests.conftest import END, ROOT



@pytest.fixture(scope="module")
def recs_db(database_factory, small_world):
    url = database_factory()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, small_world)
    os.environ["AIRFLOW_CONN_RECS_DB"] = airflow_uri(url)
    yield url
    os.environ.pop("AIRFLOW_CONN_RECS_DB", None)


@pytest.fixture(scope="module")
def dag(airflow_metadata):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags")).dags["nightly_recommendations"]


def _run(dag):
    dag_run = dag.test(logical_date=END, run_conf={"top_n": 10, "mf_epochs": 15, "neumf_epochs": 8,
                                                   "two_tower_epochs": 10})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return dag_run, states


def test_dag_run_publishes_and_rerun_is_idempotent(dag, recs_db):
    """publish_models=serving (the default): every model trains and is evaluated; only the one chosen to
    serve is scored and published, the others' user scoring maps over no shards (skipped) and their
    publish steps record them as kept candidates."""
    dag_run, states = _run(dag)
    assert str(dag_run.state) == "success", states
    with psycopg.connect(recs_db) as conn:
        runs = conn.execute("SELECT model_name, status, dag_run_id, data_interval_start, data_interval_end, "
                            "accepted_at IS NOT NULL, status_reason FROM rec.model_runs ORDER BY model_name").fetchall()
        assert [r[0] for r in runs] == ["mf", "neumf", "two_tower"]  # all three ran and were recorded
        serving = conn.execute("SELECT m.model_name FROM rec.serving s JOIN rec.model_runs m USING (model_run_id) "
                               "WHERE s.output_name = 'user_recommendations'").fetchone()[0]
        for model, status, dag_run_id, start, end, accepted, reason in runs:
            assert accepted and dag_run_id == dag_run.run_id, model
            if model == serving:
                assert status == "published", (model, reason)
            else:
                assert status == "candidate" and "kept as a candidate" in reason, (model, reason)
            assert end == END and start == END - timedelta(days=1)  # the cron interval ending at END
    kept = {m for m in ("mf", "neumf", "two_tower") if m != serving}
    assert {t for t, state in states.items() if state != "success"} == {f"score_users_{m}" for m in kept}, states
    assert all(states[f"score_users_{m}"] == "skipped" for m in kept)
    with psycopg.connect(recs_db) as conn:
        first = conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations_current "
                             "ORDER BY user_id, rank").fetchall()
        assert first and max(r[1] for r in first) == 10  # the top_n param reached the task
        assert {r[4] for r in first} >= {"hot", "warm"}  # domain-only users were served

    dag_run_2, states_2 = _run(dag)
    assert str(dag_run_2.state) == "success", states_2
    with psycopg.connect(recs_db) as conn:
        assert conn.execute("SELECT count(*) FROM rec.model_runs").fetchone()[0] == 3
        again = conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations_current "
                             "ORDER BY user_id, rank").fetchall()
        assert again == first
        assert conn.execute("SELECT count(*) FROM rec.user_recommendations_current").fetchone()[0] == len(first)
        assert {r[0] for r in conn.execute("SELECT dag_run_id FROM rec.model_runs")} == {dag_run_2.run_id}


def test_a_rejected_model_does_not_hold_back_the_others(dag, recs_db):
    """The gate rejects mf (its published run, recorded with NDCG@10 1.0 and no checkpoint, cannot be
    beaten): its user scoring maps over no shards and is skipped, yet its publish step records that it
    did not publish, and the other models' runs are chosen to serve."""
    with psycopg.connect(recs_db) as conn:
        conn.execute("INSERT INTO rec.model_runs (run_key, model_name, data_interval_end, metrics, status, published_at) "
                     "VALUES ('unbeatable', 'mf', %s, '{\"ndcg@10\": 1.0}', 'published', now() + interval '1 hour')",
                     (END - timedelta(days=3),))
        conn.commit()
    dag_run, states = _run(dag)
    assert str(dag_run.state) == "success", states
    assert states["score_users_mf"] == "skipped" and states["publish_mf"] == "success", states
    assert states["choose_serving"] == "success" and states["summary"] == "success", states
    with psycopg.connect(recs_db) as conn:
        mf_status, mf_reason = conn.execute("SELECT status, status_reason FROM rec.model_runs WHERE model_name = 'mf' "
                                            "AND run_key <> 'unbeatable'").fetchone()
        assert mf_status == "rejected" and "on its own holdout" in mf_reason
        serving = conn.execute("SELECT m.model_name, m.data_interval_end FROM rec.serving s "
                               "JOIN rec.model_runs m USING (model_run_id) WHERE s.output_name = 'user_recommendations'"
                               ).fetchone()
        assert serving == ("two_tower", END)


def test_the_erasure_dag_files_a_request_and_carries_it_out(dag, recs_db):
    """The on-demand DAG an operator triggers for an urgent request: its ``users`` param is filed, then
    every open request is carried out through the same step the nights start with."""
    from airflow.dag_processing.dagbag import DagBag

    erase = DagBag(dag_folder=str(ROOT / "dags")).dags["erase_personal_data"]
    with psycopg.connect(recs_db) as conn:
        user = conn.execute("SELECT user_id FROM rec.user_recommendations_current WHERE segment = 'hot' "
                            "LIMIT 1").fetchone()[0]
    dag_run = erase.test(run_conf={"users": [user]})
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert str(dag_run.state) == "success" and set(states.values()) == {"success"}, states
    with psycopg.connect(recs_db) as conn:
        done_at, requested_by, removed = conn.execute(
            "SELECT done_at, requested_by, removed FROM rec.erasure_requests WHERE user_id = %s", (user,)).fetchone()
        assert done_at is not None and requested_by == f"airflow:{dag_run.run_id}"
        assert removed["published lists (current and kept partitions)"] > 0 and removed["checkpoints"] > 0
        assert conn.execute("SELECT count(*) FROM rec.user_recommendations WHERE user_id = %s",
                            (user,)).fetchone()[0] == 0
