"""Delivering alerts through Airflow's own notifiers, and the callbacks Airflow calls.

Where Airflow runs only (its imports are inside the functions): the task processes (a task's
``on_failure_callback``, after its retries), the dag-processor (the DAG run's ``on_failure_callback``:
failed or timed out) and the triggerer (the deadline's ``AsyncCallback``). Each records its event in
rec.alerts, then delivers every pending alert of the night: one message per event, by the SMTP
Connection (``alert_smtp_conn_id``) to ``alert_emails`` and by the Apprise Connection
(``alert_apprise_conn_id``) when set."""

from __future__ import annotations

import asyncio
import html
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from rec_models.alerts.events import Alert, compose, raise_alert
from rec_models.config import PipelineConfig, param_specs
from rec_models.db.alerts import claim_pending, mark_delivered
from rec_models.db.connect import connect, from_airflow_connection
from rec_models.names import MODEL_NAMES, RECS_CONN_ID

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Channels:
    """Where alerts go, from the run's settings (DAG params): nothing hard-coded."""

    emails: tuple[str, ...]
    smtp_conn_id: str
    apprise_conn_id: str

    @classmethod
    def of(cls, config: PipelineConfig) -> "Channels":
        emails = tuple(e.strip() for e in config.alert_emails.split(",") if e.strip())
        return cls(emails, config.alert_smtp_conn_id, config.alert_apprise_conn_id)

    def names(self) -> list[str]:
        return ([f"smtp:{self.smtp_conn_id}"] if self.emails else []) + \
            ([f"apprise:{self.apprise_conn_id}"] if self.apprise_conn_id else [])

    def send(self, subject: str, body: str) -> None:
        if self.emails:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            # notify() directly: the text is ours, not a template to render.
            SmtpNotifier(to=list(self.emails), subject=subject, smtp_conn_id=self.smtp_conn_id,
                         html_content=f"<pre>{html.escape(body)}</pre>").notify({})
        if self.apprise_conn_id:
            from airflow.providers.apprise.notifications.apprise import AppriseNotifier

            AppriseNotifier(title=subject, body=body, apprise_conn_id=self.apprise_conn_id).notify({})


def deliver(database_url: str, channels: Channels, run_key: str | None = None, link: str | None = None) -> int:
    """Send the pending alerts (of one night, or all), one message per night and event (``link``: the
    run's page, for alerts recorded without one); returns the messages sent. A channel that fails
    leaves its alerts pending for the next delivery, and says so in the log."""
    sent = 0
    with connect(database_url) as conn:
        groups = defaultdict(list)
        for alert in claim_pending(conn, run_key):
            groups[(alert.run_key, alert.event)].append(alert)
        for alerts in groups.values():
            subject, body = compose(alerts, link)
            try:
                channels.send(subject, body)
            except Exception:  # noqa: BLE001 - the night goes on; the alert stays pending and is retried
                log.exception("could not deliver the alert %r: it stays pending in rec.alerts", subject)
                continue
            mark_delivered(conn, [a.alert_id for a in alerts], channels.names())
            sent += 1 if channels.names() else 0
        conn.commit()
    return sent


def run_link(dag_id: str, run_id: str) -> str:
    """The DAG run's page in Airflow's UI (``[api] base_url``)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    return f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def _database_url() -> str:
    from airflow.sdk import BaseHook

    return from_airflow_connection(BaseHook.get_connection(RECS_CONN_ID))


def _config(params: dict | None) -> PipelineConfig:
    """The run's settings from its params or conf (unknown keys ignored: a callback must not fail)."""
    known = param_specs()
    try:
        return PipelineConfig.from_params({k: v for k, v in (params or {}).items() if k in known})
    except ValueError:
        log.exception("alert settings unreadable from the run's params: using the defaults")
        return PipelineConfig()


def _run_key(interval_end: Any) -> str:
    """The night's key as rec.model_runs spells it (its interval end, UTC, ISO)."""
    if isinstance(interval_end, str):
        interval_end = datetime.fromisoformat(interval_end.replace("Z", "+00:00"))
    return interval_end.astimezone(timezone.utc).isoformat()


def _model_of(task_id: str) -> str | None:
    return next((name for name in MODEL_NAMES if task_id.endswith(f"_{name}")), None)


def _already_alerted(exception: BaseException | None) -> bool:
    while exception is not None:
        if getattr(exception, "alerted", False):
            return True
        exception = exception.__cause__
    return False


def on_task_failure(context: dict) -> None:
    """A task failed after its retries: one alert per cause (the task with model names taken out)."""
    ti, dag_run = context["ti"], context["dag_run"]
    run_key = _run_key(context.get("data_interval_end") or dag_run.run_after)
    database_url, channels = _database_url(), Channels.of(_config(context.get("params")))
    exception, link = context.get("exception"), run_link(ti.dag_id, ti.run_id)
    if not _already_alerted(exception):
        raise_alert(database_url, Alert(
            run_key, "task_failed", f"{type(exception).__name__}: {exception}" if exception else "failed",
            model=_model_of(ti.task_id), task=ti.task_id, figures={"tries": ti.try_number}, link=link))
    deliver(database_url, channels, run_key, link)  # with what the task recorded itself (no views, disk)


def on_run_failure(context: dict) -> None:
    """The DAG run failed, or ran past its dagrun_timeout (the dag-processor's context holds the run
    when a task of it ran; else only its id)."""
    dag_run, run_id = context.get("dag_run"), context["run_id"]
    timed_out = context.get("reason") == "timed_out"
    run_key = _run_key(dag_run.data_interval_end or dag_run.run_after) if dag_run is not None else run_id
    params = context.get("params") or (dag_run.conf if dag_run is not None else None)
    database_url, channels = _database_url(), Channels.of(_config(params))
    link = run_link(context["dag"].dag_id, run_id)
    raise_alert(database_url, Alert(
        run_key, "run_timed_out" if timed_out else "run_failed",
        f"DAG run {run_id}: {context.get('reason') or 'failed'}; the published runs keep serving", link=link))
    deliver(database_url, channels, run_key, link)


async def deadline_missed(context: dict, **_: Any) -> None:
    """The deadline's AsyncCallback (in the triggerer, through ``rec_models.alerts.deadline``): the night
    has not published in time."""
    dag_run, deadline = context["dag_run"], context.get("deadline") or {}

    def record_and_deliver() -> None:
        run_key = _run_key(dag_run.get("data_interval_end") or dag_run["run_after"])
        database_url, channels = _database_url(), Channels.of(_config(dag_run.get("conf")))
        raise_alert(database_url, Alert(
            run_key, "deadline_missed",
            f"DAG run {dag_run['dag_run_id']} is {dag_run.get('state')} at its deadline "
            f"{deadline.get('deadline_time')}; the previous runs keep serving",
            link=run_link(dag_run["dag_id"], dag_run["dag_run_id"])))
        deliver(database_url, channels, run_key)

    await asyncio.to_thread(record_and_deliver)
