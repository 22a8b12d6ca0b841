"""Before training: the schema, the window's validation and quarantine, the one extract, the night's
check, and the next-day metrics of the runs that served."""

from __future__ import annotations

import logging

from rec_models.alerts.events import Alert, AlertedError, raise_alert
from rec_models.data.checks import check_interval as check_interval_views
from rec_models.data.dataset import Dataset
from rec_models.data.rules import SERVICE_START
from rec_models.data.snapshot import extract_snapshot
from rec_models.data.validate import validate_sources
from rec_models.db.connect import connect
from rec_models.db.disk import database_bytes, database_free_bytes, expected_publish_bytes, record_disk_check
from rec_models.db.erasure import requested_in_sources
from rec_models.db.migrate import apply_migrations
from rec_models.db.next_day import measure, record_next_day, served_runs
from rec_models.db.runs import record_night_check
from rec_models.faults import checkpoint
from rec_models.names import MODEL_NAMES
from rec_models.run import Run, disk_needed

log = logging.getLogger(__name__)


def migrate(run: Run) -> list[str]:
    """Bring the rec schema up to date (idempotent, serialised by an advisory lock)."""
    return apply_migrations(run.database_url)


def validate(run: Run) -> dict:
    """Quarantine bad rows of the window; fail before training if the sources cannot be trusted."""
    run.files.mark_in_use()  # the run's first task that writes into its folder
    with connect(run.database_url) as conn:
        reports = validate_sources(conn, run.run_key, run.interval_end, run.window_start, SERVICE_START,
                                   run.config.max_rejected_share)
        withheld = requested_in_sources(conn, run.window_start, run.interval_end)
    summary = {t: {"rows": r.rows, "rejected": r.rejected, "by_reason": r.by_reason} for t, r in reports.items()}
    if withheld:
        log.warning("%d people who asked to be forgotten are still in upstream's tables: their rows are not read",
                    withheld)
    run.files.write_validation(summary)
    run.files.write_withheld(withheld)
    checkpoint("validate:done")
    return summary


def extract(run: Run) -> str:
    try:  # validate's counts of valid rows: the kept verdicts are read when they give these
        validated = {t: counts["rows"] - counts["rejected"] for t, counts in run.files.read_validation().items()}
    except FileNotFoundError:
        validated = None
    with connect(run.database_url) as conn:
        snapshot = extract_snapshot(conn, run.interval_end, run.window_start, SERVICE_START, validated)
    run.files.save_snapshot(snapshot)
    # The one data object of the run (id maps, views, domain and content bags), built once here.
    run.files.save_dataset(Dataset.from_snapshot(snapshot))
    checkpoint("extract:done")
    return run.files.snapshot_location


class NightSkipped(AlertedError):
    """The night's data cannot be trained on (no views, a partial day): the previous run keeps serving."""


class DiskShort(AlertedError):
    """The run root or the database's disk has less free space than the night is expected to write: the
    previous runs keep serving."""


def check_interval(run: Run) -> dict:
    """Before training: does the interval hold the views a night should? Records the answer in
    rec.night_checks; raises :class:`NightSkipped` with the reason when it does not."""
    data = run.files.load_dataset()
    start = run.interval_start_or_default
    night = check_interval_views(data, start.timestamp(), run.interval_end.timestamp(), run.config.partial_day_share)
    with connect(run.database_url) as conn:
        record_night_check(conn, run_key=run.run_key, dag_run_id=run.dag_run_id, interval_start=start,
                           interval_end=run.interval_end, views_in_interval=night.views_in_interval,
                           median_daily_views=night.median_daily_views, reason=night.reason)
    result = {"views_in_interval": night.views_in_interval, "median_daily_views": night.median_daily_views,
              "train": night.train, "reason": night.reason}
    if not night.train:
        log.error("night %s skips training, the published runs keep serving: %s", run.run_key, night.reason)
        raise_alert(run.database_url, Alert(run.run_key, "night_skipped", night.reason, figures={
            "views in the interval": night.views_in_interval, "median daily views": night.median_daily_views}))
        raise NightSkipped(night.reason)
    check_disk(run)
    return result


def check_disk(run: Run) -> None:
    """Before training: the run root must have ``disk_free_margin`` times what the newest earlier night's
    run folder took free, and the database's disk that many times what tonight's publishes are expected
    to add, or the night fails here, early, with the reason. The figures go to rec.night_checks."""
    margin = run.config.disk_free_margin
    sizes = disk_needed(run.store, run.interval_end)
    models = min(len(MODEL_NAMES), 1 + len(run.config.published_besides_serving()))  # an upper bound
    with connect(run.database_url) as conn:
        expected_database = expected_publish_bytes(conn, models)
        database_free = database_free_bytes(conn)
        record_disk_check(conn, run.run_key, expected_run_folder=sizes[0] if sizes else None,
                          run_root_free=sizes[1] if sizes else None, expected_database=expected_database,
                          database_free=database_free, database_before=database_bytes(conn))
    short = []
    if sizes is not None and sizes[1] < sizes[0] * margin:
        short.append(f"the run root {run.store.location('')} has {_size(sizes[1])} free; the night needs "
                     f"{_size(sizes[0] * margin)} ({margin:g} x the {_size(sizes[0])} of the last run folder)")
    if expected_database is not None and database_free is not None and database_free < expected_database * margin:
        short.append(f"the database's disk has {_size(database_free)} free; tonight's publishes need "
                     f"{_size(expected_database * margin)} ({margin:g} x the {_size(expected_database)} expected)")
    if short:
        reason = "; ".join(short)
        log.error("night %s stops before training: %s", run.run_key, reason)
        figures = {"run root free bytes": sizes[1] if sizes else None,
                   "run folder bytes expected": sizes[0] if sizes else None,
                   "database free bytes": database_free, "database bytes expected": expected_database}
        raise_alert(run.database_url, Alert(run.run_key, "disk_low", reason,
                                            figures={k: v for k, v in figures.items() if v is not None}))
        raise DiskShort(reason)


def next_day_metrics(run: Run) -> dict:
    """Before training: what each model's serving run listed, against the views of the interval that
    just ended (rec.next_day_metrics; a rerun replaces this night's rows). NDCG@10 per model and of
    its popular list, over every user with a list."""
    start = run.interval_start_or_default
    with connect(run.database_url) as conn:
        served = served_runs(conn, start)
        measured = {r.model_run_id: measure(conn, r, start, run.interval_end, run.window_start) for r in served}
        record_next_day(conn, run.run_key, measured)
    summary = {}
    for r in served:
        values = {(ranker, metric): value for ranker, segment, metric, value in measured[r.model_run_id]
                  if segment == "all"}
        summary[r.model_name] = {"model_run_id": r.model_run_id, "users": values.get(("model", "users")),
                                 "ndcg@10": values.get(("model", "ndcg@10")),
                                 "popularity_ndcg@10": values.get(("popularity", "ndcg@10"))}
    log.info("next-day metrics of the runs that served %s: %s", run.run_key, summary)
    return summary


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:,.1f} MB"
