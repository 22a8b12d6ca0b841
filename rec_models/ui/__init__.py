"""The Recommendations view: server-rendered pages over the output tables (an Airflow UI plugin)."""
