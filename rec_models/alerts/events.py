"""What operators are told: the event classes, one alert's text, and one message for several alerts
of the same night and event (so three models failing together make one message, not three)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rec_models.db.alerts import StoredAlert, record_alert
from rec_models.db.connect import connect
from rec_models.names import DOMAIN_RIDGE, FALLBACKS, FEATURE_POPULARITY, MODEL_NAMES, POPULARITY

EVENTS = {
    "task_failed": "a task failed after its retries",
    "run_failed": "the night failed",
    "run_timed_out": "the night timed out",
    "gate_rejected": "the quality gate rejected a model",
    "night_skipped": "training skipped (no views or a partial day)",
    "retention_failed": "a retention step failed",
    "disk_low": "not enough free disk for the night",
    "deadline_missed": "the night had not published by its deadline",
    "erasure_failed": "an erasure of personal data failed",
}
# A model's name, also inside a task id (train_mf, score_users_two_tower).
_MODELS = re.compile(r"(?<![a-z0-9])(" + "|".join(sorted((*MODEL_NAMES, FALLBACKS, POPULARITY, FEATURE_POPULARITY,
                                                           DOMAIN_RIDGE), key=len, reverse=True)) + r")(?![a-z0-9])")
# Run-specific numbers (ids, pids, byte counts) say nothing about the cause.
_NUMBERS = re.compile(r"\d+")


class AlertedError(RuntimeError):
    """A failure whose alert is recorded already: the task's failure callback adds no second one."""

    alerted = True


@dataclass(frozen=True)
class Alert:
    run_key: str  # the night: its data interval end (ISO), as rec.model_runs keys it
    event: str
    reason: str
    model: str | None = None
    task: str | None = None
    figures: dict = field(default_factory=dict)
    link: str | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown alert event {self.event!r}: expected one of {', '.join(EVENTS)}")

    def cause(self) -> str:
        """What makes two alerts one: the task and the reason with model names and numbers taken out;
        for the gate, the model (each rejected model is listed)."""
        if self.event == "gate_rejected":
            return self.model or ""
        text = " ".join(filter(None, (self.task, self.reason)))
        return _NUMBERS.sub("#", _MODELS.sub("<model>", text))[:500]

    def subject(self) -> str:
        return f"[recommendations] night {night_label(self.run_key)}: {EVENTS[self.event]}" + \
            (f" ({self.model})" if self.model else "")

    def body(self) -> str:
        lines = [f"Night (data interval end): {self.run_key}", f"Event: {EVENTS[self.event]}"]
        if self.model:
            lines.append(f"Model: {self.model}")
        if self.task:
            lines.append(f"Task: {self.task}")
        lines.append(f"Reason: {self.reason}")
        lines += [f"{name}: {value}" for name, value in self.figures.items()]
        return "\n".join(lines)


def night_label(run_key: str) -> str:
    return run_key[:16].replace("T", " ")


def raise_alert(database_url: str, alert: Alert) -> bool:
    """Record the alert (True when its cause is new tonight); delivery is the notifiers' job."""
    with connect(database_url) as conn:
        return record_alert(conn, run_key=alert.run_key, event=alert.event, cause=alert.cause(),
                            model_name=alert.model, subject=alert.subject(), body=alert.body(), link=alert.link)


def compose(alerts: Sequence[StoredAlert], link: str | None = None) -> tuple[str, str]:
    """One message (subject, plain-text body) for alerts of one night and one event; ``link``: the
    run's page for alerts recorded without one (by the pipeline, which does not know Airflow's URL)."""
    first = alerts[0]
    if len(alerts) == 1:
        subject = first.subject
        if first.occurrences > 1 and first.model_name:  # the same cause in other models too
            subject = subject.replace(f"({first.model_name})", f"({first.model_name} and others)")
    else:
        models = sorted({a.model_name for a in alerts if a.model_name})
        subject = f"[recommendations] night {night_label(first.run_key)}: {EVENTS[first.event]}" + \
            (f" ({', '.join(models)})" if models else f" ({len(alerts)} causes)")
    parts = []
    for alert in alerts:
        text = alert.body
        if alert.occurrences > 1:
            text += f"\nSeen {alert.occurrences} times tonight (the same cause in other tasks or models)."
        if alert.link or link:
            text += f"\nThe run in Airflow: {alert.link or link}"
        parts.append(text)
    return subject, "\n\n".join(parts)

