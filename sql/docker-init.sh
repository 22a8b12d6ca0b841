#!/bin/bash
# First start of the compose PostgreSQL: one database and role for Airflow's metadata, one for the recs data.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE airflow LOGIN PASSWORD '${AIRFLOW_DB_PASSWORD}';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE recs LOGIN PASSWORD '${RECS_DB_PASSWORD}';
CREATE DATABASE recs OWNER recs;
SQL
