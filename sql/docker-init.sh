#!/bin/bash
# First start of the compose PostgreSQL: one database and role for Airflow's metadata, one for the recs data,
# and the read-only login of the Recommendations view.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE airflow LOGIN PASSWORD '${AIRFLOW_DB_PASSWORD}';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE recs LOGIN PASSWORD '${RECS_DB_PASSWORD}';
CREATE DATABASE recs OWNER recs;
-- The Recommendations view's login: only what role rec_ui may read (granted by migration 005).
CREATE ROLE rec_ui NOLOGIN;
CREATE ROLE recs_ui LOGIN PASSWORD '${RECS_UI_DB_PASSWORD}' IN ROLE rec_ui;
SQL
