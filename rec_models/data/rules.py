"""What makes a source row bad, defined once: the validate task quarantines by these rules and the
extract reads only the rows that pass them, so the two can never disagree.

Each source is judged day by day (``SourceRules.judge``): every rule but the views' catalogue rule
looks only at the row and at rows of its own day (duplicates, a user's domains that day), so a day's
verdicts hold until its rows change. The verdicts are read back, per night, by ``SourceRules.checked``:
the window's rows with one ``reason`` column (NULL for a good row; otherwise the first rule the row
breaks), the views' catalogue rule applied with the night's own catalogue. Rows of people who asked to
be forgotten (rec.erasure_requests) are neither judged, nor quarantined, nor extracted, even while
upstream's tables still hold them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from psycopg import sql

from rec_models.names import USER_DOMAIN_VISITS, VIDEO_VIEWS, VIDEOS, judged_table

# Views before the video service existed are broken tracking (the synthetic world starts here too).
SERVICE_START = datetime(2015, 1, 1, tzinfo=timezone.utc)
# Bounds that separate real behaviour from broken tracking; overridable per run.
MAX_WATCH_SECONDS = 24 * 3600
MAX_DAILY_VISITS = 10_000
MAX_DOMAINS_PER_USER_DAY = 200
MAX_DOMAIN_LENGTH = 253
HOSTNAME_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
UNKNOWN_VIDEO = "view of an unknown video"
DUPLICATE = "duplicate row"


@dataclass(frozen=True)
class SourceRules:
    table: str
    # The rows of the run's window in the source table (alias ``s``), and the UTC day each belongs to.
    window: sql.Composed
    day: sql.Composed
    # SELECT day, columns..., verdict columns FROM the window's rows of the days the condition picks.
    judge_query: Callable[[sql.Composable], sql.Composed]
    # The source's judged table.
    judged_table: sql.Identifier

    def judge(self, every_day: bool = False) -> sql.Composed:
        """The verdicts of the days in ``%(days)s``, or of every day of the window."""
        days = sql.SQL("TRUE") if every_day else sql.SQL("{} = ANY(%(days)s::date[])").format(self.day)
        return self.judge_query(days)

    def checked(self, judged: sql.Composable, judged_videos: sql.Composable) -> sql.Composed:
        """The window's rows from ``judged`` (a relation of this source's verdicts, alias-free) with their
        final ``reason``; ``judged_videos`` is the night's judged catalogue (used by the views only)."""
        return _CHECKED[self.table](self, judged, judged_videos)


def _window_views(alias: str) -> sql.Composed:
    return sql.SQL(
        "({a}.viewed_at IS NULL OR {a}.viewed_at < %(end)s) AND ({a}.viewed_at IS NULL OR "
        "{a}.viewed_at >= %(window_start)s OR {a}.viewed_at < %(service_start)s)").format(a=sql.Identifier(alias))


def _window_visits(alias: str) -> sql.Composed:
    return sql.SQL(
        "({a}.visit_date IS NULL OR {a}.visit_date < (%(end)s AT TIME ZONE 'UTC')::date) AND "
        "({a}.visit_date IS NULL OR {a}.visit_date >= (%(window_start)s AT TIME ZONE 'UTC')::date "
        "OR {a}.visit_date < (%(service_start)s AT TIME ZONE 'UTC')::date)").format(a=sql.Identifier(alias))


def _window_videos(alias: str) -> sql.Composed:
    """The catalogue as of the interval end: a video published after it is not judged yet, so that a
    night rerun after later days arrived sees the videos it saw the first time."""
    return sql.SQL("({a}.published_at IS NULL OR {a}.published_at < %(end)s)").format(a=sql.Identifier(alias))


# Rows without a day (undated, or the whole catalogue) share one bucket.
NO_DAY = "-infinity"


