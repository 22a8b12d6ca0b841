"""Alerts raised by the nights themselves, delivered to a real SMTP server through Airflow's SMTP
notifier: two models the gate rejects make one message; a night with no views, a short disk and a
failed retention step each make theirs; the same cause twice is counted, not sent twice."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import psycopg
import pytest

from rec_models import pipeline
from rec_models.alerts.delivery import Channels, deliver
from rec_models.alerts.events import Alert, raise_alert
from rec_models.config import PipelineConfig
from rec_models.faults import InjectedFault
from rec_models.db.alerts import alerts_of
from rec_models.run import Run
from tests.conftest import END

TO = "night-ops@example.org"
MODELS = ("mf", "neumf")
ALERTS = {"alert_emails": TO, "alert_smtp_conn_id": "recs_test_smtp"}


def _run(url, root, end, **params) -> Run:
    config = PipelineConfig.from_params({"top_n": 10, "mf_epochs": 10, "neumf_epochs": 4, "neumf_pretrain": False,
                                         "train_mode": "full", "keep_run_folders": 1, "publish_models": "all", **ALERTS, **params})
    return Run(database_url=url, interval_end=end, dag_run_id=f"test_{end:%d}", config=dataclasses.replace(
        config, run_root=str(root)))


@pytest.fixture(scope="module")
def nights(database_factory, small_world, tmp_path_factory, mail_server):
    """Night 1 publishes both models; night 2 barely trains them, with no tolerance (both rejected);
    night 2 again with a disk margin no disk has; night 3 has no views."""
    from rec_models.data.seed import seed_world
    from rec_models.db.migrate import apply_migrations

    url = database_factory()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, small_world)
    root = tmp_path_factory.mktemp("runs")
    first = pipeline.run_all(_run(url, root, END - timedelta(days=1)), MODELS)
    # Barely trained: untrained weights cannot match the published runs.
    second_run = _run(url, root, END, mf_epochs=1, neumf_epochs=1, mf_learning_rate=1e-6, neumf_learning_rate=1e-6,
                      quality_tolerance=0)
    second = pipeline.run_all(second_run, MODELS)
    short = pipeline.run_all(_run(url, root, END, disk_free_margin=1e12), MODELS)
    empty = pipeline.run_all(_run(url, root, END + timedelta(days=1)), MODELS)
    return url, root, second_run, {"first": first, "second": second, "short": short, "empty": empty}


def _deliver(url, run: Run) -> int:
    return deliver(url, Channels.of(run.config), run.run_key, link=f"http://airflow.example/runs/{run.dag_run_id}")


def test_models_the_gate_rejects_make_one_message(nights, mail_server):
    url, _, second, results = nights
    assert {m for m, p in results["first"]["published"].items() if p["published"]} == set(MODELS)
    assert not any(p["published"] for p in results["second"]["published"].values()), results["second"]
    assert _deliver(url, second) >= 1  # the gate's message, and the short disk's of the same night
    [mail] = mail_server.wait_for(lambda m: "quality gate" in m.subject and second.run_key in m.body, timeout=10)
    assert mail.subject == "[recommendations] night 2026-11-27 02:00: the quality gate rejected a model (mf, neumf)"
    assert mail.recipients == (TO,)
    for text in ("Model: mf", "Model: neumf", "worse than published run", "holdout NDCG@10:",
                 f"The run in Airflow: http://airflow.example/runs/{second.dag_run_id}"):
        assert text in mail.body
    assert _deliver(url, second) == 0  # each delivered once
    with psycopg.connect(url) as conn:
        rows = [r for r in alerts_of(conn, second.run_key) if r[0] == "gate_rejected"]
        assert len(rows) == 2 and all(r[4] is not None and r[5] == ["smtp:recs_test_smtp"] for r in rows)


def test_a_short_disk_stops_the_night_before_training_and_says_how_short(nights, mail_server):
    url, _, second, results = nights
    assert "needs" in results["short"]["skipped"] and results["short"]["published"] == {}
    _deliver(url, second)
    [mail] = mail_server.wait_for(lambda m: "not enough free disk" in m.subject, timeout=10)
    assert mail.subject == "[recommendations] night 2026-11-27 02:00: not enough free disk for the night"
    assert "free; the night needs" in mail.body and "run folder bytes expected:" in mail.body
    # The database's disk too (the embedded server's data directory is on this machine): its free
    # bytes against what the published runs took, recorded for the health page.
    assert "the database's disk has" in mail.body and "database bytes expected:" in mail.body
    with psycopg.connect(url) as conn:
        expected, free, before = conn.execute(
            "SELECT expected_database_bytes, database_free_bytes, database_bytes_before FROM rec.night_checks "
            "WHERE run_key = %s", (second.run_key,)).fetchone()
    assert 0 < expected < before and free > 0


def test_a_night_without_views_is_told(nights, mail_server):
    url, root, _, results = nights
    assert results["empty"]["skipped"]
    empty = _run(url, root, END + timedelta(days=1))
    _deliver(url, empty)
    [mail] = mail_server.wait_for(lambda m: "training skipped" in m.subject, timeout=10)
    assert mail.subject == "[recommendations] night 2026-11-28 02:00: training skipped (no views or a partial day)"
    assert "Reason: no views in the interval" in mail.body and "views in the interval: 0" in mail.body


def test_a_failed_retention_step_is_told_and_fails_the_task(nights, mail_server, monkeypatch):
    url, root, second, _ = nights
    monkeypatch.setenv("RECS_FAULTS", "retention:prune")  # the store fails as the old folders are pruned
    with pytest.raises(InjectedFault, match="retention:prune") as failed:
        pipeline.summarize(second)
    assert failed.value.alerted  # the task's failure callback will not add a second alert
    _deliver(url, second)
    [mail] = mail_server.wait_for(lambda m: "retention step failed" in m.subject, timeout=10)
    assert "Reason: pruning older run folders: InjectedFault: fault injected at retention:prune" in mail.body


def test_the_same_cause_twice_is_counted_not_sent_twice(nights, mail_server):
    url, root, second, _ = nights
    before = len(mail_server.messages)
    for model, host in (("mf", "10.0.0.7"), ("neumf", "10.0.0.9")):
        raise_alert(url, Alert(second.run_key, "task_failed", f"OperationalError: connection to {host} refused",
                               model=model, task=f"train_{model}"))
    assert _deliver(url, second) == 1
    [mail] = mail_server.wait_for(lambda m: "a task failed" in m.subject, timeout=10)
    assert mail.subject == "[recommendations] night 2026-11-27 02:00: a task failed after its retries (mf and others)"
    assert "Seen 2 times tonight" in mail.body and len(mail_server.messages) == before + 1


def test_alerts_without_a_channel_are_recorded_not_sent(nights):
    url, root, second, _ = nights
    quiet = dataclasses.replace(second, config=dataclasses.replace(second.config, alert_emails=""))
    raise_alert(url, Alert(second.run_key, "run_failed", "DAG run x: task_failure"))
    assert deliver(url, Channels.of(quiet.config), second.run_key) == 0
    with psycopg.connect(url) as conn:
        [row] = [r for r in alerts_of(conn, second.run_key) if r[0] == "run_failed"]
        assert row[4] is not None and row[5] == []


def test_apprise_delivers_to_a_webhook_beside_the_mail(nights, mail_server, monkeypatch):
    from tests.mail import WebhookServer

    url, root, second, _ = nights
    with WebhookServer() as hook:
        monkeypatch.setenv("AIRFLOW_CONN_RECS_TEST_CHAT", hook.connection())
        chat = dataclasses.replace(second.config, alert_apprise_conn_id="recs_test_chat")
        raise_alert(url, Alert(second.run_key, "run_timed_out", "DAG run x: timed_out"))
        assert deliver(url, Channels.of(chat), second.run_key) == 1
    [posted] = hook.received
    assert posted["title"] == "[recommendations] night 2026-11-27 02:00: the night timed out"
    assert "Reason: DAG run x: timed_out" in posted["message"]
    assert mail_server.wait_for(lambda m: "the night timed out" in m.subject, timeout=10)
    with psycopg.connect(url) as conn:
        [row] = [r for r in alerts_of(conn, second.run_key) if r[0] == "run_timed_out"]
        assert row[5] == ["smtp:recs_test_smtp", "apprise:recs_test_chat"]
