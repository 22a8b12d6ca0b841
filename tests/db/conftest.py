"""What the database tier's tests share: a database seeded with the small world, and a run's rows."""

from __future__ import annotations

import psycopg
import pytest

from rec_models.data.seed import seed_world
from rec_models.db.migrate import apply_migrations


@pytest.fixture
def seeded(database_factory, small_world):
    """A fresh database, migrated and seeded with the small world."""
    url = database_factory()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, small_world)
    return url


def user_rows(url: str, model_run_id: int) -> list[tuple]:
    """A run's user lists, in a stable order."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT user_id, rank, video_id, score, segment FROM rec.user_recommendations "
                            "WHERE model_run_id = %s ORDER BY user_id, rank", (model_run_id,)).fetchall()
