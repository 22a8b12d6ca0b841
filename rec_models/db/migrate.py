"""Ordered SQL migrations (sql/migrations/NNN_name.sql), each applied once and recorded."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from rec_models.config import PROJECT_ROOT
from rec_models.db.connect import connect

log = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "sql" / "migrations"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

# Serialises concurrent migrators (two Airflow tasks, a CLI and a test) on one database.
_ADVISORY_LOCK_KEY = 727_001


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    files = sorted(p for p in directory.glob("*.sql"))
    bad = [p.name for p in files if not _NAME.match(p.name)]
    if bad:
        raise ValueError(f"migration files must be named NNN_snake_case.sql: {', '.join(bad)}")
    versions = [p.name[:3] for p in files]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {directory}")
    return files


def apply_migrations(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; returns the applied names."""
    applied_now: list[str] = []
    with connect(database_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        try:
            # Only when missing: the pipeline's own role may not create tables in public (least privilege).
            if conn.execute("SELECT to_regclass('public.rec_schema_migrations')").fetchone()[0] is None:
                conn.execute(
                    "CREATE TABLE public.rec_schema_migrations ("
                    " version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            conn.commit()
            done = {row[0] for row in conn.execute("SELECT version FROM public.rec_schema_migrations")}
            for path in migration_files(directory):
                version = path.name[:3]
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "INSERT INTO public.rec_schema_migrations (version, name) VALUES (%s, %s)",
                        (version, path.name),
                    )
                log.info("applied migration %s", path.name)
                applied_now.append(path.name)
            conn.commit()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
            conn.commit()
    return applied_now
