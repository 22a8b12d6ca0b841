"""rec.alerts, the outbox of alerts: a task records an event; a notifier delivers what is pending.

One row per (night, event, cause): the same cause raised again (another model failing the same way,
a retry) counts in ``occurrences`` and is not delivered twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class StoredAlert:
    alert_id: int
    run_key: str
    event: str
    cause: str
    model_name: str | None
    subject: str
    body: str
    link: str | None
    occurrences: int
    raised_at: datetime


def record_alert(conn: psycopg.Connection, *, run_key: str, event: str, cause: str, model_name: str | None,
                 subject: str, body: str, link: str | None) -> bool:
    """Record an event; True when it is new (its cause not yet recorded for this night and event)."""
    row = conn.execute(
        "INSERT INTO rec.alerts (run_key, event, cause, model_name, subject, body, link) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_key, event, cause) "
        "DO UPDATE SET occurrences = rec.alerts.occurrences + 1 RETURNING (xmax = 0)",
        (run_key, event, cause, model_name, subject, body, link)).fetchone()
    conn.commit()
    return bool(row[0])


def claim_pending(conn: psycopg.Connection, run_key: str | None = None) -> list[StoredAlert]:
    """The undelivered alerts (of one night, or all), locked until this transaction ends: two
    deliveries at once (two failure callbacks) never send the same alert twice."""
    rows = conn.execute(
        "SELECT alert_id, run_key, event, cause, model_name, subject, body, link, occurrences, raised_at "
        "FROM rec.alerts WHERE sent_at IS NULL AND (%(run_key)s::text IS NULL OR run_key = %(run_key)s) "
        "ORDER BY alert_id FOR UPDATE SKIP LOCKED", {"run_key": run_key}).fetchall()
    return [StoredAlert(*row) for row in rows]


def mark_delivered(conn: psycopg.Connection, alert_ids: list[int], channels: list[str]) -> None:
    conn.execute("UPDATE rec.alerts SET sent_at = now(), channels = %s WHERE alert_id = ANY(%s)",
                 (channels, alert_ids))


def alerts_of(conn: psycopg.Connection, run_key: str) -> list[tuple]:
    """(event, model_name, subject, occurrences, sent_at, channels) of one night, oldest first."""
    return conn.execute("SELECT event, model_name, subject, occurrences, sent_at, channels FROM rec.alerts "
                        "WHERE run_key = %s ORDER BY alert_id", (run_key,)).fetchall()
