"""The validate task: quarantine bad source rows of the run's window with a reason, count them, and
stop the run before training when a source is empty or too much of it is bad."""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from rec_models.data.rules import SourceCheck, rule_params, videos_check, views_check, visits_check

log = logging.getLogger(__name__)

# The final relation name of each check's CTE chain.
_CHECKED = {"videos": "checked", "video_views": "checked_views", "user_domain_visits": "checked_visits"}
_EXAMPLES = 3


class SourceDataError(RuntimeError):
    """The sources cannot feed a trustworthy run (empty, or too many bad rows)."""


@dataclass
class SourceReport:
    table: str
    rows: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0


def source_checks() -> list[SourceCheck]:
    return [videos_check(), views_check(), visits_check()]


def validate_sources(
    conn: psycopg.Connection,
    run_key: str,
    end: datetime,
    window_start: datetime,
    service_start: datetime,
    max_rejected_share: float,
) -> dict[str, SourceReport]:
    """Quarantine this run's bad rows (replacing an earlier attempt's) and judge the sources.

    The quarantine is committed even when the run is then stopped, so operators can see why.
    """
    params = rule_params(end, window_start, service_start)
    # One snapshot for all three sources, exported to a connection per source so that they are judged
    # side by side (each source's rules are one server process's work); the judged rows are kept
    # (rec.checked_*) for the extract.
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            checks = source_checks()
            with ThreadPoolExecutor(max_workers=len(checks)) as pool:
                judged = [pool.submit(_quarantine_in_snapshot, conn.info, snapshot, check, run_key, params)
                          for check in checks]
                reports = {check.table: future.result() for check, future in zip(checks, judged)}
    finally:
        conn.isolation_level = None
    for report in reports.values():
        log.info(
            "%s: %d rows in window, %d rejected (%.2f%%) %s",
            report.table, report.rows, report.rejected, 100 * report.rejected_share, report.by_reason,
        )
    try:
        _judge(conn, run_key, reports, max_rejected_share)
    finally:
        conn.commit()  # end the read transaction; the quarantine itself was committed above
    return reports


def checked_table(table: str, run_key: str) -> sql.Identifier:
    """Where validate keeps the judged rows of one source for one run (read by the extract)."""
    slug = re.sub(r"[^0-9a-z]", "", run_key.lower())[:32]
    return sql.Identifier("rec", f"checked_{table}_{slug}")


def drop_checked(conn: psycopg.Connection, run_key: str) -> None:
    with conn.transaction():
        for table in _CHECKED:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(checked_table(table, run_key)))


def _quarantine_in_snapshot(info: psycopg.ConnectionInfo, snapshot: str, check: SourceCheck, run_key: str,
                            params: dict) -> SourceReport:
    """One source's quarantine (replacing an earlier attempt's), committed, read in ``snapshot``."""
    with psycopg.connect(info.dsn, password=info.password) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            # The duplicate and bot rules sort the window's rows: let them sort in memory, not on disk.
            conn.execute("SET LOCAL work_mem = '256MB'")
            conn.execute("DELETE FROM rec.rejected_rows WHERE run_key = %s AND source_table = %s",
                         (run_key, check.table))
            return _quarantine(conn, check, run_key, params)


def _quarantine(conn: psycopg.Connection, check: SourceCheck, run_key: str, params: dict) -> SourceReport:
    # The rules run once: their verdicts are materialised, then quarantined and counted from there.
    target = checked_table(check.table, run_key)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
    conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} AS {} SELECT * FROM {}").format(
        target, check.query, sql.Identifier(_CHECKED[check.table])), params)
    # One quarantine row per rejected source row: a row already quarantined by an earlier night whose
    # window held it too is kept as it is, seen again. Identical rows are told apart by their number
    # among themselves, so each copy is one row.
    conn.execute(
        sql.SQL(
            "WITH rejected AS (SELECT c.reason, to_jsonb(c) - 'reason' AS row_data FROM {} c "
            "WHERE c.reason IS NOT NULL), "
            "numbered AS (SELECT reason, row_data, row_number() OVER (PARTITION BY reason, row_data::text) AS copy "
            "FROM rejected) "
            "INSERT INTO rec.rejected_rows (run_key, source_table, reason, row_data, row_hash, last_seen_end) "
            "SELECT %(run_key)s, %(table)s, reason, row_data, md5(reason || ':' || copy || ':' || row_data::text), "
            "%(end)s FROM numbered "
            "ON CONFLICT (source_table, row_hash) DO UPDATE "
            "SET last_seen_end = greatest(rec.rejected_rows.last_seen_end, EXCLUDED.last_seen_end)"
        ).format(target),
        {"run_key": run_key, "table": check.table, "end": params["end"]},
    )
    total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()[0]
    by_reason = dict(
        conn.execute(
            sql.SQL("SELECT reason, count(*) FROM {} WHERE reason IS NOT NULL GROUP BY reason "
                    "ORDER BY count(*) DESC, reason").format(target)
        ).fetchall()
    )
    return SourceReport(check.table, rows=total, rejected=sum(by_reason.values()), by_reason=by_reason)


def _judge(conn: psycopg.Connection, run_key: str, reports: dict[str, SourceReport], max_share: float) -> None:
    views = reports["video_views"]
    if views.rows - views.rejected <= 0:
        raise SourceDataError(
            f"video_views has no valid rows before the data interval end ({views.rows} rows in the window, "
            f"{views.rejected} rejected): refusing to train and publish an empty result"
        )
    for report in reports.values():
        if report.rejected_share > max_share:
            worst = max(report.by_reason, key=report.by_reason.get)
            examples = conn.execute(
                sql.SQL("SELECT (to_jsonb(c) - 'reason')::text FROM {} c WHERE c.reason = %s LIMIT %s").format(
                    checked_table(report.table, run_key)),
                (worst, _EXAMPLES),
            ).fetchall()
            raise SourceDataError(
                f"{report.table}: {report.rejected} of {report.rows} rows rejected "
                f"({100 * report.rejected_share:.1f}% > {100 * max_share:.1f}% allowed); "
                f"most common reason '{worst}' ({report.by_reason[worst]} rows), e.g. "
                + "; ".join(e[0] for e in examples)
                + ". Quarantined rows are in rec.rejected_rows; the published output is unchanged."
            )
