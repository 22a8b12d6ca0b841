"""Four nights of an evolving world through Airflow's own scheduler and LocalExecutor: the first
trains from scratch, the next two continue warm from their parents (recorded) and the third, cleared
and run again after the fourth day arrived, publishes the same rows; each measures the lists served before it against its day's
views, and a night with no views fails visibly before training while the previous runs keep serving."""

from __future__ import annotations

import psycopg
import pytest

from rec_models.data.evolving import EvolvingSpec, generate_evolving
from rec_models.data.seed import seed_days
from rec_models.data.synthetic import WorldSpec
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import night_digests
from rec_models.stack.scheduler import LocalScheduler
from tests.conftest import END

# Small and quick; a tolerance of 1 lets every candidate publish, so lineage is what is tested here.
CONF = {"top_n": 10, "mf_epochs": 8, "neumf_epochs": 4, "two_tower_epochs": 10, "quality_tolerance": 1.0,
        "user_shards": 2}


@pytest.fixture(scope="module")
def nights(database_factory, tmp_path_factory):
    recs = database_factory()
    apply_migrations(recs)
    world = generate_evolving(EvolvingSpec(
        world=WorldSpec(n_users=1000, n_videos=250, n_views=30_000, n_domain_visits=30_000, seed=13),
        nights=4, warmup_days=14, bad_nights=((4, "no_views"),)), END)
    home = tmp_path_factory.mktemp("scheduler")
    # Nights that publish under the scheduler with the deadline alert armed (far off), as deployed.
    scheduler = LocalScheduler(recs, database_factory("airflow_meta"), home / "airflow", home / "runs",
                               env={"RECS_PUBLISH_DEADLINE_MINUTES": "600"})
    results = {}
    with scheduler:
        for night in range(1, 5):
            with psycopg.connect(recs) as conn:
                seed_days(conn, world, night)
            with psycopg.connect(recs) as conn:
                serving_before = dict(conn.execute("SELECT output_name, model_run_id FROM rec.serving").fetchall())
            run_id = scheduler.trigger(world.night_end(night), CONF, f"night_{night}")
            state = scheduler.wait(run_id, timeout=900)
            results[night] = {"state": state, "tasks": scheduler.task_states(run_id), "run_id": run_id,
                              "end": world.night_end(night), "serving_before": serving_before}
        # An operator clears the warm third night after the fourth day arrived (its new videos included):
        # it runs again from the same parents on the data it saw the first time.
        before = _digests(recs, results[3]["end"])
        scheduler.clear(results[3]["run_id"])
        results[3]["rerun"] = (before, scheduler.wait(results[3]["run_id"], timeout=900),
                               _digests(recs, results[3]["end"]))
    return recs, results, home / "runs"


def _digests(recs, end):
    with psycopg.connect(recs) as conn:
        return night_digests(conn, end)


def _runs(conn, end):
    return {r[0]: r[1:] for r in conn.execute(
        "SELECT model_name, model_run_id, train_mode, parent_model_run_id, status FROM rec.model_runs "
        "WHERE data_interval_end = %s", (end,)).fetchall()}


def test_nights_warm_start_from_their_parents(nights):
    recs, results, run_root = nights
    for night in (1, 2, 3):
        assert results[night]["state"] == "success", results[night]["tasks"]
    with psycopg.connect(recs) as conn:
        first, second, third = (_runs(conn, results[n]["end"]) for n in (1, 2, 3))
        assert set(first) == {"mf", "neumf", "two_tower"}
        # publish_models=serving (the default): one model published a night, the others kept as
        # candidates; every model continues from its own previous run all the same.
        for runs in (first, second, third):
            assert sorted(status for *_, status in runs.values()) == ["candidate", "candidate", "published"], runs
        for model in first:
            assert first[model][1:3] == ("full", None), model
            assert second[model][1:3] == ("warm", first[model][0]), model
            assert third[model][1:3] == ("warm", second[model][0]), model
        # The newest nights (keep_run_folders 3: nights 2 to 4) keep every checkpoint; night 1's folder
        # keeps its published run's only (each model's latest accepted run is a newer night's).
        published_first = {model for model, (*_, status) in first.items() if status == "published"}
        for night in (1, 2, 3):
            slug = results[night]["end"].strftime("%Y-%m-%dT%H%M%SZ")
            assert {p.name for p in (run_root / slug / "checkpoints").iterdir()} == (
                published_first if night == 1 else {"mf", "neumf", "two_tower"}), night


def test_a_cleared_warm_night_reruns_to_the_same_rows(nights):
    before, state, after = nights[1][3]["rerun"]
    assert state == "success"
    assert len(before) == 1 and after == before  # the serving model's run
    assert all(mode == "warm" and rows["user_recommendations"][0] > 0 for mode, _, rows in before.values())


def test_each_night_measures_what_served_before_it(nights):
    recs, results, _ = nights
    with psycopg.connect(recs) as conn:
        for night in (2, 3):
            rows = conn.execute(
                "SELECT m.model_name, m.data_interval_end, n.value FROM rec.next_day_metrics n "
                "JOIN rec.model_runs m USING (model_run_id) WHERE n.run_key = %s AND n.ranker = 'model' "
                "AND n.segment = 'all' AND n.metric = 'ndcg@10'", (results[night]["end"].isoformat(),)).fetchall()
            assert len(rows) == 1, night  # the serving model's lists: the only ones published
            assert {r[1] for r in rows} == {results[night - 1]["end"]}  # yesterday's run
            assert all(0 < r[2] <= 1 for r in rows)
        assert conn.execute("SELECT count(*) FROM rec.next_day_metrics WHERE run_key = %s",
                            (results[1]["end"].isoformat(),)).fetchone()[0] == 0  # nothing served before night 1


def test_a_night_without_views_fails_before_training_and_keeps_serving(nights):
    recs, results, _ = nights
    bad = results[4]
    assert bad["state"] == "failed"
    assert bad["tasks"]["check_interval"] == "failed" and bad["tasks"]["next_day_metrics"] == "success"
    assert all(bad["tasks"][f"train_{m}"] == "upstream_failed" for m in ("mf", "neumf", "two_tower"))
    with psycopg.connect(recs) as conn:
        assert conn.execute("SELECT trained, reason, views_in_interval FROM rec.night_checks WHERE run_key = %s",
                            (bad["end"].isoformat(),)).fetchone() == (False, "no views in the interval: upstream data late?", 0)
        assert not _runs(conn, bad["end"])  # nothing trained, nothing recorded as a candidate
        serving = dict(conn.execute("SELECT output_name, model_run_id FROM rec.serving").fetchall())
    assert serving == bad["serving_before"] and serving
