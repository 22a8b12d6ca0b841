"""The contract every model passes on the small synthetic world (known answer: topics)."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest

from rec_models.config import MFConfig, NeuMFConfig, TwoTowerConfig
from rec_models.evaluation import evaluate_model, evaluate_ranking
from rec_models.models import (GMF, MLP, NCF, DomainRidge, FeaturePopularity, MatrixFactorization, Popularity,
                               Recommender, TwoTower, load_model)
from rec_models.models.neural import NeuralRecommender
from rec_models.topn import flatten
from rec_models.training import FitReport


def _scores(model, data, users=np.arange(0, 400, 3)):
    return model.score_rows(data)(users).cpu().numpy()


class ModelContract:
    """What every model must do, on the small synthetic world whose answer is known (planted topics).
    Each model is trained once per session (``trained``); tests that change it work on a copy."""

    # Holdout NDCG@10 must beat a random ranking by this factor.
    min_lift_over_random = 3.0

    def make(self) -> Recommender:
        raise NotImplementedError

    def trained_model(self, trained):
        """(model, FitReport) of this class's model, trained once per session."""
        return trained(type(self).__name__, self.make)

    @pytest.fixture(scope="class")
    def fitted(self, small_dataset, trained):
        model, _ = self.trained_model(trained)
        return model, small_dataset.holdout(1)

    def test_fit_is_the_one_signature(self, fitted):
        model, _ = fitted
        parameters = inspect.signature(type(model).fit).parameters
        assert list(parameters) == ["self", "data", "before", "validation", "epochs"]
        assert all(parameters[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ("before", "validation", "epochs"))

    def test_capabilities_are_declared_and_kept(self, fitted, small_dataset):
        """Capabilities are class attributes (declared, never probed); what a model declares it does,
        and what it does not declare it refuses with a TypeError."""
        model, split = fitted
        for flag in ("dot_product", "content_aware", "serves_warm_users", "finds_similar_videos"):
            assert isinstance(getattr(type(model), flag), bool), flag
        if model.serves_warm_users:
            warm = model.warm_features()
            assert warm.dtype.kind == "i" and len(warm) and warm.max() < small_dataset.user_features.shape[1]
            metrics = evaluate_model(model.features_only(), small_dataset, split.train, split.test, split.test_users)
            assert metrics.ndcg > 0
        else:
            with pytest.raises(TypeError):
                model.features_only()
            with pytest.raises(TypeError):
                model.warm_features()
        if not model.finds_similar_videos:
            with pytest.raises(TypeError):
                list(model.similar_items(np.arange(3), 5))

    def test_beats_random_on_holdout(self, fitted, small_dataset):
        model, split = fitted
        users = split.test_users
        metrics = evaluate_model(model, small_dataset, split.train, split.test, users)
        rng = np.random.default_rng(0)
        random_metrics = evaluate_ranking(rng.normal(size=(small_dataset.n_users, 4)).astype(np.float32),
                                          rng.normal(size=(small_dataset.n_videos, 4)).astype(np.float32),
                                          split.train, split.test, users)
        assert metrics.ndcg > self.min_lift_over_random * random_metrics.ndcg

    def test_seen_videos_are_filtered(self, fitted, small_dataset):
        model, split = fitted
        users = np.arange(0, small_dataset.n_users, 7)
        for block in model.recommend(small_dataset, users, 10, seen=split.train):
            block_users = users[block.start:block.start + len(block.queries)]
            seen = split.train[block_users].toarray() > 0
            picked = np.take_along_axis(seen, block.items, 1)
            assert not (picked & block.valid).any()

    def test_save_load_gives_identical_scores(self, fitted, small_dataset, tmp_path):
        model, _ = fitted
        model.save(tmp_path / "m")
        loaded = load_model(tmp_path / "m")
        assert type(loaded) is type(model)
        np.testing.assert_array_equal(_scores(loaded, small_dataset), _scores(model, small_dataset))

    def test_forgotten_users_leave_nothing_in_the_saved_state(self, fitted, small_dataset, tmp_path):
        """Erasure: after ``forget_users`` no saved array with a row per user (a table of n_users rows,
        or a bag of n_users + 1 offsets) holds anything for those rows, and other users score as before."""
        model, _ = fitted
        model.save(tmp_path / "m")
        copy = load_model(tmp_path / "m")
        rows, others = np.array([3, 17]), np.array([5, 6, 40])
        before = _scores(copy, small_dataset, others)
        copy.forget_users(rows)
        np.testing.assert_allclose(_scores(copy, small_dataset, others), before, rtol=1e-6, atol=1e-6)
        n_users = small_dataset.n_users
        assert n_users not in (small_dataset.n_videos, small_dataset.n_videos + 1)
        state = copy.state()
        for key, array in state.items():
            if array.ndim and array.shape[0] == n_users:
                assert not array[rows].any(), key
            if key.endswith("indptr") and array.shape[0] == n_users + 1:
                bag = key[:-len("indptr")]
                for row in rows:
                    entries = slice(array[row], array[row + 1])
                    assert not state[bag + "values"][entries].any() and not state[bag + "indices"][entries].any(), bag

    def test_batch_equals_single(self, fitted, small_dataset):
        model, split = fitted
        users = np.array([0, 5, 17, 230])
        batch = np.vstack([b.items for b in model.recommend(small_dataset, users, 10, seen=split.train)])
        for i, u in enumerate(users):
            (single,) = list(model.recommend(small_dataset, np.array([u]), 10, seen=split.train))
            np.testing.assert_array_equal(single.items[0], batch[i])

    def test_fit_is_deterministic(self, small_dataset):
        """The same data and seed give the same model (two short fits, not the tuned one; that
        validation cannot shift training's random stream is tested in test_training)."""
        first, second = self.make(), self.make()
        for model in (first, second):
            model.fit(small_dataset, epochs=2)
        np.testing.assert_array_equal(_scores(first, small_dataset), _scores(second, small_dataset))

    def test_fine_tune_continues_from_the_fitted_state(self, fitted, small_dataset):
        """The serving model: the evaluated weights trained one more epoch over every view; a
        closed-form model has no weights to continue from and fits again on every view."""
        model, split = fitted
        served = copy.deepcopy(model)
        report = served.fine_tune(small_dataset, epochs=1)
        assert report.epochs == 1
        before, after = _scores(model, small_dataset), _scores(served, small_dataset)
        assert before.shape == after.shape
        if isinstance(model, NeuralRecommender):
            assert not np.array_equal(before, after)
            # One epoch moves the weights, it does not start over: the ranking stays close to the evaluated one.
            assert np.corrcoef(before.ravel(), after.ravel())[0, 1] > 0.5
        else:
            again = self.make()
            again.fit(small_dataset)
            np.testing.assert_array_equal(after, _scores(again, small_dataset))
        metrics = evaluate_model(served, small_dataset, split.train, split.test, split.test_users)
        assert metrics.ndcg > 0

    def test_refit_repeats_the_chosen_epochs(self, trained, small_dataset):
        """A refit on every view trains from scratch for the epochs early stopping chose (per stage for
        NeuMF); capped at 2 here to keep it quick."""
        _, report = self.trained_model(trained)
        chosen = FitReport(epochs=report.epochs, best_epoch=min(report.best_epoch, 2),
                           stage_epochs={stage: min(n, 2) for stage, n in report.stage_epochs.items()})
        refitted = self.make().refit(small_dataset, chosen)
        assert refitted.epochs == chosen.stage_epochs.get("neumf", chosen.best_epoch)
        assert refitted.stage_epochs.keys() == chosen.stage_epochs.keys()

    def test_similar_videos_share_the_planted_topic(self, fitted, small_dataset, small_world):
        model, _ = fitted
        if not model.finds_similar_videos:
            pytest.skip("this model has no video-to-video similarity")
        topic = dict(zip(small_world.video_id.tolist(), small_world.video_topic.tolist()))
        watched = np.flatnonzero(np.asarray(small_dataset.interactions().sum(0)).ravel() >= 20)
        same = []
        for block in model.similar_items(watched, 10):
            q, _, items, _ = flatten(block, small_dataset.video_ids, small_dataset.video_ids)
            same.extend(topic[a] == topic[b] for a, b in zip(q.tolist(), items.tolist()))
        chance = 1 / small_world.spec.n_topics
        assert np.mean(same) > 4 * chance


class TestMatrixFactorization(ModelContract):
    def make(self):
        return MatrixFactorization(MFConfig(epochs=25), seed=3)


class TestGMF(ModelContract):
    def make(self):
        return GMF(NeuMFConfig(epochs=25), seed=3)


class TestMLP(ModelContract):
    min_lift_over_random = 2.0

    def make(self):
        return MLP(NeuMFConfig(epochs=15), seed=3)


class TestNeuMF(ModelContract):
    def make(self):
        return NCF(NeuMFConfig(epochs=15), seed=3)


class TestNeuMFReranked(ModelContract):
    """NeuMF as it serves large worlds: the network re-ranks its GMF part's top candidates. Scoring
    settings only: it shares TestNeuMF's trained weights."""

    def make(self):
        return NCF(NeuMFConfig(epochs=15, full_scoring_max_pairs=0, rerank_candidates=40), seed=3)

    def trained_model(self, trained):
        trained_neumf, report = TestNeuMF().trained_model(trained)
        model = self.make()
        model.module, model.shapes = trained_neumf.module, trained_neumf.shapes
        return model, report

    def test_reranking_every_video_equals_full_scoring(self, fitted, small_dataset):
        model, split = fitted
        users = np.arange(0, small_dataset.n_users, 5)
        assert model.reranks(small_dataset)
        every = NCF(NeuMFConfig(epochs=15, full_scoring_max_pairs=0, rerank_candidates=small_dataset.n_videos))
        every.module, every.shapes = model.module, model.shapes
        full = NCF(NeuMFConfig(epochs=15))
        full.module, full.shapes = model.module, model.shapes
        assert not full.reranks(small_dataset)
        got = list(every.recommend(small_dataset, users, 10, seen=split.train))
        want = list(full.recommend(small_dataset, users, 10, seen=split.train))
        # The same network on the same pairs; only float summation order differs between the two paths.
        np.testing.assert_allclose(np.vstack([b.scores for b in got]), np.vstack([b.scores for b in want]),
                                   rtol=1e-5, atol=1e-6)
        assert (np.vstack([b.items for b in got]) == np.vstack([b.items for b in want])).mean() > 0.99


class TestTwoTowerSampledSoftmax(ModelContract):
    """The two-tower as it trains on large catalogues: softmax over the batch's videos plus sampled ones."""

    def make(self):
        return TwoTower(TwoTowerConfig(epochs=20, full_softmax_max_videos=0, sampled_videos=64), seed=3)


class TestTwoTower(ModelContract):
    def make(self):
        return TwoTower(TwoTowerConfig(epochs=20), seed=3)

    def test_domains_alone_nearly_match_known_views(self, fitted, small_dataset):
        """Users scored from their domains only reach >= 80% of the Recall@10 they reach with their ids."""
        model, split = fitted
        full = evaluate_model(model, small_dataset, split.train, split.test, split.test_users)
        warm = evaluate_model(model.features_only(), small_dataset, split.train, split.test, split.test_users)
        assert warm.recall >= 0.8 * full.recall, (warm.recall, full.recall)

    @pytest.mark.parametrize("future_share", [0.0, 1.0])
    def test_training_inputs_predict_later_views_from_earlier_ones(self, small_dataset, future_share):
        """With future_share 1 each user predicts a non-empty suffix of their history (oldest first) from
        the views before it, weighted 0.5 ** (rank from the cut / half-life) and scaled to unit length;
        with 0 each user reconstructs the whole history from all of it."""
        import torch

        half_life = 2.0
        model = TwoTower(TwoTowerConfig(future_share=future_share, domains_only_share=0.0, history_dropout=0.0,
                                        history_half_life=half_life), seed=3)
        model.shapes = model.shapes_for(small_dataset)
        model.prepare(small_dataset, small_dataset.interactions())
        module = model.module.train()
        ordered = small_dataset.ordered_views()
        users = np.flatnonzero(np.diff(ordered.indptr) >= 2)[:40]
        with torch.no_grad():
            vectors, targets, owner = module.training_inputs(torch.as_tensor(users))
        history = module.user_history.weight.detach().numpy()
        for row, user in enumerate(users):
            videos = ordered.indices[ordered.indptr[user]:ordered.indptr[user + 1]]
            mine = targets.numpy()[owner.numpy() == row]
            cut = len(videos) - len(mine)
            if future_share:
                assert 1 <= cut < len(videos)
                weights = 0.5 ** ((cut - 1 - np.arange(cut)) / half_life)
            else:
                assert cut == 0
                cut, weights = len(videos), np.ones(len(videos))
            np.testing.assert_array_equal(mine, videos[len(videos) - len(mine):] if future_share else videos)
            weights = weights / np.linalg.norm(weights)
            features = small_dataset.domain_bags(model.config.domain_half_life_days,
                                                 model.config.domain_recent_weight)[user]
            feature_norm = features.data / features.data.sum()  # the domain bag sums to 1
            plain = feature_norm @ module.user_feature.weight.detach().numpy()[features.indices] + weights @ history[videos[:cut]]
            np.testing.assert_allclose(vectors[row].numpy(), np.tanh(plain), rtol=1e-4, atol=1e-6)

    def test_new_videos_are_placed_by_content(self, small_dataset, small_world):
        """A video without any view gets neighbours of its own topic from its content alone."""
        topic = dict(zip(small_world.video_id.tolist(), small_world.video_topic.tolist()))
        views = small_dataset.interactions()
        watched = np.asarray(views.sum(0)).ravel() > 0
        hidden = np.flatnonzero(watched)[:30]  # pretend these were never watched
        before = small_dataset.end + 1
        keep = ~np.isin(small_dataset.view_video, hidden)
        data = type(small_dataset)(**{**small_dataset.__dict__, "view_user": small_dataset.view_user[keep],
                                      "view_video": small_dataset.view_video[keep],
                                      "viewed_at": small_dataset.viewed_at[keep]})
        model = TwoTower(TwoTowerConfig(epochs=10), seed=3)
        model.fit(data, before=before)
        assert not model.known_items()[hidden].any()
        same = []
        for block in model.similar_items(hidden, 10):
            q, _, items, _ = flatten(block, data.video_ids, data.video_ids)
            same.extend(topic[a] == topic[b] for a, b in zip(q.tolist(), items.tolist()))
        assert np.mean(same) > 0.8


class TestPopularity(ModelContract):
    min_lift_over_random = 2.0

    def make(self):
        return Popularity()


class TestFeaturePopularity(ModelContract):
    def make(self):
        return FeaturePopularity()

    def test_serves_users_from_domains_alone(self, fitted, small_dataset, small_world):
        """Domain-only users get lists dominated by their planted topic."""
        model, _ = fitted
        user_row = {u: i for i, u in enumerate(small_dataset.user_ids.tolist())}
        only = [user_row[u] for u in small_world.user_id[small_world.domain_only_user].tolist() if u in user_row]
        top_topic = dict(zip(small_world.user_id.tolist(), small_world.user_topic_pref.argmax(1).tolist()))
        topic = dict(zip(small_world.video_id.tolist(), small_world.video_topic.tolist()))
        hits = []
        for block in model.recommend(small_dataset, np.array(only), 10):
            users = small_dataset.user_ids[np.array(only)[block.start:block.start + len(block.queries)]]
            for u, row in zip(users.tolist(), small_dataset.video_ids[block.items].tolist()):
                hits.append(np.mean([topic[v] == top_topic[u] for v in row]))
        assert np.mean(hits) > 3 / small_world.spec.n_topics


class TestDomainRidge(ModelContract):
    def make(self):
        return DomainRidge(rank=16, half_life_days=7.0, popularity_damping=0.5)

    def test_serves_users_from_domains_alone(self, fitted, small_dataset, small_world):
        TestFeaturePopularity.test_serves_users_from_domains_alone(self, fitted, small_dataset, small_world)

    def test_at_full_rank_it_is_the_plain_ridge_regression(self, small_dataset):
        """The randomized reduced-rank solve, at a rank the data cannot exceed, scores as the dense
        closed form W = (DᵀD + λI)⁻¹ DᵀX of the bench's anchor."""
        from bench.anchors import DomainRidgeAnchor

        reduced = DomainRidge(rank=10**6, l2=1.0, half_life_days=3.0)
        reduced.fit(small_dataset)
        plain = DomainRidgeAnchor(l2=1.0, half_life_days=3.0)
        plain.fit(small_dataset)
        users = np.arange(0, small_dataset.n_users, 5)
        ours = reduced.user_vectors(small_dataset, users) @ reduced.item_vectors().T
        reference = plain.user_vectors(small_dataset, users) @ plain.item_vectors().T
        np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())

    def test_round_trips_through_save_and_load(self, fitted, small_dataset, tmp_path):
        model, _ = fitted
        model.save(tmp_path / "m")
        loaded = load_model(tmp_path / "m")
        users = np.arange(0, 300, 7)
        np.testing.assert_array_equal(loaded.user_vectors(small_dataset, users), model.user_vectors(small_dataset, users))
        assert loaded.config_dict() == model.config_dict()


