"""A seeded synthetic video service with planted structure, so tests can check what models recover.

Topics drive everything: domains and videos belong to topics (plus a few domains everybody visits),
titles and tags come from topic vocabularies, users have topic preferences that drive both the
domains they visit and the videos they watch, popularity is long-tailed, and some users have
domains but no views. Fully vectorised, so the same code seeds the 20M-view scale world.

The default world is clean (each domain and word belongs to one topic, tags are right, tastes stay
put); ``NOISE_LEVELS["noisy"]`` adds what real browsing has: hub domains shared by several topics,
vocabularies that overlap between neighbouring topics, wrong tags and users whose interests drift.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import numpy as np

from rec_models.data.snapshot import Snapshot

TOPIC_WORDS: dict[str, list[str]] = {
    "cooking": ["recipe", "pasta", "bake", "kitchen", "chef", "spicy", "dessert", "grill", "vegan", "soup"],
    "football": ["goal", "league", "match", "striker", "derby", "keeper", "transfer", "penalty", "coach", "cup"],
    "gaming": ["speedrun", "boss", "quest", "console", "pixel", "raid", "loot", "esports", "indie", "retro"],
    "music": ["guitar", "album", "concert", "remix", "vinyl", "jazz", "chorus", "drummer", "lyrics", "synth"],
    "science": ["quantum", "galaxy", "molecule", "fossil", "rocket", "genome", "physics", "telescope", "climate", "neuron"],
    "travel": ["island", "backpack", "hostel", "roadtrip", "mountain", "beach", "passport", "safari", "cruise", "village"],
    "finance": ["stocks", "budget", "crypto", "invest", "savings", "dividend", "mortgage", "index", "inflation", "tax"],
    "fitness": ["workout", "yoga", "squat", "cardio", "protein", "marathon", "stretch", "gym", "pilates", "hiit"],
    "tech": ["laptop", "smartphone", "unboxing", "linux", "gadget", "chip", "benchmark", "keyboard", "drone", "camera"],
    "cars": ["engine", "drift", "sedan", "electric", "rally", "garage", "turbo", "classic", "tyres", "supercar"],
    "fashion": ["outfit", "runway", "sneakers", "vintage", "denim", "makeup", "jacket", "stylist", "lookbook", "thrift"],
    "movies": ["trailer", "director", "sequel", "review", "oscar", "horror", "cinema", "scene", "actor", "premiere"],
}
GLOBAL_DOMAINS = ["google.com", "youtube.com", "wikipedia.org", "mail.example.com", "news.example.org"]
_TLDS = ["com", "net", "org", "io", "tv"]
_FILLER = ["the", "best", "ultimate", "guide", "top", "daily", "live", "how", "to", "new"]


@dataclass(frozen=True)
class WorldSpec:
    n_users: int = 3000
    n_videos: int = 600
    n_views: int = 60_000
    n_domain_visits: int = 90_000
    n_topics: int = 8
    domains_per_topic: int = 12
    days: int = 28
    # Users who visit domains but never watched anything: the warm-start population.
    domain_only_share: float = 0.1
    # Share of views and visits that ignore the user's topics (noise).
    noise_share: float = 0.1
    # Hub domains (portals), each shared by ``hub_topics`` neighbouring topics, and the share of
    # topical visits that land on a hub of the visit's topic instead of a topic's own domain.
    hub_domains: int = 0
    hub_topics: int = 3
    hub_visit_share: float = 0.0
    # Share of a video's words (title, description, tags) drawn from a neighbouring topic.
    neighbour_word_share: float = 0.0
    # Share of tags replaced by a word of another, random topic.
    wrong_tag_share: float = 0.0
    # Share of users whose preferences change halfway through the window (views and visits after the
    # midpoint follow their new topics).
    drift_share: float = 0.0
    # Fine interests inside each topic (1: a topic is one interest, the worlds above). Above 1 the world
    # is the "structured" one (``_generate_interests``): videos and domains belong to interests, each
    # topic has portal domains every interest of it visits, hubs are shared by interests of several
    # topics, users hold one or two interests, some are bots, and drifting users change interest at a
    # moment within the last ``drift_days`` days.
    interests_per_topic: int = 1
    portal_visit_share: float = 0.0
    sibling_visit_share: float = 0.0  # share of an interest's own-domain visits landing on a sibling's domains
    bot_share: float = 0.0
    drift_days: int = 0
    seed: int = 7

    def __post_init__(self) -> None:
        if not 1 <= self.n_topics <= len(TOPIC_WORDS):
            raise ValueError(f"n_topics must be between 1 and {len(TOPIC_WORDS)}")
        for name in ("n_users", "n_videos", "n_views", "n_domain_visits", "days", "domains_per_topic"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.n_videos < self.n_topics:
            raise ValueError("n_videos must be >= n_topics")
        for name in ("noise_share", "hub_visit_share", "neighbour_word_share", "wrong_tag_share", "drift_share",
                     "domain_only_share", "portal_visit_share", "sibling_visit_share", "bot_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.hub_visit_share and not self.hub_domains:
            raise ValueError("hub_visit_share needs hub_domains >= 1")
        if not 1 <= self.hub_topics <= self.n_topics:
            raise ValueError(f"hub_topics must be between 1 and n_topics ({self.n_topics})")
        if self.interests_per_topic < 1:
            raise ValueError("interests_per_topic must be >= 1")
        if not 0 <= self.drift_days <= self.days:
            raise ValueError(f"drift_days must be between 0 and days ({self.days})")
        structured_only = [name for name in ("portal_visit_share", "sibling_visit_share", "bot_share", "drift_days")
                          if getattr(self, name)]
        if structured_only and self.interests_per_topic == 1:
            raise ValueError(f"{', '.join(structured_only)} need interests_per_topic >= 2 (the structured world)")

    def at_noise(self, level: str) -> "WorldSpec":
        """This world at a named noise level (``NOISE_LEVELS``)."""
        if level not in NOISE_LEVELS:
            raise ValueError(f"unknown noise level {level!r}: expected one of {', '.join(NOISE_LEVELS)}")
        return replace(self, **NOISE_LEVELS[level])


# Named noise levels. "noisy": over a third of topical visits on hubs shared by three topics, half of
# each video's words from a neighbouring topic, a fifth of tags wrong, a quarter of users drifting.
# "structured": where structure beats counting (``_generate_interests``): four interests per topic
# sharing its vocabulary and its portal domains, hubs over interests of three topics, universal
# domains, 2% bots, a fifth of users with domains only, 30% whose interest changed in the last week.
_TOPIC_LEVEL = {"interests_per_topic": 1, "portal_visit_share": 0.0, "sibling_visit_share": 0.0, "bot_share": 0.0,
                "drift_days": 0}
NOISE_LEVELS: dict[str, dict] = {
    "clean": {"hub_domains": 0, "hub_visit_share": 0.0, "neighbour_word_share": 0.0, "wrong_tag_share": 0.0,
              "drift_share": 0.0, **_TOPIC_LEVEL},
    "noisy": {"hub_domains": 8, "hub_topics": 3, "hub_visit_share": 0.35, "neighbour_word_share": 0.5,
              "wrong_tag_share": 0.2, "drift_share": 0.25, **_TOPIC_LEVEL},
    "structured": {"interests_per_topic": 4, "hub_domains": 12, "hub_topics": 3, "hub_visit_share": 0.2,
                   "portal_visit_share": 0.3, "sibling_visit_share": 0.4, "neighbour_word_share": 0.2, "wrong_tag_share": 0.1,
                   "drift_share": 0.3, "drift_days": 7, "bot_share": 0.02, "domain_only_share": 0.2},
}


@dataclass
class World:
    """Source rows (as column arrays) plus the planted truth."""

    spec: WorldSpec
    end: datetime
    topic_names: list[str]
    # videos
    video_id: np.ndarray
    video_topic: np.ndarray
    title: list[str]
    description: list[str]
    tags: list[list[str]]
    published_at: np.ndarray  # epoch seconds
    is_active: np.ndarray
    # views
    view_user: np.ndarray
    view_video: np.ndarray
    viewed_at: np.ndarray  # epoch seconds
    watch_seconds: np.ndarray
    # domain visits
    domain_names: list[str]
    domain_topic: np.ndarray  # -1 for global domains, -2 for hubs shared by several topics
    visit_user: np.ndarray
    visit_domain: np.ndarray  # index into domain_names
    visit_date: np.ndarray  # days since epoch
    visits: np.ndarray
    # truth
    user_id: np.ndarray
    user_topic_pref: np.ndarray  # (n_users, n_topics)
    domain_only_user: np.ndarray  # bool per user
    # The structured world's truth (None elsewhere): each video's interest, each user's interests now
    # (after any change), who changed interest and when, who is a bot.
    video_interest: np.ndarray | None = None
    user_interest_now: np.ndarray | None = None  # (n_users, n_interests), rows sum to 1
    changed_user: np.ndarray | None = None
    changed_at: np.ndarray | None = None  # epoch seconds; nan for users who did not change
    bot_user: np.ndarray | None = None

    def current_interest_of_videos(self) -> np.ndarray:
        """Each video's interest (its topic in a world of one interest per topic)."""
        return self.video_topic if self.video_interest is None else self.video_interest

    def current_interests(self) -> np.ndarray:
        """(n_users, n_interests) bool: the interests a user holds now (their topics before any drift
        in a world of one interest per topic, where preferences are dense: the top one)."""
        if self.user_interest_now is not None:
            return self.user_interest_now > 0
        top = np.zeros_like(self.user_topic_pref, dtype=bool)
        top[np.arange(len(top)), self.user_topic_pref.argmax(1)] = True
        return top


