"""The run object: identity from the data interval, and every file of the run folder behind RunFolder."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import numpy as np
import pytest

from rec_models.config import PipelineConfig
from rec_models.models import Popularity
from rec_models.run import Run
from tests.conftest import END


def _run(tmp_path) -> Run:
    return Run(database_url="postgresql://u:secret@h/db", interval_end=END,
               config=dataclasses.replace(PipelineConfig(), run_root=str(tmp_path)))


def test_identity_comes_from_the_interval_end(tmp_path):
    run = _run(tmp_path)
    assert run.run_key == "2026-11-27T02:00:00+00:00"
    assert run.files.path == tmp_path / "2026-11-27T020000Z"
    assert (run.interval_end - run.window_start).days == 180
    assert "secret" not in repr(run)
    with pytest.raises(ValueError, match="timezone-aware"):
        Run(database_url="x", interval_end=datetime(2026, 11, 27))
    assert Run(database_url="x", interval_end=END.astimezone(timezone.utc)).run_key == run.run_key


def test_records_round_trip_and_a_missing_one_names_its_file(tmp_path):
    files = _run(tmp_path).files
    files.write_validation({"videos": {"rows": 3}})
    assert files.read_validation() == {"videos": {"rows": 3}}
    files.write_evaluation("mf", {"publish": True})
    assert files.read_evaluation("mf") == {"publish": True}
    assert files.read_evaluation("neumf") is None  # not evaluated in this run
    with pytest.raises(FileNotFoundError, match="fit.json"):
        files.read_fit("two_tower")
    with pytest.raises(ValueError, match="eval or serve"):
        files.load_model("mf", "latest")


def test_models_and_the_dataset_are_saved_and_loaded_through_the_folder(tmp_path, small_dataset):
    files = _run(tmp_path).files
    files.save_dataset(small_dataset)
    data = files.load_dataset()
    assert data.n_users == small_dataset.n_users and data.n_views == small_dataset.n_views
    model = Popularity()
    model.fit(data)
    files.save_model(model, "serve")
    np.testing.assert_array_equal(files.load_model("popularity", "serve").item_vectors(), model.item_vectors())
    files.clear_scores("popularity")  # nothing there: no error


def test_a_checkpointed_model_is_stored_once_and_read_from_its_checkpoint(tmp_path, small_dataset, trained):
    """The night's tasks read a neural model's evaluated and serving parts from its checkpoint: nothing
    under models/ for it, and the folder's bytes per part say where the bytes are."""
    from rec_models.config import MFConfig
    from rec_models.data.id_maps import IdMaps
    from rec_models.models import build_model

    files = _run(tmp_path).files
    model, _ = trained("mf-run-folder", lambda: build_model("mf", dataclasses.replace(
        PipelineConfig(), mf=MFConfig(epochs=2))))
    files.save_checkpoint(model, IdMaps.of(small_dataset), {"model": "mf"})
    files.add_serving_model(model)
    users = np.arange(5)
    for purpose in ("eval", "serve"):
        loaded = files.load_model("mf", purpose)
        np.testing.assert_allclose(loaded.user_vectors(small_dataset, users), model.user_vectors(small_dataset, users))
    assert not (files.path / "models").exists()
    parts = files.stored_bytes()
    assert set(parts) == {"checkpoints"} and parts["checkpoints"] == sum(
        p.stat().st_size for p in (files.path / "checkpoints").rglob("*") if p.is_file())
