"""What makes a source row bad, defined once: the validate task quarantines by these rules and the
extract reads only the rows that pass them, so the two can never disagree.

Each source has a ``checked`` query: the rows of the run's window with one computed ``reason``
column (NULL for a good row; otherwise the first rule the row breaks) and normalised values. Rows of
people who asked to be forgotten (rec.erasure_requests) are not read at all: neither judged, nor
quarantined, nor extracted, even while upstream's tables still hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from psycopg import sql

# Views before the video service existed are broken tracking (the synthetic world starts here too).
SERVICE_START = datetime(2015, 1, 1, tzinfo=timezone.utc)
# Bounds that separate real behaviour from broken tracking; overridable per run.
MAX_WATCH_SECONDS = 24 * 3600
MAX_DAILY_VISITS = 10_000
MAX_DOMAINS_PER_USER_DAY = 200
MAX_DOMAIN_LENGTH = 253
HOSTNAME_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"


@dataclass(frozen=True)
class SourceCheck:
    table: str
    # The CTE chain ending in a relation named ``checked`` with a ``reason`` column.
    query: sql.Composed


def _videos_checked() -> sql.Composed:
    """The catalogue as of the interval end: a video published after it is not judged yet, so that a
    night rerun after later days arrived sees the videos it saw the first time."""
    return sql.SQL("""
        checked AS (
            SELECT v.*,
                CASE
                    WHEN v.video_id IS NULL OR v.video_id <= 0 THEN 'video_id null or non-positive'
                    WHEN v.title IS NULL OR btrim(v.title) = '' THEN 'empty title'
                END AS reason
            FROM videos v
            WHERE v.published_at IS NULL OR v.published_at < %(end)s
        )""").format()


def videos_check() -> SourceCheck:
    return SourceCheck("videos", sql.SQL("WITH {}").format(_videos_checked()))


def views_check() -> SourceCheck:
    """Views with viewed_at before the window end (plus undated ones, which are bad)."""
    return SourceCheck("video_views", sql.SQL("""
        WITH {videos},
        good_videos AS (SELECT video_id FROM checked WHERE reason IS NULL),
        windowed AS (
            SELECT w.*, row_number() OVER (
                       PARTITION BY w.user_id, w.video_id, w.viewed_at ORDER BY w.watch_seconds DESC NULLS LAST
                   ) AS copy_number
            FROM video_views w
            WHERE (w.viewed_at IS NULL OR w.viewed_at < %(end)s)
              AND (w.viewed_at IS NULL OR w.viewed_at >= %(window_start)s OR w.viewed_at < %(service_start)s)
              AND {not_erased}
        ),
        checked_views AS (
            SELECT w.user_id, w.video_id, w.viewed_at, w.watch_seconds,
                CASE
                    WHEN w.user_id IS NULL OR w.user_id <= 0 THEN 'user_id null or non-positive'
                    WHEN w.video_id IS NULL OR w.video_id <= 0 THEN 'video_id null or non-positive'
                    WHEN w.viewed_at IS NULL THEN 'viewed_at missing'
                    WHEN w.viewed_at > now() THEN 'viewed_at in the future'
                    WHEN w.viewed_at < %(service_start)s THEN 'viewed_at before the service existed'
                    WHEN w.watch_seconds IS NULL OR w.watch_seconds < 0 THEN 'watch_seconds missing or negative'
                    WHEN w.watch_seconds > %(max_watch_seconds)s THEN 'watch_seconds absurd'
                    WHEN g.video_id IS NULL THEN 'view of an unknown video'
                    WHEN w.copy_number > 1 THEN 'duplicate row'
                END AS reason
            FROM windowed w LEFT JOIN good_videos g ON g.video_id = w.video_id
        )""").format(videos=_videos_checked(), not_erased=not_erased("w.user_id")))


def visits_check() -> SourceCheck:
    """Domain visits before the window end; domains normalised (case, www.) before they are judged."""
    return SourceCheck("user_domain_visits", sql.SQL("""
        WITH windowed AS (
            SELECT d.user_id, d.domain AS raw_domain, d.visit_date, d.visits,
                   CASE WHEN lower(btrim(d.domain)) LIKE 'www.%%' THEN substr(lower(btrim(d.domain)), 5)
                        ELSE lower(btrim(d.domain)) END AS domain  -- without "www.", as a regex would (faster)
            FROM user_domain_visits d
            WHERE (d.visit_date IS NULL OR d.visit_date < (%(end)s AT TIME ZONE 'UTC')::date)
              AND (d.visit_date IS NULL OR d.visit_date >= (%(window_start)s AT TIME ZONE 'UTC')::date
                   OR d.visit_date < (%(service_start)s AT TIME ZONE 'UTC')::date)
              AND {not_erased}
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
        ),
        checked_visits AS (
            SELECT c.user_id, c.raw_domain, c.domain, c.visit_date, c.visits,
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
                    WHEN c.copy_number > 1 THEN 'duplicate row'
                END AS reason
            FROM counted c
        )""").format(not_erased=not_erased("d.user_id")))


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
