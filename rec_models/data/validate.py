"""The validate task: judge the window's source days that changed (rec_models.data.judged), quarantine
the window's bad rows with a reason, count them, and stop the run before training when a source is
empty or too much of it is bad."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from rec_models.data.judged import JudgedDays, rejudge_changed_days
from rec_models.data.rules import SourceRules, all_rules, rule_params, videos_rules

log = logging.getLogger(__name__)

_EXAMPLES = 3


class SourceDataError(RuntimeError):
    """The sources cannot feed a trustworthy run (empty, or too many bad rows)."""


@dataclass
class SourceReport:
    table: str
    rows: int = 0
    rejected: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    days: JudgedDays | None = None  # what tonight judged of the window's days

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0


def validate_sources(
    conn: psycopg.Connection,
    run_key: str,
    end: datetime,
    window_start: datetime,
    service_start: datetime,
    max_rejected_share: float,
) -> dict[str, SourceReport]:
    """Judge the window's days that changed, quarantine this run's bad rows (replacing an earlier
    attempt's) and judge the sources.

    The quarantine is committed even when the run is then stopped, so operators can see why.
    """
    params = rule_params(end, window_start, service_start)
    # One snapshot for all three sources, exported to a connection per source so that they are judged
    # side by side (each source's rules are one server process's work).
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            sources = all_rules()
            with ThreadPoolExecutor(max_workers=len(sources)) as pool:
                judged = [pool.submit(_validate_in_snapshot, conn.info, snapshot, rules, run_key, params)
                          for rules in sources]
                reports = {rules.table: future.result() for rules, future in zip(sources, judged)}
    finally:
        conn.isolation_level = None
    for report in reports.values():
        log.info(
            "%s: %d rows in window, %d rejected (%.2f%%) %s; %d of %d days judged tonight",
            report.table, report.rows, report.rejected, 100 * report.rejected_share, report.by_reason,
            len(report.days.judged), report.days.days,
        )
    try:
        _judge(conn, reports, max_rejected_share, params)
    finally:
        conn.commit()  # end the read transaction; the quarantine itself was committed above
    return reports


def _validate_in_snapshot(info: psycopg.ConnectionInfo, snapshot: str, rules: SourceRules, run_key: str,
                          params: dict) -> SourceReport:
    """One source: its changed days judged, its quarantine (replacing an earlier attempt's) and counts,
    committed, read in ``snapshot``."""
    with psycopg.connect(info.dsn, password=info.password) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            # The duplicate and bot rules sort a day's rows: let them sort in memory, not on disk.
            conn.execute("SET LOCAL work_mem = '256MB'")
            days = rejudge_changed_days(conn, rules, params)
            conn.execute("DELETE FROM rec.rejected_rows WHERE run_key = %s AND source_table = %s",
                         (run_key, rules.table))
            return _quarantine(conn, rules, run_key, params, days)


def _checked_in_snapshot(rules: SourceRules) -> sql.Composed:
    """The window's rows with their final reason, from the judged table as this transaction sees it; the
    catalogue the views are judged with is the snapshot's, judged anew (the videos' own connection
    may not have committed yet)."""
    return rules.checked(rules.judged_table, sql.SQL("({})").format(videos_rules().judge(every_day=True)))


def _quarantine(conn: psycopg.Connection, rules: SourceRules, run_key: str, params: dict,
                days: JudgedDays) -> SourceReport:
    checked = _checked_in_snapshot(rules)
    # One quarantine row per rejected source row: a row already quarantined by an earlier night whose
    # window held it too is kept as it is, seen again. Identical rows are told apart by their number
    # among themselves, so each copy is one row.
    conn.execute(
        sql.SQL(
            "WITH rejected AS (SELECT c.reason, to_jsonb(c) - 'reason' AS row_data FROM ({}) c "
            "WHERE c.reason IS NOT NULL), "
            "numbered AS (SELECT reason, row_data, row_number() OVER (PARTITION BY reason, row_data::text) AS copy "
            "FROM rejected) "
            "INSERT INTO rec.rejected_rows (run_key, source_table, reason, row_data, row_hash, last_seen_end) "
            "SELECT %(run_key)s, %(table)s, reason, row_data, md5(reason || ':' || copy || ':' || row_data::text), "
            "%(end)s FROM numbered "
            "ON CONFLICT (source_table, row_hash) DO UPDATE "
            "SET last_seen_end = greatest(rec.rejected_rows.last_seen_end, EXCLUDED.last_seen_end)"
        ).format(checked),
        {**params, "run_key": run_key, "table": rules.table},
    )
    counts = dict(conn.execute(sql.SQL("SELECT c.reason, count(*) FROM ({}) c GROUP BY 1").format(checked),
                               params).fetchall())
    total = sum(counts.values())
    by_reason = dict(sorted(((r, n) for r, n in counts.items() if r is not None), key=lambda rn: (-rn[1], rn[0])))
    return SourceReport(rules.table, rows=total, rejected=sum(by_reason.values()), by_reason=by_reason, days=days)


def _judge(conn: psycopg.Connection, reports: dict[str, SourceReport], max_share: float, params: dict) -> None:
    views = reports["video_views"]
    if views.rows - views.rejected <= 0:
        raise SourceDataError(
            f"video_views has no valid rows before the data interval end ({views.rows} rows in the window, "
            f"{views.rejected} rejected): refusing to train and publish an empty result"
        )
    for report in reports.values():
        if report.rejected_share > max_share:
            worst = max(report.by_reason, key=report.by_reason.get)
            rules = next(r for r in all_rules() if r.table == report.table)
            examples = conn.execute(
                sql.SQL("SELECT (to_jsonb(c) - 'reason')::text FROM ({}) c WHERE c.reason = %(worst)s "
                        "LIMIT %(examples)s").format(rules.checked(rules.judged_table, videos_rules().judged_table)),
                {**params, "worst": worst, "examples": _EXAMPLES},
            ).fetchall()
            raise SourceDataError(
                f"{report.table}: {report.rejected} of {report.rows} rows rejected "
                f"({100 * report.rejected_share:.1f}% > {100 * max_share:.1f}% allowed); "
                f"most common reason '{worst}' ({report.by_reason[worst]} rows), e.g. "
                + "; ".join(e[0] for e in examples)
                + ". Quarantined rows are in rec.rejected_rows; the published output is unchanged."
            )