def videos_rules() -> SourceRules:
    return SourceRules(
        table=VIDEOS, window=_window_videos("s"), day=sql.SQL("'-infinity'::date"),
        judge_query=lambda days: sql.SQL("""
            SELECT '-infinity'::date AS day, s.video_id, s.title, s.description, s.tags, s.published_at, s.is_active,
                CASE
                    WHEN s.video_id IS NULL OR s.video_id <= 0 THEN 'video_id null or non-positive'
                    WHEN s.title IS NULL OR btrim(s.title) = '' THEN 'empty title'
                END AS reason
            FROM videos s
            WHERE {window} AND {days}""").format(window=_window_videos("s"), days=days),
        judged_table=sql.Identifier("rec", judged_table(VIDEOS)),
    )


def views_rules() -> SourceRules:
    """Views with viewed_at before the window end (plus undated ones, which are bad)."""
    day = sql.SQL("coalesce((s.viewed_at AT TIME ZONE 'UTC')::date, '-infinity'::date)")
    return SourceRules(
        table=VIDEO_VIEWS, window=_window_views("s"), day=day,
        # The catalogue rule comes between these and the duplicate rule: see _checked_views.
        judge_query=lambda days: sql.SQL("""
            SELECT w.day, w.user_id, w.video_id, w.viewed_at, w.watch_seconds,
                CASE
                    WHEN w.user_id IS NULL OR w.user_id <= 0 THEN 'user_id null or non-positive'
                    WHEN w.video_id IS NULL OR w.video_id <= 0 THEN 'video_id null or non-positive'
                    WHEN w.viewed_at IS NULL THEN 'viewed_at missing'
                    WHEN w.viewed_at > now() THEN 'viewed_at in the future'
                    WHEN w.viewed_at < %(service_start)s THEN 'viewed_at before the service existed'
                    WHEN w.watch_seconds IS NULL OR w.watch_seconds < 0 THEN 'watch_seconds missing or negative'
                    WHEN w.watch_seconds > %(max_watch_seconds)s THEN 'watch_seconds absurd'
                END AS row_reason,
                w.copy_number
            FROM (
                SELECT s.*, {day} AS day, row_number() OVER (
                           PARTITION BY s.user_id, s.video_id, s.viewed_at ORDER BY s.watch_seconds DESC NULLS LAST
                       ) AS copy_number
                FROM video_views s
                WHERE {window} AND {not_erased} AND {days}
            ) w""").format(day=day, window=_window_views("s"), not_erased=not_erased("s.user_id"), days=days),
        judged_table=sql.Identifier("rec", judged_table(VIDEO_VIEWS)),
    )


def visits_rules() -> SourceRules:
    """Domain visits before the window end; domains normalised (case, www.) before they are judged."""
    day = sql.SQL("coalesce(s.visit_date, '-infinity'::date)")
    return SourceRules(
        table=USER_DOMAIN_VISITS, window=_window_visits("s"), day=day,
        judge_query=lambda days: sql.SQL("""
            WITH windowed AS (
                SELECT {day} AS day, s.user_id, s.domain AS raw_domain, s.visit_date, s.visits,
                       CASE WHEN lower(btrim(s.domain)) LIKE 'www.%%' THEN substr(lower(btrim(s.domain)), 5)
                            ELSE lower(btrim(s.domain)) END AS domain  -- without "www.", as a regex would (faster)
                FROM user_domain_visits s
                WHERE {window} AND {not_erased} AND {days}
            ),
            -- The hostname regex is costly: judge each distinct domain once, not every row.
            judged_domains AS (
                SELECT domain, domain ~ %(hostname_pattern)s AS is_hostname
                FROM (SELECT DISTINCT domain FROM windowed) d
            ),
            counted AS (
                SELECT w.*, j.is_hostname,
                       -- Partitions in one column order: one sort serves both windows.
                       row_number() OVER (PARTITION BY w.user_id, w.visit_date, w.domain ORDER BY w.visits DESC NULLS LAST) AS copy_number,
                       count(*) OVER (PARTITION BY w.user_id, w.visit_date) AS domains_that_day
                FROM windowed w LEFT JOIN judged_domains j ON j.domain = w.domain
            )
            SELECT c.day, c.user_id, c.raw_domain, c.domain, c.visit_date, c.visits,
                CASE
                    WHEN c.user_id IS NULL OR c.user_id <= 0 THEN 'user_id null or non-positive'
                    WHEN c.visit_date IS NULL THEN 'visit_date missing'
                    WHEN c.visit_date > (now() AT TIME ZONE 'UTC')::date THEN 'visit_date in the future'
                    WHEN c.visit_date < (%(service_start)s AT TIME ZONE 'UTC')::date THEN 'visit_date before the service existed'
                    WHEN c.domain IS NULL OR c.domain = '' THEN 'empty domain'
                    WHEN length(c.domain) > %(max_domain_length)s THEN 'domain too long'
                    WHEN NOT c.is_hostname THEN 'domain is not a hostname'
                    WHEN c.visits IS NULL OR c.visits <= 0 THEN 'visits missing or non-positive'
                    WHEN c.visits > %(max_daily_visits)s THEN 'visits absurd'
                    WHEN c.domains_that_day > %(max_domains_per_day)s THEN 'bot: too many distinct domains in a day'
                    WHEN c.copy_number > 1 THEN {duplicate}
                END AS reason
            FROM counted c""").format(day=day, window=_window_visits("s"), not_erased=not_erased("s.user_id"),
                                      duplicate=sql.Literal(DUPLICATE), days=days),
        judged_table=sql.Identifier("rec", judged_table(USER_DOMAIN_VISITS)),
    )


