"""The shared Dataset's derived matrices."""

from __future__ import annotations

import numpy as np


def test_recency_weighted_history_halves_every_half_life_of_views(small_dataset):
    """A user's latest view weighs 1, the one half a life before it 0.5 ...; repeats add up; only views
    before the cut count; the pattern of (user, video) pairs is the binary matrix's."""
    data = small_dataset
    before = float(np.quantile(data.viewed_at, 0.8))
    weighted = data.recency_weighted(before, 4.0)
    binary = data.interactions(before)
    assert (weighted != 0).nnz == binary.nnz and ((weighted != 0) != (binary != 0)).nnz == 0
    for user in np.unique(data.view_user)[:25]:
        mine = (data.view_user == user) & (data.viewed_at < before)
        times, videos = data.viewed_at[mine], data.view_video[mine]
        order = np.lexsort((videos, times))  # oldest first; ties: the larger id is the later
        expected: dict[int, float] = {}
        for rank, video in enumerate(videos[order][::-1]):
            expected[int(video)] = expected.get(int(video), 0.0) + max(0.5 ** (rank / 4.0), 2.0 ** -100)
        row = weighted[int(user)]
        got = dict(zip(row.indices.tolist(), row.data.tolist()))
        assert got.keys() == expected.keys()
        np.testing.assert_allclose([got[v] for v in expected], list(expected.values()), rtol=1e-6)


def test_ordered_views_lists_each_video_once_at_its_latest_view_oldest_first(small_dataset):
    data = small_dataset
    before = float(np.quantile(data.viewed_at, 0.8))
    ordered = data.ordered_views(before)
    binary = data.interactions(before)
    assert ordered.nnz == binary.nnz
    for user in np.unique(data.view_user)[:25]:
        mine = (data.view_user == user) & (data.viewed_at < before)
        latest: dict[int, tuple] = {}
        for t, v in zip(data.viewed_at[mine].tolist(), data.view_video[mine].tolist()):
            latest[v] = max(latest.get(v, (t, v)), (t, v))
        expected = [v for _, v in sorted(latest.values())]
        got = ordered.indices[ordered.indptr[user]:ordered.indptr[user + 1]].tolist()
        assert got == expected


def test_domain_bags_weigh_a_day_by_its_age():
    from rec_models.data.dataset import DAY, Dataset

    end = 100 * DAY + 2 * 3600  # data up to 02:00 of day 100: day 100 is age 0
    data = Dataset.from_columns(
        user_ids=np.array([1, 2]), video_ids=np.array([5]), video_active=np.array([True]),
        view_user_ids=np.array([1]), view_video_ids=np.array([5]), viewed_at=np.array([end - 10.0]),
        user_feature_triples=(np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([4.0, 4.0, 2.0])),
        user_feature_names=["a.com", "b.com"], end=end, video_text={5: {"title": "x", "description": "", "tags": []}},
        user_feature_days=np.array([100, 93, 100]))
    assert data.domain_bags(0.0) is data.user_features
    np.testing.assert_allclose(data.domain_bags(7.0).toarray(), np.log1p([[4.0, 2.0], [0.0, 2.0]]), rtol=1e-6)
    np.testing.assert_allclose(data.user_features.toarray(), np.log1p([[4.0, 4.0], [0.0, 2.0]]), rtol=1e-6)