def generate_world(spec: WorldSpec, end: datetime) -> World:
    """Generate the world whose data ends just before ``end`` (views and visits in the prior ``days``)."""
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    if spec.interests_per_topic > 1:
        return _generate_interests(spec, end)
    rng = np.random.default_rng(spec.seed)
    topics = list(TOPIC_WORDS)[: spec.n_topics]
    T = spec.n_topics

    # Users: concentrated topic preferences (1-2 topics dominate).
    pref = rng.dirichlet(np.full(T, 0.3), size=spec.n_users)
    user_id = np.arange(1, spec.n_users + 1, dtype=np.int64) * 10 + 3  # ids are not 0..n-1 on purpose
    domain_only = rng.random(spec.n_users) < spec.domain_only_share

    # Videos: topic, long-tailed popularity, content from the topic's vocabulary.
    video_topic = np.concatenate([np.arange(T), rng.integers(0, T, spec.n_videos - T)])
    rng.shuffle(video_topic)
    popularity = rng.permutation(spec.n_videos).astype(np.float64)
    popularity = (popularity + 1.0) ** -0.9  # Zipf-like weights, order unrelated to topic
    video_id = np.arange(1, spec.n_videos + 1, dtype=np.int64) * 7 + 100
    title, description, tags = _video_texts(rng, topics, video_topic, spec)
    end_s = int(end.timestamp())
    published_at = end_s - rng.integers(spec.days * 86400, 3 * spec.days * 86400, spec.n_videos)
    is_active = rng.random(spec.n_videos) > 0.03

    # Views: user by activity (heavy tail), topic by preference, video by popularity within topic.
    activity = rng.lognormal(0.0, 1.0, spec.n_users) * ~domain_only
    view_u = _sample(rng, activity, spec.n_views)
    view_t = _sample_rows(rng, pref[view_u])
    view_v = _sample_within_groups(rng, video_topic, popularity, view_t, T)
    noise = rng.random(spec.n_views) < spec.noise_share
    view_v[noise] = _sample(rng, popularity, int(noise.sum()))
    viewed_at = end_s - rng.integers(1, spec.days * 86400, spec.n_views)
    watch = np.minimum(rng.lognormal(5.0, 1.0, spec.n_views), 4 * 3600).astype(np.int32) + 1
    # Extra draws only when a noise setting is on, so the clean world stays the same world.
    drifting = rng.random(spec.n_users) < spec.drift_share if spec.drift_share else np.zeros(spec.n_users, bool)
    new_pref = rng.dirichlet(np.full(T, 0.3), size=spec.n_users) if spec.drift_share else pref
    midpoint = end_s - spec.days * 86400 // 2
    late = np.flatnonzero(drifting[view_u] & (viewed_at >= midpoint) & ~noise)
    if len(late):
        view_v[late] = _sample_within_groups(rng, video_topic, popularity, _sample_rows(rng, new_pref[view_u[late]]), T)

    # Domains: per topic plus global ones; visits follow the same preferences as views.
    domain_names, domain_topic = _domains(rng, topics, spec.domains_per_topic)
    visit_activity = rng.lognormal(0.0, 0.7, spec.n_users)
    n_raw = int(spec.n_domain_visits * 1.3)  # oversample: duplicates of (user, domain, day) merge below
    vis_u = _sample(rng, visit_activity, n_raw)
    vis_t = _sample_rows(rng, pref[vis_u])
    topical = np.flatnonzero(domain_topic >= 0)
    domain_weight = np.where(domain_topic >= 0, rng.lognormal(0, 0.5, len(domain_names)), 0.0)
    vis_d = topical[_sample_within_groups(rng, domain_topic[topical], domain_weight[topical], vis_t, T)]
    to_global = rng.random(n_raw) < 0.2 + spec.noise_share
    global_idx = np.flatnonzero(domain_topic < 0)
    vis_d[to_global] = rng.choice(global_idx, int(to_global.sum()))
    end_day = end_s // 86400
    vis_day = end_day - rng.integers(1, spec.days + 1, n_raw)
    late = np.flatnonzero(drifting[vis_u] & (vis_day >= midpoint // 86400) & ~to_global)
    if len(late):
        vis_t[late] = _sample_rows(rng, new_pref[vis_u[late]])
        vis_d[late] = topical[_sample_within_groups(rng, domain_topic[topical], domain_weight[topical], vis_t[late], T)]
    if spec.hub_domains:
        domain_names, domain_topic, vis_d = _move_to_hubs(rng, spec, domain_names, domain_topic, vis_d, vis_t,
                                                          ~to_global)
    key = (vis_u.astype(np.int64) * len(domain_names) + vis_d) * 100_000 + vis_day
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)[: spec.n_domain_visits]
    visits = 1 + rng.poisson(2.0, len(first)).astype(np.int32)

    return World(
        spec=spec, end=end, topic_names=topics,
        video_id=video_id, video_topic=video_topic, title=title, description=description, tags=tags,
        published_at=published_at, is_active=is_active,
        view_user=user_id[view_u], view_video=video_id[view_v], viewed_at=viewed_at, watch_seconds=watch,
        domain_names=domain_names, domain_topic=domain_topic,
        visit_user=user_id[vis_u[first]], visit_domain=vis_d[first], visit_date=vis_day[first], visits=visits,
        user_id=user_id, user_topic_pref=pref, domain_only_user=domain_only,
    )


def _generate_interests(spec: WorldSpec, end: datetime) -> World:
    """The structured world: interests finer than topics, where counting domain visits is not enough.

    Interest i belongs to topic i // interests_per_topic. A user holds one interest (60%) or two; a
    drifting user takes a new one at a moment in the last ``drift_days`` days, after which their views
    and visits follow it alone. Visits go to universal domains (everybody), to the portals of the
    interest's topic (every interest of the topic alike), to hubs shared by interests of several
    topics, or to the interest's own domains: only the last tell interests apart. Bots visit any
    domain, many times, and watch popular videos of any interest. Videos speak their topic's
    vocabulary, one word in three their interest's own."""
    rng = np.random.default_rng(spec.seed)
    topics = list(TOPIC_WORDS)[: spec.n_topics]
    n_interests = spec.n_topics * spec.interests_per_topic
    n, end_s = spec.n_users, int(end.timestamp())
    end_day = end_s // 86400

    first = rng.integers(0, n_interests, n)
    second = (first + rng.integers(1, n_interests, n)) % n_interests
    first_weight = np.where(rng.random(n) < 0.4, rng.uniform(0.5, 0.8, n), 1.0)
    pref = np.zeros((n, n_interests))
    pref[np.arange(n), first] = first_weight
    pref[np.arange(n), second] += 1.0 - first_weight
    bot = rng.random(n) < spec.bot_share
    changed = (rng.random(n) < spec.drift_share) & ~bot
    new = (first + rng.integers(1, n_interests, n)) % n_interests
    new = np.where(new == second, (new + 1) % n_interests, new)
    new = np.where(new == first, (new + 1) % n_interests, new)  # neither interest held before
    changed_at = np.where(changed, end_s - rng.integers(1, max(spec.drift_days, 1) * 86400, n), np.nan)
    now = pref.copy()
    now[changed] = 0.0
    now[changed, new[changed]] = 1.0
    now[bot] = 1.0 / n_interests
    domain_only = rng.random(n) < spec.domain_only_share
    user_id = np.arange(1, n + 1, dtype=np.int64) * 10 + 3

    video_interest = np.concatenate([np.arange(n_interests),
                                     rng.integers(0, n_interests, max(0, spec.n_videos - n_interests))])[: spec.n_videos]
    rng.shuffle(video_interest)
    video_topic = video_interest // spec.interests_per_topic
    popularity = (rng.permutation(spec.n_videos).astype(np.float64) + 1.0) ** -0.9
    video_id = np.arange(1, spec.n_videos + 1, dtype=np.int64) * 7 + 100
    title, description, tags = _video_texts(rng, topics, video_topic, spec)
    for i, interest in enumerate(video_interest):  # the interest's own word leads the title
        own = TOPIC_WORDS[topics[video_topic[i]]][interest % spec.interests_per_topic]
        title[i] = f"{own.title()} {title[i]}"
    published_at = end_s - rng.integers(spec.days * 86400, 3 * spec.days * 86400, spec.n_videos)
    is_active = rng.random(spec.n_videos) > 0.03

    def interest_at(users: np.ndarray, moments: np.ndarray) -> np.ndarray:
        held = np.where(rng.random(len(users)) < first_weight[users], first[users], second[users])
        return np.where(changed[users] & (moments >= changed_at[users]), new[users], held)

    activity = rng.lognormal(0.0, 1.0, n) * ~domain_only
    view_u = _sample(rng, activity, spec.n_views)
    viewed_at = end_s - rng.integers(1, spec.days * 86400, spec.n_views)
    view_v = _sample_within_groups(rng, video_interest, popularity, interest_at(view_u, viewed_at), n_interests)
    noise = (rng.random(spec.n_views) < spec.noise_share) | bot[view_u]
    view_v[noise] = _sample(rng, popularity, int(noise.sum()))
    watch = np.minimum(rng.lognormal(5.0, 1.0, spec.n_views), 4 * 3600).astype(np.int32) + 1

    names, domain_topic, domain_interest = list(GLOBAL_DOMAINS), [-1] * len(GLOBAL_DOMAINS), [-1] * len(GLOBAL_DOMAINS)
    own_per_interest = max(2, spec.domains_per_topic // spec.interests_per_topic)
    for i in range(n_interests):
        t = i // spec.interests_per_topic
        word = TOPIC_WORDS[topics[t]][i % spec.interests_per_topic]
        for k in range(own_per_interest):
            names.append(f"{word}-{topics[t]}{k}.{_TLDS[(i + k) % len(_TLDS)]}")
            domain_topic.append(t)
            domain_interest.append(i)
    portal_of_topic = len(names) + np.arange(spec.n_topics)
    for t, topic in enumerate(topics):
        names.append(f"{topic}-portal.com")
        domain_topic.append(t)
        domain_interest.append(-1)
    hub_index = len(names) + np.arange(spec.hub_domains)
    # Hub h covers one random interest in each of hub_topics neighbouring topics.
    hub_covers = np.zeros((spec.hub_domains, n_interests), dtype=bool)
    for h in range(spec.hub_domains):
        for j in range(spec.hub_topics):
            t = (h + j) % spec.n_topics
            hub_covers[h, t * spec.interests_per_topic + rng.integers(spec.interests_per_topic)] = True
        names.append(f"hub{h}.example.net")
        domain_topic.append(-2)
        domain_interest.append(-2)
    domain_topic, domain_interest = np.array(domain_topic), np.array(domain_interest)
    domain_weight = rng.lognormal(0, 0.5, len(names))

    visit_activity = rng.lognormal(0.0, 0.7, n) * np.where(bot, 5.0, 1.0)
    n_raw = int(spec.n_domain_visits * 1.3)  # oversample: duplicates of (user, domain, day) merge below
    vis_u = _sample(rng, visit_activity, n_raw)
    vis_day = end_day - rng.integers(1, spec.days + 1, n_raw)
    vis_i = interest_at(vis_u, vis_day * 86400 + 43_200)  # a day's visits: after a change at midday or before
    own = np.flatnonzero(domain_interest >= 0)
    # Sibling interests share some of each other's domains, as sibling vocabularies share words.
    sibling = rng.random(n_raw) < spec.sibling_visit_share
    topic_first = vis_i - vis_i % spec.interests_per_topic
    visited_interest = np.where(sibling, topic_first + rng.integers(0, spec.interests_per_topic, n_raw), vis_i)
    vis_d = own[_sample_within_groups(rng, domain_interest[own], domain_weight[own], visited_interest, n_interests)]
    kind = rng.random(n_raw)
    universal = kind < 0.2 + spec.noise_share
    to_portal = ~universal & (kind < 0.2 + spec.noise_share + (0.8 - spec.noise_share) * spec.portal_visit_share)
    vis_d[to_portal] = portal_of_topic[vis_i[to_portal] // spec.interests_per_topic]
    to_hub = np.flatnonzero(~universal & ~to_portal & (rng.random(n_raw) < spec.hub_visit_share))
    if spec.hub_domains and len(to_hub):
        covers = hub_covers[:, vis_i[to_hub]].T
        to_hub, covers = to_hub[covers.any(axis=1)], covers[covers.any(axis=1)]
        vis_d[to_hub] = hub_index[_sample_rows(rng, covers.astype(np.float64))]
    vis_d[universal] = rng.integers(0, len(GLOBAL_DOMAINS), int(universal.sum()))
    bot_visit = bot[vis_u]
    vis_d[bot_visit] = rng.integers(0, len(names), int(bot_visit.sum()))
    key = (vis_u.astype(np.int64) * len(names) + vis_d) * 100_000 + vis_day
    _, first_seen = np.unique(key, return_index=True)
    kept = np.sort(first_seen)[: spec.n_domain_visits]
    visits = 1 + rng.poisson(np.where(bot[vis_u[kept]], 20.0, 2.0)).astype(np.int32)

    topic_pref = np.zeros((n, spec.n_topics))
    np.add.at(topic_pref.T, np.arange(n_interests) // spec.interests_per_topic, pref.T)
    return World(
        spec=spec, end=end, topic_names=topics,
        video_id=video_id, video_topic=video_topic, title=title, description=description, tags=tags,
        published_at=published_at, is_active=is_active,
        view_user=user_id[view_u], view_video=video_id[view_v], viewed_at=viewed_at, watch_seconds=watch,
        domain_names=names, domain_topic=domain_topic,
        visit_user=user_id[vis_u[kept]], visit_domain=vis_d[kept], visit_date=vis_day[kept], visits=visits,
        user_id=user_id, user_topic_pref=topic_pref, domain_only_user=domain_only,
        video_interest=video_interest, user_interest_now=now, changed_user=changed, changed_at=changed_at,
        bot_user=bot,
    )


def snapshot_of(world: World) -> Snapshot:
    """What the extract would read from a seeded database, minus the database."""
    visible = world.viewed_at < world.end.timestamp()
    used = np.unique(world.visit_domain)
    remap = np.full(len(world.domain_names), -1)
    order = np.argsort([world.domain_names[i] for i in used])
    used = used[order]
    remap[used] = np.arange(len(used))
    return Snapshot(
        view_user=world.view_user[visible], view_video=world.view_video[visible],
        viewed_at=world.viewed_at[visible], watch_seconds=world.watch_seconds[visible],
        video_id=world.video_id, is_active=world.is_active, published_at=world.published_at,
        video_text={int(v): {"title": t, "description": d, "tags": g}
                    for v, t, d, g in zip(world.video_id, world.title, world.description, world.tags)},
        visit_user=world.visit_user, visit_domain=remap[world.visit_domain].astype(np.int32),
        visit_date=world.visit_date.astype(np.int32), visits=world.visits,
        domains=[world.domain_names[i] for i in used], end=world.end.timestamp(),
    )


def _sample(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """n indices drawn with probability proportional to weights (inverse CDF, vectorised)."""
    cdf = np.cumsum(weights, dtype=np.float64)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(weights) - 1)


def _sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One column index per row of a row-stochastic matrix."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random((probs.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), probs.shape[1] - 1)


def _sample_within_groups(rng, group_of: np.ndarray, weights: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """For each requested group, an index (into group_of) drawn by weight among that group's members."""
    out = np.empty(len(groups), dtype=np.int64)
    for g in range(n_groups):
        members = np.flatnonzero(group_of == g)
        want = np.flatnonzero(groups == g)
        if len(want):
            out[want] = members[_sample(rng, weights[members], len(want))]
    return out


def _video_texts(rng, topics, video_topic, spec: WorldSpec):
    titles, descriptions, tags = [], [], []
    for i, t in enumerate(video_topic):
        words = TOPIC_WORDS[topics[t]]
        picks = rng.choice(len(words), 3, replace=False)
        chosen = [words[k] for k in picks]
        if spec.neighbour_word_share:
            # Neighbouring topics (t - 1 and t + 1) share vocabulary, as cooking and travel do.
            borrowed = rng.random(3) < spec.neighbour_word_share
            neighbours = (t + rng.choice([-1, 1], 3)) % len(topics)
            chosen = [TOPIC_WORDS[topics[n]][k] if b else w
                      for w, b, n, k in zip(chosen, borrowed, neighbours, picks)]
        filler = _FILLER[rng.integers(len(_FILLER))]
        titles.append(f"{filler.title()} {chosen[0]} {chosen[1]} #{i + 1}")
        descriptions.append(f"A {topics[t]} video about {chosen[0]} and {chosen[2]}.")
        video_tags = [topics[t], chosen[1], chosen[2]]
        if spec.wrong_tag_share:
            wrong = rng.random(3) < spec.wrong_tag_share
            others = (t + rng.integers(1, len(topics), 3)) % len(topics)  # any topic but the video's
            video_tags = [TOPIC_WORDS[topics[o]][rng.integers(10)] if w else tag
                          for tag, w, o in zip(video_tags, wrong, others)]
        tags.append(video_tags)
    return titles, descriptions, tags


def _move_to_hubs(rng, spec: WorldSpec, names: list[str], topic_of: np.ndarray, vis_d: np.ndarray,
                  vis_t: np.ndarray, topical: np.ndarray):
    """Add hub domains (hub k covers topics k, k+1, .., k+hub_topics-1, wrapping) and move a share of
    the topical visits onto a hub that covers their topic. Hubs get topic -2 in the truth."""
    n_topics = spec.n_topics
    hub_first_topic = np.arange(spec.hub_domains) % n_topics
    hub_index = len(names) + np.arange(spec.hub_domains)
    names = names + [f"portal{k}.hub.com" for k in range(spec.hub_domains)]
    topic_of = np.concatenate([topic_of, np.full(spec.hub_domains, -2)])
    move = np.flatnonzero(topical & (rng.random(len(vis_d)) < spec.hub_visit_share))
    covers = (vis_t[move, None] - hub_first_topic[None, :]) % n_topics < spec.hub_topics  # visit x hub
    move, covers = move[covers.any(axis=1)], covers[covers.any(axis=1)]
    vis_d = vis_d.copy()
    vis_d[move] = hub_index[_sample_rows(rng, covers.astype(np.float64))]
    return names, topic_of, vis_d


def _domains(rng, topics, per_topic):
    names, topic_of = list(GLOBAL_DOMAINS), [-1] * len(GLOBAL_DOMAINS)
    for t, topic in enumerate(topics):
        words = TOPIC_WORDS[topic]
        for k in range(per_topic):
            names.append(f"{words[k % len(words)]}-{topic}{k // len(words) or ''}.{_TLDS[k % len(_TLDS)]}")
            topic_of.append(t)
    return names, np.array(topic_of)


def day_start_utc(moment: datetime | None = None) -> datetime:
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def default_end(now: datetime | None = None) -> datetime:
    """The latest 02:00 UTC that has passed: the data interval end of the newest nightly run."""
    now = now or datetime.now(timezone.utc)
    end = day_start_utc(now) + timedelta(hours=2)
    return end if end <= now else end - timedelta(days=1)
