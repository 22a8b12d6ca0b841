"""The write-audit-publish audit: staged lists that keep every output contract pass; each broken rule
is named, and nothing is published."""

import numpy as np
import psycopg
import pytest

from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import POPULAR_VIDEOS, SIMILAR_VIDEOS, USER_RECOMMENDATIONS
from rec_models.db.publish import AuditError, audit_output, stage_output

RUN = 7


@pytest.fixture(scope="module")
def conn(database_factory):
    url = database_factory()
    apply_migrations(url)
    with psycopg.connect(url) as connection:
        yield connection


def user_lists(users: int = 4, n: int = 3) -> list:
    """``users`` lists of ``n`` videos each, ranked by falling score."""
    user = np.repeat(np.arange(1, users + 1, dtype=np.int64), n)
    rank = np.tile(np.arange(1, n + 1, dtype=np.int16), users)
    video = (user * 10 + rank).astype(np.int64)
    score = np.tile(np.linspace(1.0, 0.1, n, dtype=np.float32), users)
    return [np.full(len(user), RUN, dtype=np.int64), user, rank, video, score, "hot"]


def audited(conn, output, chunk, expected_groups=None) -> dict:
    stage_output(conn, output, RUN, [chunk])
    return audit_output(conn, output, RUN, expected_groups=expected_groups)


def test_lists_that_keep_the_contract_pass(conn):
    violations = audited(conn, USER_RECOMMENDATIONS, user_lists(), expected_groups=4)
    assert set(violations) == {"non-finite score", "scores increase with rank", "wrong model run",
                               "ranks not contiguous from 1", "item repeated in a list"}
    assert not any(violations.values())
    similar = [np.full(2, RUN, dtype=np.int64), np.array([1, 1]), np.array([1, 2], dtype=np.int16),
               np.array([2, 3]), np.array([0.9, 0.5], dtype=np.float32)]
    assert not any(audited(conn, SIMILAR_VIDEOS, similar, expected_groups=1).values())
    popular = [np.full(2, RUN, dtype=np.int64), np.array([1, 2], dtype=np.int16), np.array([5, 6]),
               np.array([3.0, 2.0], dtype=np.float32)]
    assert not any(audited(conn, POPULAR_VIDEOS, popular).values())


def _broken(column: int, position: int, value) -> list:
    chunk = user_lists()
    chunk[column] = chunk[column].copy()
    chunk[column][position] = value
    return chunk


# The COPY encoder refuses NaN and infinity itself: those rows are written into staging by SQL.
@pytest.mark.parametrize("change, rule", [
    ("score = 'NaN' WHERE user_id = 2 AND rank = 3", "non-finite score"),
    ("score = 'Infinity' WHERE user_id = 1 AND rank = 3", "non-finite score"),
    ("score = 2 WHERE user_id = 2 AND rank = 2", "scores increase with rank"),
    ("rank = 4 WHERE user_id = 1 AND rank = 3", "ranks not contiguous from 1"),
    ("video_id = 11 WHERE user_id = 1 AND rank = 2", "item repeated in a list"),
])
def test_each_broken_rule_is_named(conn, change, rule):
    stage_output(conn, USER_RECOMMENDATIONS, RUN, [user_lists()])
    conn.execute(f"UPDATE rec.user_recommendations_stage_{RUN} SET {change}")
    conn.commit()
    with pytest.raises(AuditError, match=rule) as raised:
        audit_output(conn, USER_RECOMMENDATIONS, RUN, expected_groups=4)
    assert f"'{rule}': 1" in str(raised.value)


def test_a_row_of_another_run_is_refused_at_staging(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        stage_output(conn, USER_RECOMMENDATIONS, RUN, [_broken(0, 0, RUN + 1)])
    conn.rollback()


def test_missing_lists_and_a_video_that_is_its_own_neighbour_are_named(conn):
    with pytest.raises(AuditError, match="user_id count 4 != expected 5"):
        audited(conn, USER_RECOMMENDATIONS, user_lists(), expected_groups=5)
    own = [np.full(2, RUN, dtype=np.int64), np.array([1, 1]), np.array([1, 2], dtype=np.int16),
           np.array([1, 3]), np.array([0.9, 0.5], dtype=np.float32)]
    with pytest.raises(AuditError, match="video is its own neighbour"):
        audited(conn, SIMILAR_VIDEOS, own)


def test_a_staged_table_is_left_to_the_swap_until_it_is_published(conn):
    """Autovacuum never starts on staged rows (its lock would hold the swap up for as long as it runs);
    the published partition is vacuumed as any table."""
    from rec_models.db.publish import partition_name, staging_name, swap_in

    run = RUN + 50
    lists = user_lists()
    lists[0] = np.full(len(lists[1]), run, dtype=np.int64)
    stage_output(conn, USER_RECOMMENDATIONS, run, [lists])

    def options(table) -> list | None:
        return conn.execute("SELECT reloptions FROM pg_class WHERE oid = %s::regclass",
                            (table.as_string(conn),)).fetchone()[0]

    assert options(staging_name(USER_RECOMMENDATIONS, run)) == ["autovacuum_enabled=false"]
    swap_in(conn, run, [USER_RECOMMENDATIONS])
    assert options(partition_name(USER_RECOMMENDATIONS, run)) is None
    assert conn.execute("SELECT count(*) FROM rec.user_recommendations WHERE model_run_id = %s",
                        (run,)).fetchone()[0] == len(lists[1])
