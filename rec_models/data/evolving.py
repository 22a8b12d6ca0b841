"""The synthetic video service one day at a time: a warm-up history, then nights whose days bring
new users (a share known only by domains), new videos (content only on their first day), videos
whose popularity rises and fades, users whose tastes drift (the world's ``drift_share``), and a few
scripted bad nights: a burst of malformed rows, a re-delivered day, a day whose views arrive a day
late, a day with no views at all.

One world is generated for the whole span (so every day is reproducible alone), then each day's
rows are what would arrive that day. Night d's data interval is day d: it ends at ``night_end(d)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from rec_models.data.synthetic import World, WorldSpec, generate_world

DAY = 86_400
BAD_NIGHT_KINDS = ("malformed", "redelivered", "late", "no_views")


# The bad nights of a 14-night world; shorter or longer worlds spread them the same way.
SCRIPT = ((4, "malformed"), (6, "redelivered"), (8, "late"), (11, "no_views"))


def scripted_bad_nights(nights: int) -> tuple[tuple[int, str], ...]:
    """``SCRIPT`` spread over ``nights``: never night 1 (nothing serves yet), never the last night for a
    late day (its views come the night after), never the night a late day arrives."""
    chosen: list[tuple[int, str]] = []
    for position, kind in SCRIPT:
        night = round(position * nights / 14)
        taken = {n for n, _ in chosen} | {n + 1 for n, k in chosen if k == "late"}
        if 2 <= night < nights and night not in taken:
            chosen.append((night, kind))
    return tuple(chosen)


@dataclass(frozen=True)
class EvolvingSpec:
    world: WorldSpec  # its ``days`` is ignored: the span is warmup_days + nights
    nights: int = 14
    warmup_days: int = 28
    new_user_share: float = 0.3  # of all users, arriving on a night's day (uniformly over the nights)
    new_video_share: float = 0.25  # of all videos, published on a night's day
    wave_share: float = 0.5  # of videos whose views come in a wave around a peak day
    wave_days: float = 4.0  # how fast a wave rises and fades (e-folding, days)
    # (night, kind): nights whose delivery goes wrong, as upstream systems do.
    bad_nights: tuple[tuple[int, str], ...] = SCRIPT

    def __post_init__(self) -> None:
        if self.nights < 1 or self.warmup_days < 3:
            raise ValueError("nights must be >= 1 and warmup_days >= 3")
        for night, kind in self.bad_nights:
            if kind not in BAD_NIGHT_KINDS:
                raise ValueError(f"unknown bad night kind {kind!r}: expected one of {', '.join(BAD_NIGHT_KINDS)}")
            if not 1 <= night <= self.nights or (kind == "late" and night == self.nights):
                raise ValueError(f"bad night {night} ({kind}) is outside nights 1..{self.nights}"
                                 + (" (a late day needs a night after it)" if kind == "late" else ""))

    def bad_night(self, night: int) -> str | None:
        return dict(self.bad_nights).get(night)


@dataclass
class EvolvingWorld:
    spec: EvolvingSpec
    world: World  # every row of the whole span, after arrivals, publications and waves
    start: float  # epoch seconds: the warm-up's first moment

    def night_end(self, night: int) -> datetime:
        """The data interval end of night ``night`` (0: the end of the warm-up)."""
        return datetime.fromtimestamp(self.start + (self.spec.warmup_days + night) * DAY, tz=self.world.end.tzinfo)

    def day_bounds(self, day: int) -> tuple[float, float]:
        """[from, to) epoch seconds of the rows that arrive with ``day`` (0: the whole warm-up)."""
        low = self.start if day == 0 else self.night_end(day - 1).timestamp()
        return low, self.night_end(day).timestamp()


def generate_evolving(spec: EvolvingSpec, last_night_end: datetime) -> EvolvingWorld:
    """The world whose last night's data interval ends at ``last_night_end``."""
    span = spec.warmup_days + spec.nights
    world = generate_world(replace(spec.world, days=span), last_night_end)
    rng = np.random.default_rng(spec.world.seed + 1)
    start = last_night_end.timestamp() - span * DAY
    first_night = start + spec.warmup_days * DAY
    # Users who arrive during the nights: nothing of theirs before their day.
    arrival = np.full(len(world.user_id), start)
    arriving = rng.random(len(world.user_id)) < spec.new_user_share
    arrival[arriving] = first_night + rng.integers(0, spec.nights, int(arriving.sum())) * DAY
    # Videos published during the nights: on the page from their day, first watched the day after.
    published = world.published_at.astype(np.float64)
    new = rng.random(len(world.video_id)) < spec.new_video_share
    published[new] = first_night + rng.integers(0, spec.nights, int(new.sum())) * DAY + rng.integers(0, DAY, int(new.sum()))
    first_watch = np.where(new, np.floor((published - start) / DAY + 1) * DAY + start, -np.inf)
    # Popularity waves: a wave video's views thin out away from its peak day.
    peak = np.where(rng.random(len(world.video_id)) < spec.wave_share,
                    start + rng.uniform(0, span, len(world.video_id)) * DAY, np.nan)
    user_row = np.searchsorted(world.user_id, world.view_user)
    video_row = np.searchsorted(world.video_id, world.view_video)
    distance = np.abs(world.viewed_at - peak[video_row]) / DAY
    in_wave = np.isnan(distance) | (rng.random(len(distance)) < np.exp(-np.nan_to_num(distance) / spec.wave_days))
    keep = (world.viewed_at >= arrival[user_row]) & (world.viewed_at >= first_watch[video_row]) & in_wave
    visit_keep = world.visit_date * DAY >= arrival[np.searchsorted(world.user_id, world.visit_user)] - DAY + 1
    world = replace(
        world, published_at=published.astype(np.int64),
        view_user=world.view_user[keep], view_video=world.view_video[keep], viewed_at=world.viewed_at[keep],
        watch_seconds=world.watch_seconds[keep], visit_user=world.visit_user[visit_keep],
        visit_domain=world.visit_domain[visit_keep], visit_date=world.visit_date[visit_keep],
        visits=world.visits[visit_keep])
    return EvolvingWorld(spec=spec, world=world, start=start)


