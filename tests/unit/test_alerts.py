"""What an alert says, and which alerts are one message: the event classes, the cause that folds
several models failing the same way into one, and one message per night and event."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rec_models.alerts.events import EVENTS, Alert, compose
from rec_models.config import PipelineConfig
from rec_models.db.alerts import StoredAlert

NIGHT = "2026-11-27T02:00:00+00:00"


def _stored(alert: Alert, alert_id: int = 1, occurrences: int = 1) -> StoredAlert:
    return StoredAlert(alert_id, alert.run_key, alert.event, alert.cause(), alert.model, alert.subject(), alert.body(),
                       alert.link, occurrences, datetime.now(timezone.utc))


def test_models_failing_the_same_way_share_one_cause_and_other_failures_do_not():
    refused = "OperationalError: connection to server at 10.0.0.{} port 5432 failed: Connection refused"
    mf = Alert(NIGHT, "task_failed", refused.format(7), model="mf", task="train_mf")
    neumf = Alert(NIGHT, "task_failed", refused.format(9), model="neumf", task="train_neumf")
    assert mf.cause() == neumf.cause()
    other = Alert(NIGHT, "task_failed", "MemoryError: ", model="mf", task="train_mf")
    assert other.cause() != mf.cause()
    # Each model the gate rejects is listed, even with the same words.
    gate = [Alert(NIGHT, "gate_rejected", "worse", model=m) for m in ("mf", "neumf")]
    assert gate[0].cause() != gate[1].cause()


def test_subject_and_body_name_the_night_the_event_the_model_and_the_reason():
    alert = Alert(NIGHT, "gate_rejected", "holdout NDCG@10 0.1000 is worse than published run 3 (0.2000)",
                  model="mf", figures={"holdout NDCG@10": 0.1}, link="http://airflow/dags/d/runs/r")
    assert alert.subject() == "[recommendations] night 2026-11-27 02:00: the quality gate rejected a model (mf)"
    subject, body = compose([_stored(alert)])
    assert subject == alert.subject()
    for text in ("Night (data interval end): 2026-11-27T02:00:00+00:00", "Model: mf", "worse than published run 3",
                 "holdout NDCG@10: 0.1", "The run in Airflow: http://airflow/dags/d/runs/r"):
        assert text in body


def test_one_message_for_several_alerts_of_a_night_and_event():
    alerts = [Alert(NIGHT, "gate_rejected", f"{m} is worse", model=m) for m in ("neumf", "mf")]
    subject, body = compose([_stored(a, i, occurrences=2 if i == 1 else 1) for i, a in enumerate(alerts, 1)],
                            link="http://airflow/run")
    assert subject == "[recommendations] night 2026-11-27 02:00: the quality gate rejected a model (mf, neumf)"
    assert "neumf is worse" in body and "mf is worse" in body
    assert "Seen 2 times tonight" in body and body.count("The run in Airflow: http://airflow/run") == 2


def test_unknown_event_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown alert event 'boom': expected one of task_failed"):
        Alert(NIGHT, "boom", "x")
    assert set(EVENTS) >= {"task_failed", "run_failed", "run_timed_out", "gate_rejected", "night_skipped",
                           "retention_failed", "disk_low", "deadline_missed"}


def test_alert_settings_are_params():
    config = PipelineConfig.from_params({"alert_emails": "a@x.org, b@x.org", "alert_smtp_conn_id": "mail",
                                         "alert_apprise_conn_id": "chat", "disk_free_margin": "2"})
    from rec_models.alerts.delivery import Channels

    channels = Channels.of(config)
    assert channels == Channels(("a@x.org", "b@x.org"), "mail", "chat")
    assert channels.names() == ["smtp:mail", "apprise:chat"]
    assert Channels.of(PipelineConfig()).names() == []  # no addresses, no Apprise: recorded, not sent
    with pytest.raises(ValueError, match="disk_free_margin must be >= 1, got 0.5"):
        PipelineConfig.from_params({"disk_free_margin": 0.5})
