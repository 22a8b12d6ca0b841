"""Run folders on an object store (a real S3 server: SeaweedFS on 127.0.0.1): artifacts are committed
whole (files first, manifest last), read back through a local cache that follows new commits, and the
whole nightly run works with nothing of the run folder on local disk but that cache."""

from __future__ import annotations

import dataclasses
import json
import uuid

import numpy as np
import psycopg
import pytest

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.id_maps import IdMaps
from rec_models.models import Popularity
from rec_models.run import Run, leftover_files, prune_run_folders, run_folder
from rec_models.storage import MANIFEST, ObjectStore, open_store, options_from_connection
from tests.conftest import END
from tests.db.conftest import user_rows


@pytest.fixture
def store(s3_server, tmp_path, monkeypatch) -> ObjectStore:
    monkeypatch.setenv("RECS_RUN_CACHE", str(tmp_path / "cache"))
    return open_store(f"{s3_server.url}/{uuid.uuid4().hex[:8]}", s3_server.storage_options)


def test_an_artifact_is_seen_whole_or_not_at_all(store):
    with store.staged("night/part") as folder:
        (folder / "a.npy").write_bytes(b"first")
        (folder / "sub").mkdir()
        (folder / "sub" / "b.json").write_text("{}")
    assert store.exists("night/part")
    assert sorted(p.relative_to(store.fetch("night/part")).as_posix()
                  for p in store.fetch("night/part").rglob("*") if p.is_file()) == [MANIFEST, "a.npy", "sub/b.json"]
    # A writer that dies after uploading files but before the manifest leaves no artifact behind it.
    remote = store._remote("night/crashed")
    store.fs.pipe_file(f"{remote}/a.npy", b"half")
    assert not store.exists("night/crashed")
    crashed = store.fetch("night/crashed")
    assert not crashed.exists() or not any(crashed.rglob("*.npy"))
    # A failed block commits nothing.
    with pytest.raises(RuntimeError):
        with store.staged("night/failed") as folder:
            (folder / "a.npy").write_bytes(b"x")
            raise RuntimeError("task died")
    assert not store.exists("night/failed")


def test_files_of_an_unfinished_commit_are_found_as_leftovers(store):
    night = run_folder(store, END).slug
    with store.staged(f"{night}/dataset") as folder:
        (folder / "arrays.npz").write_bytes(b"x")
    store.write_text(f"{night}/records/mf/fit.json", "{}")
    store.write_text(f"{night}/validation.json", "{}")
    assert leftover_files(store) == []
    # A worker lost between uploading a file and writing the manifest; another beside a manifest.
    store.fs.pipe_file(f"{store._remote(night)}/snapshot/columns.npz", b"half")
    store.fs.pipe_file(f"{store._remote(night)}/dataset/stale.npz", b"old attempt")
    assert leftover_files(store) == [f"{night}/dataset/stale.npz", f"{night}/snapshot/columns.npz"]
    with store.staged(f"{night}/snapshot") as folder:  # the retry commits over it
        (folder / "columns.npz").write_bytes(b"whole")
    assert leftover_files(store) == [f"{night}/dataset/stale.npz"]


def test_the_cache_follows_a_new_commit_even_of_the_same_size(s3_server, store, tmp_path, monkeypatch):
    with store.staged("night/model") as folder:
        (folder / "weights.bin").write_bytes(b"AAAA")
        (folder / "old.bin").write_bytes(b"gone soon")
    assert (store.fetch("night/model") / "weights.bin").read_bytes() == b"AAAA"
    # Another machine (its own cache) commits the artifact again: same name and size, other bytes.
    monkeypatch.setenv("RECS_RUN_CACHE", str(tmp_path / "other-machine"))
    other = open_store(store.url, s3_server.storage_options)
    with other.staged("night/model") as folder:
        (folder / "weights.bin").write_bytes(b"BBBB")
    local = store.fetch("night/model")
    assert (local / "weights.bin").read_bytes() == b"BBBB"
    assert not (local / "old.bin").exists()  # not part of the artifact any more


def test_records_children_and_removal(store):
    store.write_text("night/records/fit.json", json.dumps({"epochs": 3}))
    assert json.loads(store.read_text("night/records/fit.json")) == {"epochs": 3}
    with pytest.raises(FileNotFoundError, match="missing.json is missing"):
        store.read_text("night/missing.json")
    with store.staged("night/dataset") as folder:
        (folder / "arrays.npz").write_bytes(b"x")
    assert store.children("night") == ["dataset", "records"]
    store.remove("night/dataset")
    assert store.children("night") == ["records"] and not store.exists("night/dataset")


