"""The kept verdicts of each source day, and judging again only the days whose rows changed.

A day's verdicts are kept with the day's fingerprint: how many rows the window holds that day and the
sum of their rows' hashes (``hashtext`` of the row as text, so any insert, update or delete changes
it but for a one-in-2^32 cancellation). A night reads the fingerprints of its window (one scan, no
sort), and judges again only the days whose fingerprint, or the rules, differ from the ledger's, or
that were not over yet when judged (the "in the future" rules read the clock). The plain path, every
day judged anew (``rules.checked_anew``), is what the tests compare this with.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from rec_models.data.rules import SourceRules

log = logging.getLogger(__name__)

LEDGER = sql.Identifier("rec", "judged_days")
# Insert more than this share of a judged table's rows and its planner statistics are taken again.
_ANALYZE_SHARE = 0.1


@dataclass(frozen=True)
class JudgedDays:
    days: int  # days the window holds
    judged: list[str]  # judged tonight (changed, new, or their rules changed), as PostgreSQL writes them


def rules_digest(conn: psycopg.Connection, rules: SourceRules, params: dict) -> str:
    """What a verdict depends on besides the rows: the rules' SQL and their bounds (not the window)."""
    bounds = {k: v for k, v in params.items() if k not in ("end", "window_start", "days")}
    text = rules.judge().as_string(conn) + json.dumps(bounds, sort_keys=True, default=str)
    return hashlib.md5(text.encode()).hexdigest()


def fingerprints(conn: psycopg.Connection, rules: SourceRules, params: dict) -> dict[str, tuple[int, int]]:
    """day -> (rows, sum of row hashes) of the source's window, everyone's rows counted (an erasure
    removes a person's verdicts without making their days change). Days are PostgreSQL's text of a
    date: '-infinity' and dates far in the past or BC come back as they are."""
    rows = conn.execute(sql.SQL(
        "SELECT {day}::text, count(*), coalesce(sum(hashtext(s::text)), 0) FROM {table} s WHERE {window} GROUP BY 1"
    ).format(day=rules.day, table=sql.Identifier(rules.table), window=rules.window), params).fetchall()
    return {day: (n, fingerprint) for day, n, fingerprint in rows}


def rejudge_changed_days(conn: psycopg.Connection, rules: SourceRules, params: dict) -> JudgedDays:
    """Bring the source's judged table to the window of ``params`` in the caller's transaction: judge
    the days that changed, drop the verdicts of days the window no longer holds."""
    digest = rules_digest(conn, rules, params)
    current = fingerprints(conn, rules, params)
    # over: no row of the day could still have been in the future when it was judged;
    # later: a day after the window (a later night's): a backfill must not undo it.
    kept = {day: rest for day, *rest in conn.execute(sql.SQL(
        "SELECT day::text, rows, fingerprint, rules, judged_at >= (day + 1)::timestamp AT TIME ZONE 'UTC', "
        "day > (%s AT TIME ZONE 'UTC')::date "
        "FROM {} WHERE source_table = %s").format(LEDGER), (params["end"], rules.table)).fetchall()}
    judged = sorted(day for day, signature in current.items()
                    if day not in kept or tuple(kept[day][:3]) != (*signature, digest) or not kept[day][3])
    dropped = sorted(day for day, rest in kept.items() if day not in current and not rest[4])
    rows_judged = 0
    if judged or dropped:
        _delete_days(conn, rules.judged_table, judged + dropped)
        conn.execute(sql.SQL("DELETE FROM {} WHERE source_table = %s AND day = ANY(%s::date[])").format(LEDGER),
                     (rules.table, judged + dropped))
    if judged:
        rows_judged = conn.execute(sql.SQL("INSERT INTO {} {}").format(rules.judged_table, rules.judge()),
                                   {**params, "days": judged}).rowcount
        conn.execute(sql.SQL(
            "INSERT INTO {} (source_table, day, rows, fingerprint, rules, judged_at) "
            "SELECT %s, d.day::date, d.rows, d.fingerprint, %s, now() "
            "FROM unnest(%s::text[], %s::int8[], %s::int8[]) AS d(day, rows, fingerprint)").format(LEDGER),
            (rules.table, digest, judged, [current[d][0] for d in judged], [current[d][1] for d in judged]))
        total = sum(n for n, _ in current.values())
        if rows_judged > _ANALYZE_SHARE * total:
            conn.execute(sql.SQL("ANALYZE {}").format(rules.judged_table))
    log.info("%s: %d days in the window, %d judged (%d rows), %d dropped", rules.table, len(current), len(judged),
             rows_judged, len(dropped))
    return JudgedDays(days=len(current), judged=judged)


def _delete_days(conn: psycopg.Connection, table: sql.Identifier, days: list[str]) -> None:
    """One range condition per run of consecutive days: the block range index serves ranges, not lists."""
    ranges = conn.execute(
        "SELECT min(day)::text, max(day)::text FROM (SELECT day, day - row_number() OVER (ORDER BY day)::int AS run "
        "FROM unnest(%s::date[]) AS d(day) WHERE isfinite(day)) r GROUP BY run", (days,)).fetchall()
    for low, high in ranges:
        conn.execute(sql.SQL("DELETE FROM {} WHERE day BETWEEN %s::date AND %s::date").format(table), (low, high))
    if any(d in ("-infinity", "infinity") for d in days):
        conn.execute(sql.SQL("DELETE FROM {} WHERE NOT isfinite(day)").format(table))
