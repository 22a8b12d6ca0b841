"""PostgreSQL access: connection resolution, migrations, bulk COPY I/O and the atomic publish."""

from rec_models.db.connect import connect, resolve_database_url

__all__ = ["connect", "resolve_database_url"]
