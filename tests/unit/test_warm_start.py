"""Warm start: a model carried onto a later night's Dataset (other users, videos and tokens) keeps
what it learned for the ids it knew, starts new ids as declared, and refuses checkpoints it cannot
continue from."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rec_models.config import MFConfig, NeuMFConfig, TwoTowerConfig
from rec_models.data.dataset import Dataset
from rec_models.data.id_maps import IdMaps, matching_rows
from rec_models.models import NCF, MatrixFactorization, Popularity, TwoTower
from rec_models.models.base import CheckpointError, WarmStart
from rec_models.models.checkpoint import load_checkpoint, save_checkpoint

MODELS = {
    "mf": lambda: MatrixFactorization(MFConfig(dim=8, epochs=2)),
    "neumf": lambda: NCF(NeuMFConfig(dim=8, epochs=2)),
    "two_tower": lambda: TwoTower(TwoTowerConfig(dim=16, epochs=2)),
}


def _next_night(data: Dataset, drop_users: int = 40, new_videos: int = 5) -> Dataset:
    """The same world a night later: the first users left the window, new videos arrived (content only,
    copied from existing videos under new ids)."""
    keep = data.view_user >= drop_users
    new_ids = data.video_ids.max() + 1 + np.arange(new_videos)
    text = dict(data.video_text) | {int(v): data.video_text[int(data.video_ids[i])] for i, v in enumerate(new_ids)}
    kept_features = data.feature_rows >= drop_users
    return Dataset.from_columns(
        user_ids=data.user_ids[drop_users:], video_ids=np.concatenate([data.video_ids, new_ids]),
        video_active=np.concatenate([data.video_active, np.ones(new_videos, bool)]),
        view_user_ids=data.user_ids[data.view_user[keep]], view_video_ids=data.video_ids[data.view_video[keep]],
        viewed_at=data.viewed_at[keep],
        user_feature_triples=(data.feature_rows[kept_features] - drop_users, data.feature_cols[kept_features],
                              data.feature_counts[kept_features]),
        user_feature_names=data.user_feature_names, end=data.end, video_text=text,
        user_feature_days=data.feature_days[kept_features])


def test_matching_rows_pairs_ids_in_any_order():
    old = np.array(["b", "a", "c"])
    new = np.array(["c", "d", "a"])
    new_rows, old_rows = matching_rows(old, new)
    assert new_rows.tolist() == [0, 2] and old_rows.tolist() == [2, 1]
    assert [len(x) for x in matching_rows(np.array([], dtype=str), new)] == [0, 0]


@pytest.mark.parametrize("name", list(MODELS))
def test_carried_model_keeps_known_rows_and_starts_new_ones_as_declared(name, small_dataset):
    parent = MODELS[name]()
    parent.fit(small_dataset, epochs=2)
    tonight = _next_night(small_dataset)
    child = MODELS[name]()
    counts = child.carry(tonight, parent, IdMaps.of(small_dataset))
    for key, (space, _) in type(child).id_tables.items():
        if key in counts and space in ("user", "video"):
            assert (counts[key]["new"], counts[key]["dropped"]) == ((0, 40) if space == "user" else (5, 0)), key
    # Users and videos both nights know score the same pairs the same (MF, NeuMF: same rows; two-tower:
    # same bags and histories, and the token columns carried by name).
    users = np.arange(0, 200, 7)
    parent_scores = parent.score_rows(small_dataset)(users + 40).cpu().numpy()
    child_scores = child.score_rows(tonight)(users).cpu().numpy()
    np.testing.assert_allclose(child_scores[:, : small_dataset.n_videos], parent_scores, rtol=1e-4, atol=1e-5)
    state, fresh = child.module.state_dict(), MODELS[name]()
    fresh.shapes = fresh.shapes_for(tonight)
    torch.manual_seed(fresh.seed)
    fresh.module = fresh.build_module(fresh.shapes)
    fresh.prepare(tonight, tonight.interactions())
    new_rows = np.arange(small_dataset.n_videos, tonight.n_videos)
    for key, (space, init) in type(child).id_tables.items():
        if key not in state or space != "video":
            continue
        expected = fresh.module.state_dict()[key][new_rows]
        if init == "mean":
            expected = expected + parent.module.state_dict()[key].mean(dim=0)
        else:
            expected = torch.zeros_like(expected)
        torch.testing.assert_close(state[key][new_rows], expected, msg=key)


def test_two_tower_places_new_videos_by_content_alone(small_dataset):
    parent = MODELS["two_tower"]()
    parent.fit(small_dataset, epochs=2)
    tonight = _next_night(small_dataset)
    child = MODELS["two_tower"]()
    child.carry(tonight, parent, IdMaps.of(small_dataset))
    vectors = child.item_vectors()
    # Each new video copies an existing video's content: same content tower, no id row, no bias.
    with torch.no_grad():
        content = child.module.item_bags.embed(child.module.item_feature, torch.arange(tonight.n_videos)).numpy()
    new = np.arange(small_dataset.n_videos, tonight.n_videos)
    np.testing.assert_allclose(vectors[new, :-1], content[new], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vectors[new, -1], 0)
    np.testing.assert_allclose(content[new], content[np.arange(len(new))], rtol=1e-5, atol=1e-6)


def test_warm_fit_continues_on_recent_views_and_refuses_other_settings(small_dataset):
    parent = MODELS["mf"]()
    parent.fit(small_dataset, epochs=2)
    warm = WarmStart(parent=parent, parent_ids=IdMaps.of(small_dataset), recent_days=3, history_share=0.2, epochs=2)
    child = MODELS["mf"]()
    report = child.fit_warm(small_dataset, warm)
    assert 1 <= report.epochs <= 2
    wider = MatrixFactorization(MFConfig(dim=16, epochs=2))
    with pytest.raises(CheckpointError, match="settings that shape the weights changed"):
        wider.fit_warm(small_dataset, warm)
    with pytest.raises(CheckpointError, match="not a fitted mf"):
        child.fit_warm(small_dataset, WarmStart(Popularity(), IdMaps.of(small_dataset), 3, 0.2, 2))
    closed_form = Popularity()
    closed_form.fit_warm(small_dataset, warm)  # nothing to continue from: it fits again
    assert closed_form.item_vectors().shape[0] == small_dataset.n_videos


def test_warm_training_stops_at_the_first_epoch_without_improvement(small_dataset):
    parent = MODELS["mf"]()
    parent.fit(small_dataset, epochs=2)
    validation = small_dataset.validation(1)
    warm = WarmStart(parent, IdMaps.of(small_dataset), recent_days=3, history_share=0.2, epochs=10, patience=1)
    report = MODELS["mf"]().fit_warm(small_dataset, warm, before=validation.boundary, validation=validation)
    assert report.epochs == min(10, report.best_epoch + 1), report.history


def test_recent_mix_reads_recent_days_and_a_share_of_older_views(small_dataset):
    mix = small_dataset.recent_mix(None, 3, 0.0, seed=1)
    recent = small_dataset.viewed_at >= small_dataset.end - 3 * 86_400
    assert mix.nnz == len(set(zip(small_dataset.view_user[recent], small_dataset.view_video[recent])))
    assert small_dataset.recent_mix(None, 3, 1.0, seed=1).nnz == small_dataset.interactions().nnz
    # By user (the two-tower's examples): whole rows of the recent users, none of the others at share 0.
    rows = small_dataset.recent_mix(None, 3, 0.0, seed=1, by_user=True)
    recent_users = np.unique(small_dataset.view_user[recent])
    everything = small_dataset.interactions()
    assert np.array_equal(np.flatnonzero(np.diff(rows.indptr)), recent_users)
    assert all(rows[u].nnz == everything[u].nnz for u in recent_users[:50])
    # The recent users' own older views count toward the share: others join only beyond what they hold.
    older = small_dataset.viewed_at < small_dataset.end - 3 * 86_400
    covered = np.isin(small_dataset.view_user[older], recent_users).mean()
    below = small_dataset.recent_mix(None, 3, covered * 0.9, seed=1, by_user=True)
    assert np.array_equal(np.flatnonzero(np.diff(below.indptr)), recent_users)
    share = (1 + covered) / 2
    some = small_dataset.recent_mix(None, 3, share, seed=1, by_user=True)
    older_in = np.isin(small_dataset.view_user[older], np.flatnonzero(np.diff(some.indptr))).mean()
    assert len(recent_users) < (np.diff(some.indptr) > 0).sum() < small_dataset.n_users
    assert abs(older_in - share) < 0.1, (older_in, share)


def test_recent_mix_draws_the_same_sample_whatever_order_the_views_were_read_in(small_dataset):
    order = np.random.default_rng(3).permutation(small_dataset.n_views)
    shuffled = dataclasses.replace(small_dataset, view_user=small_dataset.view_user[order],
                                   view_video=small_dataset.view_video[order], viewed_at=small_dataset.viewed_at[order])
    for by_user in (False, True):
        a = small_dataset.recent_mix(None, 3, 0.3, seed=1, by_user=by_user)
        b = shuffled.recent_mix(None, 3, 0.3, seed=1, by_user=by_user)
        assert (a != b).nnz == 0 and 0 < a.nnz < small_dataset.interactions().nnz, by_user


def test_a_corrupt_or_missing_checkpoint_is_a_checkpoint_error(small_dataset, tmp_path):
    model = MODELS["mf"]()
    model.fit(small_dataset, epochs=1)
    folder = tmp_path / "mf"
    save_checkpoint(folder, model, IdMaps.of(small_dataset), {"generation": 0})
    loaded, ids, header = load_checkpoint(folder, "mf")
    assert header == {"generation": 0} and np.array_equal(ids.video, small_dataset.video_ids)
    with pytest.raises(CheckpointError, match="holds mf, not two_tower"):
        load_checkpoint(folder, "two_tower")
    state = folder / "model" / "state.npz"
    state.write_bytes(state.read_bytes()[:100])  # truncated by a full disk, say
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(folder, "mf")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing", "mf")
