"""Operations against PostgreSQL: rollback, backfill reproducibility, pruning, and the CLI steps."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import timedelta

import psycopg
import pytest

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.db.rollback import RollbackError, rollback
from rec_models.data.snapshot import Snapshot
from rec_models.run import Run
from tests.conftest import END, ROOT
from tests.db.conftest import user_rows

MODELS = ("mf",)


def _config(tmp_path, **params):
    return dataclasses.replace(PipelineConfig.from_params({"top_n": 5, "mf_epochs": 3, **params}), run_root=str(tmp_path))


def _serving(url):
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT output_name, model_run_id FROM rec.serving").fetchall())




def test_rollback_to_the_previous_run_and_to_a_named_one(seeded, tmp_path):
    runs = [pipeline.run_all(Run(database_url=seeded, interval_end=END - timedelta(days=d),
                                                 config=_config(tmp_path)), MODELS)["model_run_id"] for d in (2, 1, 0)]
    assert set(_serving(seeded).values()) == {runs[2]}
    with psycopg.connect(seeded) as conn:
        assert rollback(conn, "mf") == runs[1]
        assert set(_serving(seeded).values()) == {runs[1]}
        assert rollback(conn, "mf", to_run=runs[0]) == runs[0]
        assert set(_serving(seeded).values()) == {runs[0]}
        with pytest.raises(RollbackError, match="not a run of model 'two_tower'"):
            rollback(conn, "two_tower", to_run=runs[2])
        with pytest.raises(RollbackError, match="not a run of model"):
            rollback(conn, "mf", to_run=987654)
    # The current view shows exactly the rolled-back run's rows.
    with psycopg.connect(seeded) as conn:
        current = conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations_current "
                               "ORDER BY user_id, rank").fetchall()
    assert current == user_rows(seeded, runs[0])


def test_pruned_runs_cannot_be_rolled_back_to(seeded, tmp_path):
    config = _config(tmp_path, keep_published_runs=1)
    runs = [pipeline.run_all(Run(database_url=seeded, interval_end=END - timedelta(days=d),
                                                 config=config), MODELS)["model_run_id"] for d in (2, 1, 0)]
    with psycopg.connect(seeded) as conn:
        with pytest.raises(RollbackError, match="pruned"):
            rollback(conn, "mf", to_run=runs[0])
        assert set(_serving(seeded).values()) == {runs[2]}  # nothing changed


def test_backfill_sees_only_its_night_and_reproduces_it(seeded, small_world, tmp_path):
    night = END - timedelta(days=3)
    backfill = Run(database_url=seeded, interval_end=night, config=_config(tmp_path / "a"))
    first = pipeline.run_all(backfill, MODELS)["model_run_id"]
    snapshot = Snapshot.load(backfill.files.path / "snapshot")
    assert snapshot.viewed_at.max() < night.timestamp()
    before = user_rows(seeded, first)
    # Later data arrives (and a newer night publishes): the backfill of the old night must not change.
    with psycopg.connect(seeded) as conn:
        conn.execute("INSERT INTO video_views SELECT user_id, video_id, viewed_at + interval '3 days', watch_seconds "
                     "FROM video_views WHERE viewed_at >= %s", (night - timedelta(days=1),))
        conn.commit()
    latest = pipeline.run_all(Run(database_url=seeded, interval_end=END, config=_config(tmp_path / "b")),
                              MODELS)["model_run_id"]
    again = pipeline.run_all(dataclasses.replace(backfill, config=_config(tmp_path / "c")), MODELS)
    assert again["model_run_id"] == first and user_rows(seeded, first) == before  # same seed, same rows
    assert set(_serving(seeded).values()) == {latest}  # a backfill never takes serving from a newer night


def test_a_backfill_published_meanwhile_does_not_become_tonights_gate_baseline(seeded, tmp_path):
    config = _config(tmp_path)
    yesterday = pipeline.run_all(Run(database_url=seeded, interval_end=END - timedelta(days=1), config=config),
                                 MODELS)["model_run_id"]
    # Published after yesterday's run, but its data ends earlier.
    pipeline.run_all(Run(database_url=seeded, interval_end=END - timedelta(days=4), config=config), MODELS)
    tonight = pipeline.run_all(Run(database_url=seeded, interval_end=END, config=config), MODELS)["model_run_id"]
    with psycopg.connect(seeded) as conn:
        reason = conn.execute("SELECT status_reason FROM rec.model_runs WHERE model_run_id = %s", (tonight,)).fetchone()[0]
    assert f"published run {yesterday} " in reason, reason


def test_cli_steps_and_rollback(seeded, tmp_path):
    env = {"DATABASE_URL": seeded, "RECS_RUN_ROOT": str(tmp_path), "PATH": "/usr/bin:/bin"}
    end = END.isoformat()

    def cli(*args, check=True):
        return subprocess.run([sys.executable, "-m", "rec_models", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=check)

    for night in ((END - timedelta(days=1)).isoformat(), end):
        cli("train", "--model", "mf", "--end", night, "--param", "mf_epochs=3", "--param", "top_n=5")
        cli("score", "--model", "mf", "--end", night, "--param", "top_n=5")
        cli("publish", "--model", "mf", "--end", night, "--serve")
    assert "serving model run" in cli("rollback", "--model", "mf").stdout
    report = cli("report").stdout
    assert "rows in rec.user_recommendations_current" in report
    failed = cli("rollback", "--model", "neumf", check=False)
    assert failed.returncode == 2 and "no earlier published run of model 'neumf'" in failed.stderr
    missing = cli("score", "--model", "neumf", "--end", end, check=False)
    assert missing.returncode == 2 and "run `train --model neumf` first" in missing.stderr


def test_cli_forget_files_requests_and_erases_now(seeded, small_world, tmp_path):
    env = {"DATABASE_URL": seeded, "RECS_RUN_ROOT": str(tmp_path / "runs"), "PATH": "/usr/bin:/bin"}

    def cli(*args, check=True):
        return subprocess.run([sys.executable, "-m", "rec_models", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, check=check)

    pipeline.run_all(Run(database_url=seeded, interval_end=END, config=_config(tmp_path / "runs")), MODELS)
    people = sorted({int(u) for u in small_world.view_user[:200]})[:3]
    bulk = tmp_path / "people.csv"
    bulk.write_text(f"user_id\n{people[1]}\n{people[2]}\n")
    assert "filed 1 erasure requests" in cli("forget", "--user", str(people[0])).stdout
    out = cli("forget", "--user", str(people[0]), "--csv", str(bulk), "--now").stdout
    assert "filed 2 erasure requests (1 already open)" in out and "'done': 3" in out
    with psycopg.connect(seeded) as conn:
        assert conn.execute("SELECT count(*) FROM rec.erasure_requests WHERE done_at IS NOT NULL").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM rec.user_recommendations WHERE user_id = ANY(%s)",
                            (people,)).fetchone()[0] == 0
    bulk.write_text("user_id\n12x\n")
    bad = cli("forget", "--csv", str(bulk), check=False)
    assert bad.returncode == 2 and "line 2: user id '12x' is not an integer" in bad.stderr
    bad = cli("forget", "--user", "-4", check=False)
    assert bad.returncode == 2 and "user ids are positive integers" in bad.stderr
