"""Retention by rule: how long each table of ours keeps what it holds, enforced every night and
recorded in rec.retention_runs. Lifetimes count back from the night's data interval end, so a
backfill of an old night never removes what a newer night still keeps. (Published partitions and run
folders are pruned where they are written: ``keep_published_runs``, ``keep_run_folders``.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg


@dataclass(frozen=True)
class Rule:
    place: str
    lifetime: str  # as operators read it
    removed: int


def expire(conn: psycopg.Connection, interval_end: datetime, *, rejected_days: int, metrics_days: int,
           alerts_days: int) -> list[Rule]:
    """Apply every table's lifetime; returns what each removed."""
    rules = []
    with conn.transaction():
        removed = conn.execute("DELETE FROM rec.rejected_rows WHERE last_seen_end < %s",
                               (interval_end - timedelta(days=rejected_days),)).rowcount
        rules.append(Rule("rejected rows", f"{rejected_days} days after the last night whose window held the row",
                          removed))
        removed = conn.execute("DELETE FROM rec.next_day_metrics WHERE computed_at < %s",
                               (interval_end - timedelta(days=metrics_days),)).rowcount
        rules.append(Rule("next-day metrics", f"{metrics_days} days (figures per segment; no person in them)",
                          removed))
        removed = conn.execute("DELETE FROM rec.alerts WHERE sent_at IS NOT NULL AND raised_at < %s",
                               (interval_end - timedelta(days=alerts_days),)).rowcount
        rules.append(Rule("alerts", f"{alerts_days} days once delivered", removed))
        # A pruned run's lists are gone: its health keeps its figures but names no sample user any more.
        removed = conn.execute(
            "UPDATE rec.run_health h SET sample_users = '{}' FROM rec.model_runs m "
            "WHERE m.model_run_id = h.model_run_id AND h.sample_users <> '{}' "
            "AND coalesce(m.status_reason, '') LIKE 'pruned%'").rowcount
        rules.append(Rule("health samples", "as long as the run's published lists", removed))
    return rules


def record_retention(conn: psycopg.Connection, run_key: str, rules: list[Rule]) -> None:
    """What this night's retention removed, per place (a rerun of the night replaces its rows)."""
    with conn.transaction():
        for rule in rules:
            conn.execute(
                "INSERT INTO rec.retention_runs (run_key, place, lifetime, removed) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (run_key, place) DO UPDATE SET lifetime = EXCLUDED.lifetime, removed = EXCLUDED.removed, "
                "ran_at = now()", (run_key, rule.place, rule.lifetime, rule.removed))
