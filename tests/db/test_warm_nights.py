"""Warm nights against PostgreSQL, in-process: a rerun of a warm night reproduces its rows, an
unusable checkpoint is one log line and a full retrain, a partial day is not trained on, and the
gate scores the published run on tonight's holdout."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

import psycopg

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.run import Run
from tests.conftest import END
from tests.db.conftest import user_rows

MODELS = ("mf", "two_tower")
NIGHTS = (END - timedelta(days=1), END)


def _run(url, end, root, **params):
    # Every model's rows are compared below; the default (only the serving model publishes) has its own test.
    config = dataclasses.replace(PipelineConfig.from_params(
        {"top_n": 5, "mf_epochs": 3, "two_tower_epochs": 5, "warm_epochs": 2, "publish_models": "all", **params}),
        run_root=str(root))
    return Run(database_url=url, interval_end=end, interval_start=end - timedelta(days=1), config=config)


def _lineage(url, end):
    with psycopg.connect(url) as conn:
        return {r[0]: r[1:] for r in conn.execute(
            "SELECT model_name, train_mode, parent_model_run_id, timings->>'mode_reason', model_run_id, "
            "metrics->'published_on_holdout' FROM rec.model_runs WHERE data_interval_end = %s", (end,)).fetchall()}




def test_a_warm_night_reruns_to_the_same_rows_from_the_same_parent(seeded, tmp_path):
    pipeline.run_all(_run(seeded, NIGHTS[0], tmp_path), MODELS)
    first = _lineage(seeded, NIGHTS[0])
    pipeline.run_all(_run(seeded, NIGHTS[1], tmp_path), MODELS)
    warm = _lineage(seeded, NIGHTS[1])
    for model in MODELS:
        assert warm[model][:2] == ("warm", first[model][3]), warm[model]
        assert warm[model][4] is not None  # the gate scored the parent on tonight's holdout
    before = {m: user_rows(seeded, warm[m][3]) for m in MODELS}
    pipeline.run_all(_run(seeded, NIGHTS[1], tmp_path), MODELS)  # an operator reruns the night
    again = _lineage(seeded, NIGHTS[1])
    for model in MODELS:
        assert again[model][:2] == warm[model][:2] and again[model][3] == warm[model][3]
        assert user_rows(seeded, warm[model][3]) == before[model] and before[model]


def test_only_the_serving_model_publishes_and_a_kept_candidate_is_a_warm_parent(seeded, tmp_path):
    """publish_models=serving (the default): the model that serves is scored and published; the other,
    which passed its gate, is kept as a candidate with no lists, no scored files and its models stored
    once (in its checkpoint). Night 2 continues every model from night 1's accepted run, the kept
    candidate too, and gates it against that run; retention keeps only the latest accepted checkpoint
    of a model that never published. Each night records its expected and actual bytes."""
    first = pipeline.run_all(_run(seeded, NIGHTS[0], tmp_path, publish_models="serving", keep_run_folders=1), MODELS)
    serving = first["serving"]
    (candidate,) = set(MODELS) - {serving}
    assert first["published"][serving]["published"] and first["published"][candidate]["kept_as_candidate"]
    files = _run(seeded, NIGHTS[0], tmp_path).files
    assert set(files.store.children(f"{files.slug}/outputs")) == {serving}
    assert set(files.store.children(f"{files.slug}/models")) == {"popularity", "domain_ridge", "feature_popularity"}
    assert files.load_model(candidate, "serve").name == candidate  # from its checkpoint
    with psycopg.connect(seeded) as conn:
        status, reason, accepted, published = conn.execute(
            "SELECT status, status_reason, accepted_at IS NOT NULL, published_at IS NOT NULL FROM rec.model_runs "
            "WHERE model_name = %s", (candidate,)).fetchone()
        assert (status, accepted, published) == ("candidate", True, False) and "kept as a candidate" in reason
        assert conn.execute("SELECT count(*) FROM rec.user_recommendations WHERE model_run_id = %s",
                            (first["published"][candidate]["model_run_id"],)).fetchone()[0] == 0
    pipeline.run_all(_run(seeded, NIGHTS[1], tmp_path, publish_models="serving", keep_run_folders=1), MODELS)
    night_1, night_2 = _lineage(seeded, NIGHTS[0]), _lineage(seeded, NIGHTS[1])
    for model in MODELS:
        assert night_2[model][:2] == ("warm", night_1[model][3]), night_2[model]
    with psycopg.connect(seeded) as conn:
        gate = conn.execute("SELECT status_reason FROM rec.model_runs WHERE run_key = %s AND model_name = %s",
                            (NIGHTS[1].isoformat(), candidate)).fetchone()[0]
        disk = conn.execute("SELECT expected_run_folder_bytes, run_root_free_bytes, expected_database_bytes, "
                            "database_free_bytes, database_bytes_before, run_folder_bytes, database_bytes "
                            "FROM rec.night_checks ORDER BY data_interval_end").fetchall()
    assert f"run {night_1[candidate][3]} (" in gate
    assert disk[0][0] is None and disk[0][5] > 0 and disk[0][6] > 0  # night 1: no earlier night to expect from
    assert all(value is not None and value > 0 for value in disk[1]), disk[1]
    # keep_run_folders=1: night 1's folder keeps the serving run's checkpoint only (the candidate's
    # latest accepted run is night 2's now).
    assert set(files.checkpoint_names()) == {serving}


def test_an_unusable_checkpoint_means_a_full_retrain(seeded, tmp_path, caplog):
    pipeline.run_all(_run(seeded, NIGHTS[0], tmp_path), MODELS)
    parent = _run(seeded, NIGHTS[0], tmp_path).files
    state = parent.path / "checkpoints" / "mf" / "model" / "state.npz"
    state.write_bytes(state.read_bytes()[:64])  # a truncated file
    with caplog.at_level(logging.WARNING, logger="rec_models.pipeline"):
        result = pipeline.run_all(_run(seeded, NIGHTS[1], tmp_path), MODELS)
    lineage = _lineage(seeded, NIGHTS[1])
    assert lineage["mf"][:2] == ("full", None) and "unreadable" in lineage["mf"][2]
    assert lineage["two_tower"][0] == "warm"  # the other model's checkpoint was fine
    assert result["published"]["mf"]["published"]
    warnings = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len([w for w in warnings if w.startswith("mf:")]) == 1, warnings


def test_settings_that_shape_the_weights_mean_a_full_retrain(seeded, tmp_path):
    pipeline.run_all(_run(seeded, NIGHTS[0], tmp_path), ("mf",))
    pipeline.run_all(_run(seeded, NIGHTS[1], tmp_path, mf_dim=16), ("mf",))
    mode, parent, reason = _lineage(seeded, NIGHTS[1])["mf"][:3]
    assert (mode, parent) == ("full", None) and "settings that shape the weights changed" in reason


def test_full_mode_and_every_night_from_scratch(seeded, tmp_path):
    pipeline.run_all(_run(seeded, NIGHTS[0], tmp_path), ("mf",))
    pipeline.run_all(_run(seeded, NIGHTS[1], tmp_path, full_retrain_every=1), ("mf",))
    assert _lineage(seeded, NIGHTS[1])["mf"][:3] == ("full", None, "full retrain every 1 nights")


def test_a_partial_day_is_not_trained_on(seeded, tmp_path):
    with psycopg.connect(seeded) as conn:  # most of the last day's views have not arrived
        conn.execute("DELETE FROM video_views WHERE viewed_at >= %s AND hashint8(user_id) %% 10 <> 0",
                     (END - timedelta(days=1),))
        conn.commit()
    result = pipeline.run_all(_run(seeded, END, tmp_path), MODELS)
    assert result["skipped"].startswith("a partial day")
    with psycopg.connect(seeded) as conn:
        trained, reason = conn.execute("SELECT trained, reason FROM rec.night_checks").fetchone()
        assert not trained and "partial day" in reason
        assert conn.execute("SELECT count(*) FROM rec.model_runs").fetchone()[0] == 0


def test_domain_only_users_are_gated_against_the_figure_the_serving_run_recorded(seeded, tmp_path):
    """Night 2 compares its domain-only candidates with what night 1's published run recorded: kept
    within the tolerance; when that figure is out of reach, domain popularity serves them, with why."""
    pipeline.run_all(_run(seeded, NIGHTS[0], tmp_path), ("mf",))
    with psycopg.connect(seeded) as conn:
        first = conn.execute("SELECT model_run_id, metrics->'warm' FROM rec.model_runs").fetchone()
        # As if the serving run's domain-only users had been served far better than tonight can.
        conn.execute("UPDATE rec.model_runs SET metrics = jsonb_set(metrics, '{warm,ndcg@10}', '0.99') "
                     "WHERE model_run_id = %s", (first[0],))
        conn.commit()
    pipeline.run_all(_run(seeded, NIGHTS[1], tmp_path), ("mf",))
    with psycopg.connect(seeded) as conn:
        second = conn.execute("SELECT metrics->'warm' FROM rec.model_runs WHERE data_interval_end = %s",
                              (NIGHTS[1],)).fetchone()[0]
        segments = dict(conn.execute("SELECT segment, count(*) FROM rec.user_recommendations_current "
                                     "GROUP BY segment").fetchall())
    assert first[1]["reason"].endswith("none served before")
    assert second["model"] == "feature_popularity" and "worse than the 0.9900 serving" in second["reason"]
    assert segments.get("warm", 0) > 0  # they are still served
