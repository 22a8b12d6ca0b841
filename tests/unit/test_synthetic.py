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


NOISY_SMALL = WorldSpec(n_users=1200, n_videos=300, n_views=30_000, n_domain_visits=36_000, seed=11)


def test_clean_level_is_the_default_world():
    spec = WorldSpec(n_users=300, n_videos=80, n_views=3000, n_domain_visits=3000, seed=5)
    a, b = generate_world(spec, END), generate_world(spec.at_noise("clean"), END)
    for name in ("view_video", "viewed_at", "visit_domain", "visit_date"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.tags == b.tags and a.domain_names == b.domain_names


def test_noisy_level_has_the_noise_it_names():
    clean = generate_world(NOISY_SMALL, END)
    w = generate_world(NOISY_SMALL.at_noise("noisy"), END)
    visited = w.domain_topic[w.visit_domain]
    topical = visited != -1  # every visit but those to the global domains
    assert ((visited == -2).sum() / topical.sum()) >= 1 / 3  # hubs take a third of topical visits
    assert NOISY_SMALL.at_noise("noisy").hub_topics >= 3
    topics = w.topic_names
    # About a fifth of the tags are wrong: neither the topic's name or words nor a word of the video's text.
    from rec_models.data.synthetic import TOPIC_WORDS

    own = [set(TOPIC_WORDS[topics[t]]) | {topics[t]} for t in w.video_topic]
    text = [set(f"{title} {description}".lower().replace(".", "").split()) for title, description in
            zip(w.title, w.description)]
    wrong = np.mean([tag not in own_words and tag not in words
                     for tags, own_words, words in zip(w.tags, own, text) for tag in tags])
    assert 0.12 < wrong < 0.25, wrong
    # About half of the title's topic words come from a neighbouring topic.
    borrowed = np.mean([word not in own_words for title, own_words in zip(w.title, own)
                        for word in title.lower().split()[1:3]])
    assert 0.35 < borrowed < 0.65, borrowed
    # Some users' views after the midpoint follow other topics than before it.
    midpoint = END.timestamp() - NOISY_SMALL.days * 86400 / 2
    topic_of = dict(zip(w.video_id.tolist(), w.video_topic.tolist()))

    def late_topic_match(world):
        late = world.viewed_at >= midpoint
        users = {u: i for i, u in enumerate(world.user_id.tolist())}
        early_top = world.user_topic_pref.argmax(1)
        return np.mean([topic_of[v] == early_top[users[u]]
                        for u, v in zip(world.view_user[late].tolist(), world.view_video[late].tolist())])

    assert late_topic_match(w) < late_topic_match(clean) - 0.05


def test_unknown_noise_level_is_refused():
    with pytest.raises(ValueError, match="unknown noise level 'loud'"):
        WorldSpec().at_noise("loud")
    with pytest.raises(ValueError, match="hub_visit_share needs hub_domains"):
        WorldSpec(hub_visit_share=0.3)
    with pytest.raises(ValueError, match="wrong_tag_share must be between 0 and 1"):
        WorldSpec(wrong_tag_share=1.5)


STRUCTURED_SMALL = WorldSpec(n_users=3000, n_videos=600, n_views=40_000, n_domain_visits=60_000, seed=8).at_noise(
    "structured")


def test_the_structured_level_plants_interests_bots_domain_only_users_and_last_week_changes():
    w = generate_world(STRUCTURED_SMALL, END)
    n_interests = STRUCTURED_SMALL.n_topics * STRUCTURED_SMALL.interests_per_topic
    assert w.user_interest_now.shape == (3000, n_interests) and w.video_interest.max() == n_interests - 1
    assert np.array_equal(w.video_topic, w.video_interest // STRUCTURED_SMALL.interests_per_topic)
    assert 0.15 < w.domain_only_user.mean() < 0.25 and 0.25 < w.changed_user.mean() < 0.35
    assert 0.01 < w.bot_user.mean() < 0.04 and not (w.bot_user & w.changed_user).any()
    week_ago = END.timestamp() - 7 * 86400
    assert (w.changed_at[w.changed_user] >= week_ago).all() and np.isnan(w.changed_at[~w.changed_user]).all()
    # Domain-only users watch nothing; a changed user's views after the change are of the new interest.
    row = {u: i for i, u in enumerate(w.user_id.tolist())}
    users = np.array([row[u] for u in w.view_user.tolist()])
    assert not w.domain_only_user[users].any()
    interest_of = dict(zip(w.video_id.tolist(), w.video_interest.tolist()))
    viewed = np.array([interest_of[v] for v in w.view_video.tolist()])
    after = w.changed_user[users] & (w.viewed_at >= np.nan_to_num(w.changed_at[users], nan=np.inf))
    in_new = w.user_interest_now[users[after], viewed[after]] > 0
    assert in_new.mean() > 0.8  # the rest: the noise share of popular views
    # Universal domains, portals per topic and hubs are all visited; bots visit the most domains each.
    kinds = w.domain_topic[w.visit_domain]
    assert (kinds == -1).mean() > 0.2 and (kinds == -2).any()
    assert sum(name.endswith("-portal.com") for name in w.domain_names) == STRUCTURED_SMALL.n_topics
    per_user = {u: len(set(w.visit_domain[w.visit_user == u].tolist())) for u in w.user_id[:400].tolist()}
    bots = [per_user[u] for u, b in zip(w.user_id[:400].tolist(), w.bot_user[:400]) if b]
    people = [per_user[u] for u, b in zip(w.user_id[:400].tolist(), w.bot_user[:400]) if not b]
    assert bots and min(bots) > np.median(people)


def test_structured_settings_need_the_structured_world():
    with pytest.raises(ValueError, match="bot_share need interests_per_topic >= 2"):
        WorldSpec(bot_share=0.1)
    with pytest.raises(ValueError, match="drift_days must be between 0 and days"):
        WorldSpec(interests_per_topic=2, drift_days=40)
