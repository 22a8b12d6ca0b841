"""Under Airflow's own scheduler, triggerer and dag-processor, alerts reach a real SMTP server: a task
that fails after its retries and the failed night (one message each, no storm); a night still running
at its deadline (the Deadline Alert) and past its dagrun_timeout. The same runs write OpenLineage
events (file transport) whose tasks name the tables they read and write."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest

from rec_models.data.seed import seed_world
from rec_models.db.migrate import apply_migrations
from rec_models.faults import PauseControl
from rec_models.stack.scheduler import LocalScheduler
from tests.conftest import END

TO = "night-ops@example.org"
CONF = {"top_n": 10, "alert_emails": TO, "alert_smtp_conn_id": "recs_test_smtp"}
# Short on purpose: retries a second apart, a deadline 15 s after the run is queued, a 1-minute timeout.
QUICK = {"RECS_RETRY_DELAY_MINUTES": "0.02", "RECS_PUBLISH_DEADLINE_MINUTES": "0.25",
         "RECS_DAG_RUN_TIMEOUT_MINUTES": "1"}


@pytest.fixture(scope="module")
def stack(database_factory, small_world, tmp_path_factory, mail_server):
    recs = database_factory()
    apply_migrations(recs)
    with psycopg.connect(recs) as conn:
        seed_world(conn, small_world)
    home = tmp_path_factory.mktemp("alerts")
    pause = PauseControl(home / "pause")
    lineage = home / "openlineage.json"
    env = {**QUICK, "AIRFLOW_CONN_RECS_TEST_SMTP": mail_server.connection(), "RECS_PAUSE_DIR": str(pause.folder),
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(lineage),
                                                          "append": True})}
    scheduler = LocalScheduler(recs, database_factory("airflow_meta"), home / "airflow", home / "runs", env=env,
                               triggerer=True)
    scheduler.start()
    try:
        yield scheduler, pause, lineage, mail_server
    finally:
        scheduler.stop(timeout=5)  # a task the timeout stopped may still wind down: no need to wait for it


def _run_mail(mail_server, run_id: str, words: str, timeout: float):
    """The messages about DAG run ``run_id`` whose subject says ``words``."""
    return mail_server.wait_for(lambda m: f"/runs/{run_id}" in m.body and words in m.subject, timeout)


def test_a_task_failing_after_its_retries_and_the_failed_night_are_told_once_each(stack):
    scheduler, pause, _, mail_server = stack
    pause.fail("extract:done")
    try:
        run_id = scheduler.trigger(END, CONF, "extract_fails")
        assert scheduler.wait(run_id, timeout=300) == "failed"
    finally:
        pause.fail("extract:done", failing=False)
    assert scheduler.task_tries(run_id)["extract_snapshot"] == 3  # two retries, then the callback
    [task] = _run_mail(mail_server, run_id, "a task failed after its retries", timeout=60)
    assert "Task: extract_snapshot" in task.body and "InjectedFault: fault injected at extract:done" in task.body
    assert "tries: 3" in task.body and f"/dags/nightly_recommendations/runs/{run_id}" in task.body
    assert task.subject == "[recommendations] night 2026-11-27 02:00: a task failed after its retries"
    [failed] = _run_mail(mail_server, run_id, "the night failed", timeout=120)
    assert f"DAG run {run_id}: task_failure" in failed.body
    # One message each, however many tasks the failure stopped (the deadline may speak too: it did not publish).
    subjects = [m.subject for m in mail_server.messages if f"/runs/{run_id}" in m.body]
    assert subjects.count(task.subject) == 1 and subjects.count(failed.subject) == 1, subjects
    assert {s.split(": ", 1)[1] for s in subjects} <= {"a task failed after its retries", "the night failed",
                                                       "the night had not published by its deadline"}, subjects


def test_a_night_still_running_at_its_deadline_and_at_its_timeout_is_told(stack):
    scheduler, pause, _, mail_server = stack
    end = END - timedelta(days=1)
    pause.arm("validate:done")
    try:
        run_id = scheduler.trigger(end, CONF, "stuck")
        pause.wait_paused("validate:done", timeout=120)
        [deadline] = _run_mail(mail_server, run_id, "had not published by its deadline", timeout=120)
        assert f"DAG run {run_id} is running at its deadline" in deadline.body
        assert scheduler.wait(run_id, timeout=180) == "failed"
        [timed_out] = _run_mail(mail_server, run_id, "the night timed out", timeout=120)
        assert f"DAG run {run_id}: timed_out" in timed_out.body
    finally:
        pause.release("validate:done")


def test_tasks_emit_openlineage_events_with_the_tables_they_read_and_write(stack):
    *_, lineage, _ = stack
    events = [json.loads(line) for line in lineage.read_text().splitlines() if line.strip()]
    done = {e["job"]["name"].split(".")[-1]: e for e in events if e["eventType"] == "COMPLETE"}
    validate = done["validate_sources"]
    assert {(d["namespace"], d["name"]) for d in validate["inputs"]} == {
        ("postgres://recs_db:5432", f"recs.public.{t}") for t in ("videos", "video_views", "user_domain_visits")}
    assert [(d["namespace"], d["name"]) for d in validate["outputs"]] == [("postgres://recs_db:5432",
                                                                           "recs.rec.rejected_rows")]
    assert {d["name"] for d in done["next_day_metrics"]["outputs"]} == {"recs.rec.next_day_metrics"}