@dataclass
class DayRows:
    """What arrives with one day: rows of the world's arrays (videos published, views, with repeats
    when a day is re-delivered, domain visits) and malformed view rows (None is a NULL)."""

    videos: np.ndarray
    views: np.ndarray
    visits: np.ndarray
    malformed_views: list[tuple]


def day_rows(ew: EvolvingWorld, day: int) -> DayRows:
    """The rows delivered with ``day`` (0: the warm-up), bad nights applied."""
    w, spec = ew.world, ew.spec
    low, high = ew.day_bounds(day)
    videos = np.flatnonzero((w.published_at < high) & (w.published_at >= (low if day else -np.inf)))
    own = (w.viewed_at >= low) & (w.viewed_at < high)
    kind, before = spec.bad_night(day), spec.bad_night(day - 1) if day > 1 else None
    if kind in ("late", "no_views"):
        own[:] = False
    if before == "late":  # yesterday's views arrive today
        own |= (w.viewed_at >= ew.day_bounds(day - 1)[0]) & (w.viewed_at < low)
    views = np.flatnonzero(own)
    if kind == "redelivered":  # the whole day sent twice
        views = np.concatenate([views, views])
    malformed = []
    if kind == "malformed" and len(views):  # a burst of broken tracking: a fifth as many bad rows as good ones
        rng = np.random.default_rng(spec.world.seed + 100 + day)
        for i, row in enumerate(rng.choice(views, max(5, len(views) // 5))):
            user, video, at, watch = int(w.view_user[row]), int(w.view_video[row]), float(w.viewed_at[row]), \
                int(w.watch_seconds[row])
            malformed.append([(None, video, at, watch), (user, 999_999_999, at, watch), (user, video, at, -5),
                              (user, video, None, watch), (-user, video, at, watch)][i % 5])
    date_low, date_high = np.floor(low / DAY), np.floor(high / DAY)
    visits = np.flatnonzero((w.visit_date < date_high) & (w.visit_date >= (date_low if day else -np.inf)))
    return DayRows(videos=videos, views=views, visits=visits, malformed_views=malformed)


def last_night_end(now: datetime) -> datetime:
    """The interval end (02:00 UTC) of a last night that is a day over by ``now``: every row of the
    world lies in the past, as validation requires."""
    end = now.replace(hour=2, minute=0, second=0, microsecond=0)
    return (end if end <= now else end - timedelta(days=1)) - timedelta(days=1)
