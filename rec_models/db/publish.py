"""Write-audit-publish: load a run's rows into a staging table with binary COPY, audit them, then
attach them as the run's partition and point the serving row at it, all in one short transaction.

Readers of the ``rec.*_current`` views see the previous run or the new one, never a mix. The swap
waits for locks at most ``lock_timeout`` and retries, so a long-running reader cannot stall every
reader queued behind the swap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import psycopg
from psycopg import errors, sql

from rec_models.db.bulk import copy_in_chunks
from rec_models.db.outputs import OutputTable, audit_query

log = logging.getLogger(__name__)

# A partition's erasure (rec_models.db.erasure) and a publish's swap never interleave: each takes this
# transaction lock, so a list staged before a request arrived is either erased after its swap or
# withheld in it.
PUBLISH_LOCK = 727_002


class AuditError(RuntimeError):
    """Staged rows broke an output contract: nothing was published."""


def _partition_table(output: OutputTable, model_run_id: int) -> str:
    return f"{output.name}_r{int(model_run_id)}"


def partition_name(output: OutputTable, model_run_id: int) -> sql.Identifier:
    return sql.Identifier("rec", _partition_table(output, model_run_id))


def staging_name(output: OutputTable, model_run_id: int) -> sql.Identifier:
    return sql.Identifier("rec", f"{output.name}_stage_{int(model_run_id)}")


def stage_output(
    conn: psycopg.Connection, output: OutputTable, model_run_id: int, chunks: Iterable[Sequence[np.ndarray | str]]
) -> int:
    """(Re)create the staging table, COPY the rows in, then build the key (faster after the load)."""
    staging = staging_name(output, model_run_id)
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
        # Without autovacuum until it is attached: a vacuum of the freshly loaded rows holds a lock the
        # swap's rename needs, for as long as it takes (tens of seconds at 20M rows), and a swap that
        # waits at most lock_timeout never waits long enough for PostgreSQL to cancel that vacuum.
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
                             "WITH (autovacuum_enabled = false)").format(staging, sql.Identifier("rec", output.name)))
        rows = copy_in_chunks(conn, staging, output.columns, output.pg_types, chunks)
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
            staging, sql.SQL(", ").join(map(sql.Identifier, output.primary_key))))
        # The same constraint the partition bound implies: ATTACH then skips its validation scan.
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (model_run_id = {})").format(
            staging, sql.Identifier(f"{output.name}_stage_{int(model_run_id)}_run"), sql.Literal(int(model_run_id))))
    conn.execute(sql.SQL("ANALYZE {}").format(staging))
    conn.commit()
    log.info("staged %d rows into %s in %.2f s", rows, staging.as_string(conn), time.perf_counter() - started)
    return rows


def audit_output(conn: psycopg.Connection, output: OutputTable, model_run_id: int, expected_groups: int | None = None) -> dict[str, int]:
    """Run every audit on the staging table (one pass); raise AuditError naming each broken rule."""
    query, rules = audit_query(output, staging_name(output, model_run_id))
    groups, rows, *counts = conn.execute(query, {"model_run_id": model_run_id}).fetchone()
    violations = dict(zip(rules, counts))
    if rows == 0:
        violations["no rows"] = 1
    if expected_groups is not None and output.group_key and groups != expected_groups:
        violations[f"{output.group_key} count {groups} != expected {expected_groups}"] = abs(groups - expected_groups)
    conn.commit()
    broken = {k: v for k, v in violations.items() if v}
    if broken:
        raise AuditError(f"rec.{output.name} staging for model run {model_run_id} failed audit: {broken}")
    return violations


def with_lock_retry(conn: psycopg.Connection, work: Callable[[], object], what: str, *,
                    lock_timeout_ms: int = 100, max_attempts: int = 100) -> float:
    """Run ``work`` in one transaction that waits at most ``lock_timeout_ms`` for each lock, retrying
    with backoff: a long reader then delays only us, instead of every reader queued behind our lock.
    Returns the seconds the successful transaction took."""
    for attempt in range(1, max_attempts + 1):
        started = time.perf_counter()
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout_ms)}ms")))
                work()
            return time.perf_counter() - started
        except errors.LockNotAvailable:
            log.warning("%s waited > %d ms for a lock (attempt %d); retrying", what, lock_timeout_ms, attempt)
            time.sleep(min(0.05 * attempt, 1.0))
    raise TimeoutError(f"could not take the locks for {what} after {max_attempts} attempts")


def withhold_requested(conn: psycopg.Connection, output: OutputTable, model_run_id: int,
                       after_request_id: int) -> int:
    """In a swap's transaction: take ``PUBLISH_LOCK`` and delete from the staged lists the people whose
    erasure was requested after ``after_request_id`` (earlier ones were left out at staging)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))
    if output.group_key != "user_id":
        return 0
    late = [r[0] for r in conn.execute("SELECT user_id FROM rec.erasure_requests WHERE request_id > %s",
                                       (after_request_id,)).fetchall()]
    if not late:
        return 0
    return conn.execute(sql.SQL("DELETE FROM {} WHERE model_run_id = %s AND user_id = ANY(%s)").format(
        staging_name(output, model_run_id)), (model_run_id, late)).rowcount