def test_the_recent_bag_serves_a_domain_only_user_whose_interest_changed_last_week():
    """On the structured world, domain-only users whose interest changed in the last week get more of
    their new interest when the recent bag is weighted in (the planted truth knows the new interest)."""
    from bench.domains import DomainOnlyUsers
    from rec_models.data.synthetic import WorldSpec, default_end, generate_world, snapshot_of
    from rec_models.data.dataset import Dataset

    world = generate_world(WorldSpec(n_users=4000, n_videos=600, n_views=60_000, n_domain_visits=100_000,
                                     seed=3).at_noise("structured"), default_end())
    data = Dataset.from_snapshot(snapshot_of(world))
    people = DomainOnlyUsers.of(world, data)
    precision = {}
    for weight in (0.0, 1.0):
        model = DomainRidge(rank=32, half_life_days=14.0, popularity_damping=0.25, recent_weight=weight)
        model.fit(data)
        precision[weight] = people.precision(model, data)
    changed = people.changed
    assert changed.sum() > 100
    assert precision[1.0][changed].mean() > precision[0.0][changed].mean() + 0.05
    assert precision[0.0].mean() > 0.5  # and every domain-only user is served far above chance (1 in 32)


def test_two_tower_chooses_a_short_scoring_half_life_where_every_interest_changed(tmp_path):
    """Every user's interest changed in the last week: their last views say what they watch next, and
    the half-life chosen on validation is a short one; it survives a save and load, and a carry."""
    from dataclasses import replace

    from rec_models.data.dataset import Dataset
    from rec_models.data.id_maps import IdMaps
    from rec_models.data.synthetic import WorldSpec, default_end, generate_world, snapshot_of

    spec = replace(WorldSpec(n_users=1500, n_videos=300, n_views=30_000, n_domain_visits=30_000, seed=5)
                   .at_noise("structured"), drift_share=1.0, bot_share=0.0)
    data = Dataset.from_snapshot(snapshot_of(generate_world(spec, default_end())))
    validation = data.validation(1)
    model = TwoTower(TwoTowerConfig(epochs=8), seed=3)
    model.fit(data, before=validation.boundary, validation=validation)
    assert model.scoring_half_life <= 3, model.scoring_half_life
    model.save(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.scoring_half_life == model.scoring_half_life
    carried = TwoTower(TwoTowerConfig(epochs=8), seed=3)
    carried.carry(data, loaded, IdMaps.of(data), before=validation.boundary)
    assert carried.scoring_half_life == model.scoring_half_life
    off = TwoTower(TwoTowerConfig(epochs=2, choose_history_half_life=False), seed=3)
    off.fit(data, before=validation.boundary, validation=validation)
    assert off.scoring_half_life == off.config.history_half_life