def test_run_folder_round_trips_and_prunes_on_the_object_store(s3_server, store, small_dataset):
    files = run_folder(store, END)
    files.save_dataset(small_dataset)
    data = files.load_dataset()
    assert data.n_views == small_dataset.n_views
    model = Popularity()
    model.fit(data)
    files.save_model(model, "serve")
    np.testing.assert_array_equal(files.load_model("popularity", "serve").item_vectors(), model.item_vectors())
    files.save_checkpoint(model, IdMaps.of(data), {"generation": 0})
    files.add_serving_model(model)
    loaded, ids, header = files.load_checkpoint("popularity", part="serve")
    assert header == {"generation": 0} and np.array_equal(ids.video, data.video_ids)
    files.write_evaluation("popularity", {"publish": True})
    assert files.read_evaluation("popularity") == {"publish": True} and files.read_evaluation("mf") is None
    # Pruning as on a local folder: older nights keep only the checkpoints of runs still published.
    later = [END.replace(day=END.day + d) for d in (1, 2)]
    for end in later:
        run_folder(store, end).write_summary({})
    removed = prune_run_folders(store, 2, {("popularity", END)}, current=later[-1])
    slug = files.slug
    assert f"{slug}/dataset" in removed and f"{slug}/models" in removed
    assert store.children(slug) == ["checkpoints"] and store.exists(f"{slug}/checkpoints/popularity")


def test_credentials_from_a_connection_or_the_environment(s3_server, monkeypatch, tmp_path):
    class Connection:  # the attributes of Airflow's Connection that options_from_connection reads
        login, password = s3_server.key, s3_server.secret
        extra_dejson = {"endpoint_url": s3_server.endpoint_url, "unused": ""}

    options = options_from_connection(Connection())
    assert options == s3_server.storage_options
    monkeypatch.setenv("RECS_RUN_CACHE", str(tmp_path / "cache"))
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    from_env = open_store(f"{s3_server.url}/env-{uuid.uuid4().hex[:6]}")  # what the CLI does
    from_env.write_text("probe.json", "{}")
    assert from_env.read_text("probe.json") == "{}"


def test_a_whole_night_runs_with_its_run_folder_on_the_object_store(s3_server, seeded, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("RECS_RUN_CACHE", str(cache))
    params = {"top_n": 5, "mf_epochs": 3, "neumf_epochs": 2, "two_tower_epochs": 4, "quality_tolerance": 1.0,
              "publish_models": "all"}
    root = f"{s3_server.url}/night-{uuid.uuid4().hex[:6]}"
    run = Run(database_url=seeded, interval_end=END, dag_run_id="s3", storage_options=s3_server.storage_options,
              config=dataclasses.replace(PipelineConfig.from_params(params), run_root=root))
    result = pipeline.run_all(run)
    assert {name for name, p in result["published"].items() if p["published"]} == {"mf", "neumf", "two_tower"}
    store = run.store
    slug = run.files.slug
    assert {"snapshot", "dataset", "models", "checkpoints", "outputs", "records"} <= set(store.children(slug))
    assert store.exists(f"{slug}/checkpoints/two_tower") and store.exists(f"{slug}/outputs/mf/items")
    # The local disk holds only the cache: from an empty cache (another machine), scoring and publishing
    # again read the Dataset, the models and the records from the store and give the same rows.
    with psycopg.connect(seeded) as conn:
        mf_run = conn.execute("SELECT model_run_id FROM rec.model_runs WHERE model_name = 'mf'").fetchone()[0]
    first = user_rows(seeded, mf_run)
    monkeypatch.setenv("RECS_RUN_CACHE", str(tmp_path / "empty-cache"))
    again = Run(database_url=seeded, interval_end=END, dag_run_id="s3", storage_options=s3_server.storage_options,
                config=run.config)
    evaluations = [again.files.read_evaluation(name) for name in ("mf", "neumf", "two_tower")]
    assert pipeline.score(again, "mf", evaluations)["scored"]
    assert pipeline.publish(again, "mf", evaluations)["published"]
    assert user_rows(seeded, mf_run) == first
    assert any((tmp_path / "empty-cache").rglob("state.npz"))  # the models came from the store
