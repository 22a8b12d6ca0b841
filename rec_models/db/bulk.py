"""Bulk I/O with PostgreSQL's binary COPY, encoded and decoded by numpy (no per-row Python).

Fixed-width, non-null columns make every binary COPY tuple the same size, so a whole chunk of rows
is one structured numpy array: decoding a read is a ``frombuffer`` and encoding a write is a fill.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import psycopg
from psycopg import sql

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
# PostgreSQL binary type per numpy dtype (big-endian on the wire).
# timestamptz travels as microseconds and date as days, both counted from 2000-01-01.
_PG_WIDTH = {
    "int8": ">i8", "int4": ">i4", "int2": ">i2", "float8": ">f8", "float4": ">f4",
    "bool": ">u1", "timestamptz": ">i8", "date": ">i4",
}
_PG_EPOCH_S = 946_684_800  # 2000-01-01 in Unix seconds
_NUMPY_FOR_PG = {
    "int8": np.int64, "int4": np.int32, "int2": np.int16, "float8": np.float64, "float4": np.float32,
    "bool": np.bool_, "timestamptz": np.int64, "date": np.int32,
}


# Which driver reads binary COPY streams, chosen here once: psycopg2 (twice as fast) where it is
# installed (the Airflow Postgres provider brings it), else psycopg 3. See COPY_READERS.
COPY_READER = "psycopg2" if importlib.util.find_spec("psycopg2") else "psycopg"


def pg_timestamp(epoch_seconds: np.ndarray) -> np.ndarray:
    """Unix seconds to the binary timestamptz value."""
    return (np.asarray(epoch_seconds, dtype=np.int64) - _PG_EPOCH_S) * 1_000_000


def pg_date(epoch_days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 to the binary date value."""
    return np.asarray(epoch_days, dtype=np.int64).astype(np.int32) - _PG_EPOCH_S // 86400


def _row_dtype(pg_types: Sequence[str], text_widths: dict[int, int] | None = None) -> np.dtype:
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for i, pg_type in enumerate(pg_types):
        fields.append((f"len{i}", ">i4"))
        if pg_type == "text":
            fields.append((f"col{i}", f"S{(text_widths or {})[i]}"))
        else:
            fields.append((f"col{i}", _PG_WIDTH[pg_type]))
    return np.dtype(fields)


def copy_out_columns(
    conn: psycopg.Connection, query: sql.Composable | str, params: dict | None, pg_types: Sequence[str],
    *, reader: str | None = None,
) -> list[np.ndarray]:
    """Run ``COPY (query) TO STDOUT (FORMAT binary)`` and return one numpy array per column.

    Every column must be a fixed-width numeric of the given type and never NULL (COALESCE in SQL).
    ``reader``: which driver reads the COPY stream (a key of :data:`COPY_READERS`; default
    :data:`COPY_READER`); every reader gives the same bytes.
    """
    reader = reader or COPY_READER
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(
        sql.SQL(query) if isinstance(query, str) else query
    )
    if reader not in COPY_READERS:
        raise ValueError(f"unknown COPY reader {reader!r}; known: {', '.join(COPY_READERS)}")
    payload = COPY_READERS[reader](conn, statement, params)
    if bytes(payload[:11]) != _SIGNATURE[:11]:
        raise ValueError("unexpected binary COPY header")
    ext_len = int.from_bytes(payload[15:19], "big")
    body = memoryview(payload)[19 + ext_len : len(payload) - 2]  # strip header and the -1 trailer
    dtype = _row_dtype(pg_types)
    if len(body) % dtype.itemsize:
        raise ValueError("binary COPY rows are not fixed width: a column is NULL or of another type")
    rows = np.frombuffer(body, dtype=dtype)
    if len(rows) and (rows["nfields"] != len(pg_types)).any():
        raise ValueError("binary COPY returned an unexpected number of columns")
    return [rows[f"col{i}"].astype(_NUMPY_FOR_PG[t]) for i, t in enumerate(pg_types)]


def _read_with_psycopg(conn: psycopg.Connection, statement: sql.Composed, params: dict | None) -> bytearray:
    """The COPY stream through ``conn`` itself (psycopg 3 hands it over one row per Python iteration)."""
    payload = bytearray()
    with conn.cursor() as cur, cur.copy(statement, params) as copy:
        for data in copy:
            payload += data
    return payload


def _read_with_psycopg2(conn: psycopg.Connection, statement: sql.Composed, params: dict | None) -> memoryview:
    """The COPY stream through a second connection opened with psycopg2, whose copy_expert loops in C
    (about twice psycopg 3's rate), reading the same snapshot as ``conn``'s open transaction
    (pg_export_snapshot). Its connection parameters are ``conn``'s, passed as keywords."""
    import psycopg2

    text = psycopg.ClientCursor(conn).mogrify(statement, params)
    snapshot = None
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    parameters = psycopg.conninfo.conninfo_to_dict(conn.info.dsn)
    if conn.info.password:
        parameters["password"] = conn.info.password  # info.dsn leaves the password out
    other = psycopg2.connect(**parameters)
    try:
        cur = other.cursor()
        if snapshot is not None:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
        buffer = io.BytesIO()
        cur.copy_expert(text, buffer)
        other.rollback()
        return buffer.getbuffer()
    finally:
        other.close()


COPY_READERS: dict[str, Callable[[psycopg.Connection, sql.Composed, dict | None], bytes | bytearray | memoryview]] = {
    "psycopg2": _read_with_psycopg2, "psycopg": _read_with_psycopg}


def encode_rows(columns: Sequence[np.ndarray | str], pg_types: Sequence[str]) -> bytes:
    """Binary COPY tuples (no header) for equal-length columns; a str column is a constant for all rows."""
    n = next(len(c) for c in columns if not isinstance(c, str))
    widths = {i: len(c.encode()) for i, c in enumerate(columns) if isinstance(c, str)}
    rows = np.empty(n, dtype=_row_dtype(pg_types, widths))
    rows["nfields"] = len(pg_types)
    for i, (column, pg_type) in enumerate(zip(columns, pg_types)):
        if pg_type == "text":
            rows[f"len{i}"] = widths[i]
            rows[f"col{i}"] = column.encode()
        else:
            rows[f"len{i}"] = np.dtype(_PG_WIDTH[pg_type]).itemsize
            values = np.asarray(column)
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise ValueError(f"column {i} holds NaN or infinity")
            rows[f"col{i}"] = values
    return rows.tobytes()


def copy_in_chunks(
    conn: psycopg.Connection,
    table: sql.Composable,
    column_names: Sequence[str],
    pg_types: Sequence[str],
    chunks: Iterable[Sequence[np.ndarray | str]],
) -> int:
    """Stream chunks of columns into ``table`` with one binary COPY; returns the rows written."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, column_names))
    )
    written = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(_SIGNATURE)
        for columns in chunks:
            payload = encode_rows(columns, pg_types)
            if payload:
                copy.write(payload)
                written += next(len(c) for c in columns if not isinstance(c, str))
        copy.write(b"\xff\xff")
    return written
