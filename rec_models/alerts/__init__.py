"""Alerts: a night's events recorded in rec.alerts (``events``, usable without Airflow) and delivered
through Airflow's notifiers, SMTP and Apprise (``delivery``, imported where Airflow runs)."""
