"""The erasure step, first in every night (and the whole of the on-demand DAG erase_personal_data):
every open request in rec.erasure_requests is carried out in the tables and in every run folder, and
marked done with what was removed only when every place is clean."""

from __future__ import annotations

import logging

import numpy as np

from rec_models.alerts.events import Alert, raise_alert
from rec_models.db.connect import connect
from rec_models.db import erasure as tables
from rec_models.erasure import erase_from_run_folders
from rec_models.faults import checkpoint
from rec_models.run import Run, sweep_cache

log = logging.getLogger(__name__)
# Requests still open after this many attempts (a folder busy night after night) raise an alert.
STUCK_ATTEMPTS = 3


def erase(run: Run, *, nightly: bool = True) -> dict:
    """Carry out the open erasure requests (one erasure at a time across DAGs). A run folder another run
    is using leaves its requests open for the next attempt (``nightly``: the run's own folder, a rerun's
    earlier attempt, is cleaned too; the CLI and the on-demand DAG own no folder); a failure records why on each request,
    raises an alert and fails the task (which retries): nothing is marked done half-finished. With no
    request open, this machine's cache still drops what the store no longer holds."""
    with connect(run.database_url) as conn, tables.erasure_lock(conn):
        requests = tables.open_requests(conn)
        if not requests:
            return {"requests": 0, "done": 0, "cache_dropped": sweep_cache(run.store)}
        people = np.array(sorted(requests), dtype=np.int64)
        try:
            from_tables = tables.erase_rows(conn, people)
            checkpoint("erasure:after_tables")
            folders = erase_from_run_folders(run.store, people, current=run.files.slug if nightly else None)
        except Exception as exc:
            conn.rollback()
            reason = f"{type(exc).__name__}: {exc}"
            tables.record_unfinished(conn, requests, reason)
            raise_alert(run.database_url, Alert(run.run_key, "erasure_failed", reason,
                                                figures={"people waiting": len(requests)}))
            exc.alerted = True  # the task's failure callback adds no second alert
            raise
        removed = {**from_tables, **folders.by_place()}
        if folders.busy:
            reason = (f"run folders in use by another run now: {', '.join(folders.busy)}; the next erasure "
                      "cleans them")
            attempts = tables.record_unfinished(conn, requests, reason)
            log.warning("%d erasure requests stay open: %s", len(requests), reason)
            if attempts >= STUCK_ATTEMPTS:  # not silent: someone must look at what keeps a folder busy
                raise_alert(run.database_url, Alert(run.run_key, "erasure_failed", f"open after {attempts} attempts: "
                                                    f"{reason}", figures={"people waiting": len(requests)}))
        else:
            tables.finish_requests(conn, requests, removed)
    summary = {"requests": len(requests), "done": 0 if folders.busy else len(requests),
               "removed": {place: sum(by_person.values()) for place, by_person in removed.items()},
               "busy_folders": folders.busy, "leftover_files": folders.leftovers,
               "cache_dropped": folders.cache_dropped}
    log.info("erasure: %s", summary)
    return summary


def file_requests(run: Run, user_ids, requested_by: str | None = None) -> int:
    """File an erasure request per person (not twice for an open one); returns how many were filed."""
    with connect(run.database_url) as conn:
        filed = tables.file_requests(conn, user_ids, requested_by)
    log.info("filed %d erasure requests", filed)
    return filed
