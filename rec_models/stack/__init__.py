"""The local stack: what starts, supervises and stops an Airflow, Celery, Redis and S3 server on this
machine for `make airflow`, `make demo`, the DAG-tier tests and the benchmarks. The pipeline runs
under any Airflow and imports nothing from here."""
