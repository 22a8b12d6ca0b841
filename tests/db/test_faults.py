"""Faults at every task boundary and inside publish: readers keep the previous complete run, a rerun
publishes exactly once, staging is cleaned; a database restart between tasks is survived."""

import dataclasses
import os

import pytest

from bench.faults import bad_input_check, fault_check
from rec_models.config import PipelineConfig
from rec_models.data.synthetic import WorldSpec, generate_world
from rec_models.faults import AFTER_SERVING, ERASURE_POINTS, POINTS
from tests.conftest import END



@pytest.fixture(scope="module")
def tiny_world():
    return generate_world(WorldSpec(n_users=500, n_videos=120, n_views=10_000, n_domain_visits=12_000, seed=3), END)


def test_every_bad_input_class_is_quarantined(database_factory, tiny_world):
    from rec_models.db.migrate import apply_migrations

    url = database_factory()
    apply_migrations(url)
    classes, quarantined, injected = bad_input_check(url, tiny_world)
    assert classes >= 15 and quarantined == injected


def test_faults_are_survived(database_factory, tiny_world, tmp_path):
    from rec_models.db.embedded import restart_embedded_server

    config = dataclasses.replace(PipelineConfig.from_params({"top_n": 5, "mf_epochs": 3}), run_root=str(tmp_path))
    restart = None if os.environ.get("DATABASE_URL") else restart_embedded_server
    report = fault_check(database_factory(), tiny_world, config, restart=restart)
    assert report.problems == []
    # A failed retention: tests/db/test_alerts.py; a failed erasure: tests/erasure.
    assert set(report.survived) >= set(POINTS) - set(AFTER_SERVING) - set(ERASURE_POINTS)
