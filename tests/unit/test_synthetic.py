import numpy as np
import pytest

from rec_models.data.synthetic import WorldSpec, default_end, generate_world
from tests.conftest import END


def test_same_seed_same_world():
    a = generate_world(WorldSpec(n_users=300, n_videos=80, n_views=3000, n_domain_visits=3000, seed=5), END)
    b = generate_world(WorldSpec(n_users=300, n_videos=80, n_views=3000, n_domain_visits=3000, seed=5), END)
    for name in ("view_user", "view_video", "viewed_at", "visit_user", "visit_domain", "visit_date", "visits"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.title == b.title and a.tags == b.tags


def test_other_seed_other_world():
    a = generate_world(WorldSpec(n_users=300, n_videos=80, n_views=3000, n_domain_visits=3000, seed=5), END)
    b = generate_world(WorldSpec(n_users=300, n_videos=80, n_views=3000, n_domain_visits=3000, seed=6), END)
    assert not np.array_equal(a.view_video, b.view_video)


def test_sizes_and_window(small_world):
    spec = small_world.spec
    assert len(small_world.view_user) == spec.n_views
    assert len(small_world.visit_user) <= spec.n_domain_visits
    end = END.timestamp()
    assert small_world.viewed_at.max() < end
    assert small_world.viewed_at.min() >= end - spec.days * 86400
    # (user, domain, day) is a key of the domain history.
    keys = set(zip(small_world.visit_user.tolist(), small_world.visit_domain.tolist(), small_world.visit_date.tolist()))
    assert len(keys) == len(small_world.visit_user)


def test_planted_structure(small_world):
    """Views follow each user's topic preferences far above chance."""
    w = small_world
    user_row = {u: i for i, u in enumerate(w.user_id.tolist())}
    topic = dict(zip(w.video_id.tolist(), w.video_topic.tolist()))
    top_topic = w.user_topic_pref.argmax(axis=1)
    matches = np.mean([topic[v] == top_topic[user_row[u]] for u, v in zip(w.view_user.tolist(), w.view_video.tolist())])
    assert matches > 0.4 > 1.5 / w.spec.n_topics
    # Domain-only users exist and have no views.
    domain_only_ids = set(w.user_id[w.domain_only_user].tolist())
    assert domain_only_ids and not domain_only_ids & set(w.view_user.tolist())


def test_long_tail_popularity(small_world):
    counts = np.sort(np.bincount(small_world.view_video))[::-1]
    top_share = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_share > 0.3  # the top 10% of videos take far more than 10% of views


def test_bad_spec_is_refused():
    with pytest.raises(ValueError, match="n_topics"):
        WorldSpec(n_topics=99)
    with pytest.raises(ValueError, match="timezone"):
        generate_world(WorldSpec(), END.replace(tzinfo=None))


def test_default_end_is_latest_past_0200():
    from datetime import datetime, timezone

    assert default_end(datetime(2026, 11, 27, 1, 0, tzinfo=timezone.utc)) == datetime(2026, 11, 26, 2, tzinfo=timezone.utc)
    assert default_end(datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)) == datetime(2026, 11, 27, 2, tzinfo=timezone.utc)


def test_dataset_save_load_round_trip(small_dataset, tmp_path):
    from rec_models.data.dataset import Dataset

    small_dataset.save(tmp_path / "d")
    loaded = Dataset.load(tmp_path / "d")
    for name in ("user_ids", "video_ids", "video_active", "view_user", "view_video", "viewed_at"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(small_dataset, name))
    assert (loaded.user_features != small_dataset.user_features).nnz == 0
    assert (loaded.item_features != small_dataset.item_features).nnz == 0
    assert loaded.item_feature_names == small_dataset.item_feature_names and loaded.end == small_dataset.end
    assert loaded.video_text == small_dataset.video_text