def _checked_videos(rules: SourceRules, judged: sql.Composable, _videos: sql.Composable) -> sql.Composed:
    return sql.SQL("SELECT s.video_id, s.title, s.description, s.tags, s.published_at, s.is_active, s.reason "
                   "FROM {} s WHERE {}").format(judged, rules.window)


def _checked_views(rules: SourceRules, judged: sql.Composable, judged_videos: sql.Composable) -> sql.Composed:
    return sql.SQL("""
        SELECT s.user_id, s.video_id, s.viewed_at, s.watch_seconds,
            CASE
                WHEN s.row_reason IS NOT NULL THEN s.row_reason
                WHEN g.video_id IS NULL THEN {unknown}
                WHEN s.copy_number > 1 THEN {duplicate}
            END AS reason
        FROM {judged} s
        LEFT JOIN (SELECT v.video_id FROM {videos} v WHERE v.reason IS NULL AND {catalogue}) g ON g.video_id = s.video_id
        WHERE {window} AND {not_erased}""").format(
            judged=judged, videos=judged_videos, catalogue=_window_videos("v"), window=rules.window,
            not_erased=not_erased("s.user_id"), unknown=sql.Literal(UNKNOWN_VIDEO), duplicate=sql.Literal(DUPLICATE))


def _checked_visits(rules: SourceRules, judged: sql.Composable, _videos: sql.Composable) -> sql.Composed:
    return sql.SQL("SELECT s.user_id, s.raw_domain, s.domain, s.visit_date, s.visits, s.reason "
                   "FROM {} s WHERE {} AND {}").format(judged, rules.window, not_erased("s.user_id"))


_CHECKED = {VIDEOS: _checked_videos, VIDEO_VIEWS: _checked_views, USER_DOMAIN_VISITS: _checked_visits}


def all_rules() -> list[SourceRules]:
    return [videos_rules(), views_rules(), visits_rules()]


def checked_anew(rules: SourceRules) -> sql.Composed:
    """The reference path: the window's rows judged now, every day at once, with their final reason."""
    return rules.checked(sql.SQL("({})").format(rules.judge(every_day=True)),
                         sql.SQL("({})").format(videos_rules().judge(every_day=True)))


def not_erased(user_column: str) -> sql.Composed:
    """A condition true for rows of people with no erasure request (a hash anti-join on a small table)."""
    return sql.SQL("NOT EXISTS (SELECT 1 FROM rec.erasure_requests e WHERE e.user_id = {})").format(
        sql.SQL(user_column))


def rule_params(end, window_start, service_start) -> dict:
    return {
        "end": end,
        "window_start": window_start,
        "service_start": service_start,
        "max_watch_seconds": MAX_WATCH_SECONDS,
        "max_daily_visits": MAX_DAILY_VISITS,
        "max_domains_per_day": MAX_DOMAINS_PER_USER_DAY,
        "max_domain_length": MAX_DOMAIN_LENGTH,
        "hostname_pattern": HOSTNAME_PATTERN,
    }
