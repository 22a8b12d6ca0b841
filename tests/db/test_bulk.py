"""Binary COPY out: every reader (psycopg2's C loop, psycopg 3's) returns the same columns, in the
snapshot of the connection's open transaction, and the password is passed, never pasted into a DSN."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from rec_models.db.bulk import COPY_READER, COPY_READERS, copy_out_columns

QUERY = "SELECT g::int8, (g * 2)::int4, g::float8 / 3 FROM generate_series(1, 5000) g WHERE g > %(low)s"


@pytest.mark.parametrize("reader", sorted(COPY_READERS))
def test_every_reader_returns_the_same_columns(fresh_db, reader):
    with psycopg.connect(fresh_db) as conn:
        columns = copy_out_columns(conn, QUERY, {"low": 10}, ["int8", "int4", "float8"], reader=reader)
    np.testing.assert_array_equal(columns[0], np.arange(11, 5001))
    np.testing.assert_array_equal(columns[1], np.arange(11, 5001) * 2)
    np.testing.assert_allclose(columns[2], np.arange(11, 5001) / 3)


@pytest.mark.parametrize("reader", sorted(COPY_READERS))
def test_a_reader_sees_the_snapshot_of_the_open_transaction(fresh_db, reader):
    with psycopg.connect(fresh_db) as setup:
        setup.execute("CREATE TABLE t (x int8)")
        setup.execute("INSERT INTO t SELECT generate_series(1, 10)")
        setup.commit()
    with psycopg.connect(fresh_db) as conn, psycopg.connect(fresh_db, autocommit=True) as writer:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT count(*) FROM t").fetchone()  # the snapshot is taken here
        writer.execute("INSERT INTO t SELECT generate_series(11, 20)")
        (column,) = copy_out_columns(conn, "SELECT x FROM t", None, ["int8"], reader=reader)
        assert sorted(column.tolist()) == list(range(1, 11))


def test_an_unknown_reader_is_refused_by_name(fresh_db):
    assert COPY_READER in COPY_READERS
    with psycopg.connect(fresh_db) as conn, pytest.raises(ValueError, match="unknown COPY reader 'odbc'"):
        copy_out_columns(conn, "SELECT 1::int8", None, ["int8"], reader="odbc")
