"""The deadline alert's callback, by its import path: Airflow imports this module where it parses the
DAG, so it holds nothing heavy (the delivery and its database client load when a deadline is missed)."""

from __future__ import annotations

from typing import Any


async def on_deadline_missed(context: dict, **kwargs: Any) -> None:
    """Run by the triggerer when the night has not published by its deadline."""
    from rec_models.alerts.delivery import deadline_missed

    await deadline_missed(context, **kwargs)
