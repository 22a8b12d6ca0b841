"""The contract every model passes on the small synthetic world (known answer: topics)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from rec_models.config import MFConfig, NeuMFConfig, TwoTowerConfig
from rec_models.evaluation import evaluate_model, evaluate_ranking
from rec_models.models import GMF, MLP, NCF, TwoTower, FeaturePopularity, MatrixFactorization, Popularity, Recommender
from rec_models.topn import flatten


def _scores(model, data, users=np.arange(0, 400, 3)):
    return model.score_rows(data)(users).cpu().numpy()


class ModelContract:
    has_similarity = True
    # Holdout NDCG@10 must beat a random ranking by this factor.
    min_lift_over_random = 3.0

    def make(self) -> Recommender:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    def fitted(self, small_dataset):
        split = small_dataset.holdout(1)
        validation = small_dataset.validation(1)
        model = self.make()
        model.fit(small_dataset, before=validation.boundary, validation=validation)
        return model, split

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
        loaded = Recommender.load(tmp_path / "m")
        np.testing.assert_array_equal(_scores(loaded, small_dataset), _scores(model, small_dataset))

    def test_batch_equals_single(self, fitted, small_dataset):
        model, split = fitted
        users = np.array([0, 5, 17, 230])
        batch = np.vstack([b.items for b in model.recommend(small_dataset, users, 10, seen=split.train)])
        for i, u in enumerate(users):
            (single,) = list(model.recommend(small_dataset, np.array([u]), 10, seen=split.train))
            np.testing.assert_array_equal(single.items[0], batch[i])

    def test_refit_is_deterministic(self, fitted, small_dataset):
        model, split = fitted
        validation = small_dataset.validation(1)
        again = self.make()
        again.fit(small_dataset, before=validation.boundary, validation=validation)
        np.testing.assert_array_equal(_scores(again, small_dataset), _scores(model, small_dataset))

    def test_fine_tune_continues_from_the_evaluated_weights(self, fitted, small_dataset):
        """The serving model: the evaluated weights trained one more epoch over every view."""
        model, split = fitted
        if not hasattr(model, "fine_tune"):
            pytest.skip("not trained by the shared loop")
        served = copy.deepcopy(model)
        report = served.fine_tune(small_dataset, epochs=1)
        assert report.epochs == 1
        before, after = _scores(model, small_dataset), _scores(served, small_dataset)
        assert before.shape == after.shape and not np.array_equal(before, after)
        # One epoch moves the weights, it does not start over: the ranking stays close to the evaluated one.
        assert np.corrcoef(before.ravel(), after.ravel())[0, 1] > 0.5
        metrics = evaluate_model(served, small_dataset, split.train, split.test, split.test_users)
        assert metrics.ndcg > 0

    def test_similar_videos_share_the_planted_topic(self, fitted, small_dataset, small_world):
        model, _ = fitted
        if not self.has_similarity:
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
    has_similarity = False
    min_lift_over_random = 2.0

    def make(self):
        return MLP(NeuMFConfig(epochs=15), seed=3)


class TestNeuMF(ModelContract):
    def make(self):
        return NCF(NeuMFConfig(epochs=15), seed=3)


class TestNeuMFReranked(ModelContract):
    """NeuMF as it serves large worlds: the network re-ranks its GMF part's top candidates."""

    def make(self):
        return NCF(NeuMFConfig(epochs=15, full_scoring_max_pairs=0, rerank_candidates=40), seed=3)

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
        model.features_only = True
        try:
            warm = evaluate_model(model, small_dataset, split.train, split.test, split.test_users)
        finally:
            model.features_only = False
        assert warm.recall >= 0.8 * full.recall, (warm.recall, full.recall)

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
    has_similarity = False
    min_lift_over_random = 2.0

    def make(self):
        return Popularity()


class TestFeaturePopularity(ModelContract):
    has_similarity = False

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
