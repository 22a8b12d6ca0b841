"""The benchmark protocols do exactly what their definitions say, on tiny hand-made data."""

import numpy as np
import pytest
from scipy import sparse

from rec_models.data.dataset import Dataset
from rec_models.evaluation.bootstrap import confidence_interval, paired_p_value
from rec_models.evaluation.protocols import (cold_users, last_one_out, latest_fraction, rank_positive_full,
                                             rank_positive_sampled, sampled_negatives)
from rec_models.models.base import Recommender


def tiny(views):
    """views: (user_id, item_id, timestamp) triples."""
    users, items, ts = (np.array(c) for c in zip(*views))
    user_ids, item_ids = np.unique(users), np.unique(items)
    return Dataset.from_columns(
        user_ids=user_ids, video_ids=item_ids, video_active=np.ones(len(item_ids), bool),
        view_user_ids=users, view_video_ids=items, viewed_at=ts.astype(float),
        user_feature_triples=(np.zeros(0, int), np.zeros(0, int), np.zeros(0)), user_feature_names=[],
        end=float(ts.max() + 1), video_text={int(i): {"title": f"item {i}", "tags": []} for i in item_ids},
    )


class Fixed(Recommender):
    """Scores given by a fixed matrix."""

    name = "fixed"

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)

    def fit(self, data, before=None, validation=None):
        raise NotImplementedError

    def user_vectors(self, data, users):
        return np.eye(self.scores.shape[0], dtype=np.float32)[users]

    def item_vectors(self):
        return self.scores.T.copy()


def test_last_one_out_takes_the_latest_and_breaks_ties_by_larger_item():
    d = tiny([(1, 10, 5), (1, 11, 9), (1, 12, 9), (2, 10, 3), (2, 13, 1)])
    test = last_one_out(d)
    picked = {(int(d.user_ids[u]), int(d.video_ids[i])) for u, i in zip(d.view_user[test], d.view_video[test])}
    assert picked == {(1, 12), (2, 10)}


def test_latest_fraction_holds_out_at_least_one():
    views = [(1, i, i) for i in range(10)] + [(2, 0, 1), (2, 1, 2)]
    d = tiny(views)
    test = latest_fraction(d, 0.2)
    held = sorted((int(d.user_ids[u]), int(d.video_ids[i])) for u, i in zip(d.view_user[test], d.view_video[test]))
    assert held == [(1, 8), (1, 9), (2, 1)]


def test_ties_count_against_the_positive():
    d = tiny([(1, 10, 1), (1, 11, 2), (1, 12, 3), (1, 13, 4)])
    model = Fixed([[0.0, 0.5, 0.5, 0.9]])  # positive item 12 (col 2) ties with col 1
    train = sparse.csr_matrix(np.array([[1, 0, 0, 0]], dtype=np.float32))
    ranks = rank_positive_full(model, d, train, np.array([0]), np.array([2]))
    assert ranks.ranks.tolist() == [2]  # col 3 beats it, col 1 ties: both ahead; col 0 is training
    sampled = rank_positive_sampled(model, d, np.array([0]), np.array([2]), np.array([[1, 0]]))
    assert sampled.ranks.tolist() == [1]
    assert ranks.ndcg(10)[0] == pytest.approx(1 / np.log2(4))


def test_sampled_negatives_are_never_interacted_and_reproducible():
    d = tiny([(u, i, u + i) for u in range(1, 6) for i in range(0, 150, u + 1)])
    users = np.arange(d.n_users)
    seen = d.interactions()
    a = sampled_negatives(d, users, seen, n=20)
    b = sampled_negatives(d, users, seen, n=20)
    np.testing.assert_array_equal(a, b)
    for u in users:
        assert not set(a[u]) & set(seen[u].indices)
        assert len(set(a[u])) == 20


def test_cold_users_are_a_seeded_fifth():
    d = tiny([(u, 1, u) for u in range(1, 101)])
    held = cold_users(d, 0.2, seed=0)
    assert len(held) == 20 and np.array_equal(held, cold_users(d, 0.2, seed=0))
    assert np.array_equal(held, np.sort(np.random.default_rng(0).permutation(100)[:20]))


def test_bootstrap():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.1, 500)
    ci = confidence_interval(a)
    assert ci.low < a.mean() < ci.high and ci.high - ci.low < 0.05
    assert paired_p_value(a + 0.05, a) < 0.01
    assert paired_p_value(a + rng.normal(0, 0.1, 500), a) > 0.05