def swap_in(conn: psycopg.Connection, model_run_id: int, outputs: Sequence[OutputTable], *,
            withhold_after_request: int = 0, **retry) -> float:
    """Attach the staged tables as this run's partitions (replacing an earlier attempt of the same run,
    atomically for its readers) and mark the run published, leaving out the lists of people whose
    erasure was requested after ``withhold_after_request``. One transaction; returns its seconds."""

    def work() -> None:
        for output in outputs:
            withhold_requested(conn, output, model_run_id, withhold_after_request)
        for output in outputs:
            _replace_partition(conn, output, model_run_id)
        conn.execute("UPDATE rec.model_runs SET status = 'published', published_at = now(), updated_at = now() "
                     "WHERE model_run_id = %s", (model_run_id,))

    seconds = with_lock_retry(conn, work, f"publish of model run {model_run_id}", **retry)
    log.info("published model run %d (%s) in %.3f s", model_run_id, ", ".join(o.name for o in outputs), seconds)
    return seconds


def point_serving(conn: psycopg.Connection, model_run_id: int, outputs: Sequence[OutputTable], *,
                  allow_older: bool = False, **retry) -> bool:
    """Make the _current views show ``model_run_id`` for these outputs, all in one transaction.

    A run for an older data interval than the one serving now (a backfill) does not take over,
    unless ``allow_older`` (a rollback). Returns whether the pointers moved.
    """
    moved = False

    def work() -> None:
        nonlocal moved
        newer = conn.execute(
            "SELECT coalesce(bool_and(new.data_interval_end >= cur.data_interval_end), true) "
            "FROM rec.serving s JOIN rec.model_runs cur ON cur.model_run_id = s.model_run_id, "
            "rec.model_runs new WHERE new.model_run_id = %s AND s.output_name = ANY(%s)",
            (model_run_id, [o.name for o in outputs])).fetchone()[0]
        if not (newer or allow_older):
            return
        for output in outputs:
            conn.execute(
                "INSERT INTO rec.serving (output_name, model_run_id) VALUES (%s, %s) ON CONFLICT (output_name) "
                "DO UPDATE SET model_run_id = EXCLUDED.model_run_id, published_at = now()",
                (output.name, model_run_id))
        moved = True

    with_lock_retry(conn, work, f"serving switch to model run {model_run_id}", **retry)
    return moved


def _replace_partition(conn: psycopg.Connection, output: OutputTable, model_run_id: int) -> None:
    partition = partition_name(output, model_run_id)
    existing = conn.execute("SELECT to_regclass(%s)", (partition.as_string(conn),)).fetchone()[0]
    parent = sql.Identifier("rec", output.name)
    if existing:
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(parent, partition))
        conn.execute(sql.SQL("DROP TABLE {}").format(partition))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
        staging_name(output, model_run_id), sql.Identifier(_partition_table(output, model_run_id))))
    conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
        parent, partition, sql.Literal(int(model_run_id))))
    conn.execute(sql.SQL("ALTER TABLE {} RESET (autovacuum_enabled)").format(partition))  # published: vacuumed as any


def drop_staging(conn: psycopg.Connection, outputs: Sequence[OutputTable], model_run_id: int) -> None:
    with conn.transaction():
        for output in outputs:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging_name(output, model_run_id)))


def prune_published(conn: psycopg.Connection, outputs: Sequence[OutputTable], model_name: str, keep: int,
                    lock_timeout_ms: int = 100) -> list[int]:
    """Drop the partitions of this model's runs beyond the ``keep`` published ones with the newest data
    (never a served run): a backfill of an old night published today is the oldest, not the newest."""
    stale = [r[0] for r in conn.execute(
        "SELECT model_run_id FROM rec.model_runs m WHERE model_name = %s AND published_at IS NOT NULL "
        "AND coalesce(status_reason, '') NOT LIKE 'pruned%%' "
        "AND NOT EXISTS (SELECT 1 FROM rec.serving s WHERE s.model_run_id = m.model_run_id) "
        "ORDER BY data_interval_end DESC, published_at DESC OFFSET %s", (model_name, keep)).fetchall()]
    conn.commit()
    dropped = []
    for run_id in stale:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout_ms)}ms")))
                for output in outputs:
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(partition_name(output, run_id)))
                conn.execute("UPDATE rec.model_runs SET status_reason = 'pruned: older than the kept published runs' "
                             "WHERE model_run_id = %s", (run_id,))
            dropped.append(run_id)
        except errors.LockNotAvailable:
            log.warning("pruning run %d skipped: tables busy; it will be pruned next night", run_id)
    return dropped
