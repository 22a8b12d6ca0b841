"""Bulk I/O against PostgreSQL, the project's paths next to the usual alternatives, one run.

    python -m bench.io [--rows 5000000] [--swap-rows 20000000]      (make bench-io)

Read: the extract's binary COPY decoded by numpy vs ADBC -> Arrow, psycopg2 copy_expert + pyarrow
CSV, psycopg 3 COPY rows, pandas.read_sql. Write: the publish load (numpy-encoded binary COPY into
staging, then the key) vs raw psycopg 3 binary write_row. Swap: attaching a staged run of
``--swap-rows`` rows and pointing the serving row at it, under readers. Run files: one artifact of
``--artifact-mb`` written and read back through the run folder's store, a local folder and an S3
server (SeaweedFS on 127.0.0.1, started here; reads from an empty local cache).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from rec_models.db.bulk import copy_in_chunks, copy_out_columns
from rec_models.db.connect import scratch_database
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import USER_RECOMMENDATIONS
from rec_models.db.publish import point_serving, stage_output, swap_in
from rec_models.stack.seaweedfs import SeaweedS3
from rec_models.storage import LocalStore, ObjectStore, open_store

QUERY = "SELECT user_id, video_id, extract(epoch FROM viewed_at)::int8 AS ts, watch_seconds FROM video_views"


def _fill_views(url: str, rows: int) -> None:
    rng = np.random.default_rng(0)
    with psycopg.connect(url) as conn:
        chunks = ((rng.integers(1, 1_000_000, n), rng.integers(1, 100_000, n),
                   rng.integers(7 * 10**14, 8 * 10**14, n), rng.integers(1, 3600, n).astype(np.int32))
                  for n in [min(1_000_000, rows - s) for s in range(0, rows, 1_000_000)])
        copy_in_chunks(conn, sql.Identifier("video_views"), ["user_id", "video_id", "viewed_at", "watch_seconds"],
                       ["int8", "int8", "timestamptz", "int4"], chunks)
        conn.commit()
        conn.execute("ANALYZE video_views")
        conn.commit()


def _time(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def read_ours(url):
    with psycopg.connect(url) as conn:
        return len(copy_out_columns(conn, QUERY, None, ["int8", "int8", "int8", "int4"])[0])


def read_adbc(url):
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(url) as conn, conn.cursor() as cur:
        cur.execute(QUERY)
        return cur.fetch_arrow_table().num_rows


def read_psycopg2_csv(url):
    import psycopg2
    import pyarrow.csv as pacsv

    conn = psycopg2.connect(url)
    try:
        buffer = io.BytesIO()
        conn.cursor().copy_expert(f"COPY ({QUERY}) TO STDOUT (FORMAT csv)", buffer)
        buffer.seek(0)
        return pacsv.read_csv(buffer, read_options=pacsv.ReadOptions(column_names=["u", "v", "t", "w"])).num_rows
    finally:
        conn.close()


def read_psycopg3_rows(url):
    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(f"COPY ({QUERY}) TO STDOUT") as copy:
        return sum(1 for _ in copy.rows())


def read_pandas(url):
    import pandas as pd

    with psycopg.connect(url) as conn:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas prefers SQLAlchemy; a DBAPI connection works
            return len(pd.read_sql(QUERY, conn))


def write_raw(url, rows: int) -> float:
    """psycopg 3 binary COPY with write_row into a table like the outputs (no key): the raw path."""
    rng = np.random.default_rng(1)
    data = list(zip(rng.integers(1, 10**6, rows).tolist(), np.ones(rows, int).tolist(),
                    rng.integers(1, 10**5, rows).tolist(), rng.random(rows).astype(np.float32).tolist()))
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE raw_target (LIKE rec.user_recommendations)")
        started = time.perf_counter()
        with conn.cursor().copy("COPY raw_target (model_run_id, user_id, rank, video_id, score, segment) "
                                "FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int8", "int8", "int2", "int8", "float4", "text"])
            for row in data:
                copy.write_row((1, *row, "hot"))
        conn.commit()
        return time.perf_counter() - started


def write_ours_copy_only(url, rows: int) -> float:
    """The publish load's COPY phase alone (numpy-encoded binary chunks), into the same kind of table."""
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE ours_target (LIKE rec.user_recommendations)")
        started = time.perf_counter()
        copy_in_chunks(conn, sql.Identifier("ours_target"), USER_RECOMMENDATIONS.columns,
                       USER_RECOMMENDATIONS.pg_types, _user_rows(rows, 1))
        conn.commit()
        return time.perf_counter() - started


def _user_rows(rows: int, run_id: int):
    users = np.repeat(np.arange(1, rows // 20 + 1, dtype=np.int64), 20)[:rows]
    rank = np.tile(np.arange(1, 21, dtype=np.int16), rows // 20 + 1)[:rows]
    video = np.random.default_rng(2).integers(1, 10**5, rows)
    score = np.linspace(1, 0, rows, dtype=np.float32)
    # one chunk per million rows, as the scoring files are
    for s in range(0, rows, 1_000_000):
        yield [np.full(min(1_000_000, rows - s), run_id, np.int64), users[s:s + 1_000_000], rank[s:s + 1_000_000],
               video[s:s + 1_000_000], np.sort(score[s:s + 1_000_000])[::-1].copy(), "hot"]


def _model_run(conn, key: str) -> int:
    run_id = conn.execute("INSERT INTO rec.model_runs (run_key, model_name, data_interval_end) VALUES (%s, 'bench', now()) "
                          "RETURNING model_run_id", (key,)).fetchone()[0]
    conn.commit()
    return run_id


def run_file_rates(megabytes: int) -> dict[str, tuple[float, float]]:
    """MB/s writing (commit included) and reading (from an empty cache) one artifact through each store."""
    payload = np.random.default_rng(0).integers(0, 2**62, megabytes * 2**20 // 8)
    rates = {}
    with tempfile.TemporaryDirectory() as tmp, SeaweedS3(Path(tmp) / "seaweedfs") as s3:
        os.environ["RECS_RUN_CACHE"] = str(Path(tmp) / "cache")
        for name, store in (("local folder", LocalStore(Path(tmp) / "runs")),
                            ("s3 (SeaweedFS)", open_store(s3.url, s3.storage_options))):
            started = time.perf_counter()
            with store.staged("night/dataset") as folder:
                np.save(folder / "arrays.npy", payload)
            write_s = time.perf_counter() - started
            if isinstance(store, ObjectStore):
                shutil.rmtree(store.cache, ignore_errors=True)
            started = time.perf_counter()
            assert np.array_equal(np.load(store.fetch("night/dataset") / "arrays.npy"), payload)
            rates[name] = (megabytes / write_s, megabytes / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--swap-rows", type=int, default=20_000_000)
    parser.add_argument("--artifact-mb", type=int, default=512)
    args = parser.parse_args()
    with scratch_database("bench_io") as url:
        apply_migrations(url)
        fill_s, _ = _time(lambda: _fill_views(url, args.rows))
        print(f"read {args.rows:,} rows of (bigint, bigint, bigint, int) — filled in {fill_s:.1f} s")
        reads = {}
        for name, fn in (("ours: binary COPY -> numpy", read_ours), ("ADBC -> Arrow", read_adbc),
                         ("psycopg2 copy_expert + pyarrow CSV", read_psycopg2_csv),
                         ("psycopg 3 COPY rows", read_psycopg3_rows), ("pandas.read_sql", read_pandas)):
            try:
                seconds, n = _time(lambda: fn(url))
                assert n == args.rows, (name, n)
                reads[name] = args.rows / seconds
                print(f"  {name:<38} {seconds:7.2f} s {reads[name]:>12,.0f} rows/s")
            except ImportError as exc:
                print(f"  {name:<38} not installed ({exc})")
        best = max(reads, key=reads.get)
        ours = reads["ours: binary COPY -> numpy"]
        print(f"  extract reaches {100 * ours / reads[best]:.0f}% of the fastest ({best})")

        print(f"write {args.rows:,} user recommendation rows")
        raw_s = write_raw(url, args.rows)
        print(f"  {'raw psycopg 3 binary write_row':<38} {raw_s:7.2f} s {args.rows / raw_s:>12,.0f} rows/s")
        copy_s = write_ours_copy_only(url, args.rows)
        print(f"  {'ours: numpy-encoded binary COPY':<38} {copy_s:7.2f} s {args.rows / copy_s:>12,.0f} rows/s "
              f"({100 * raw_s / copy_s:.0f}% of raw binary COPY throughput)")
        with psycopg.connect(url) as conn:
            run_id = _model_run(conn, "bench-load")
            load_s, _ = _time(lambda: stage_output(conn, USER_RECOMMENDATIONS, run_id, _user_rows(args.rows, run_id)))
        print(f"  {'ours: whole staging (COPY, key, ANALYZE)':<38} {load_s:7.2f} s {args.rows / load_s:>12,.0f} rows/s")

        with psycopg.connect(url) as conn:
            run_id = _model_run(conn, "bench-swap")
            stage_s, _ = _time(lambda: stage_output(conn, USER_RECOMMENDATIONS, run_id, _user_rows(args.swap_rows, run_id)))
            swap_s = swap_in(conn, run_id, [USER_RECOMMENDATIONS])
            serve_s, _ = _time(lambda: point_serving(conn, run_id, [USER_RECOMMENDATIONS]))
            visible = conn.execute("SELECT count(*) FROM rec.user_recommendations_current").fetchone()[0]
        print(f"swap {args.swap_rows:,} rows: staged in {stage_s:.1f} s; attach {swap_s:.3f} s + serving switch "
              f"{serve_s:.3f} s; {visible:,} rows visible through the view")
    print(f"run files: one {args.artifact_mb} MB artifact written (committed) and read back (empty cache)")
    files = run_file_rates(args.artifact_mb)
    for name, (write, read) in files.items():
        print(f"  {name:<38} write {write:7.0f} MB/s  read {read:7.0f} MB/s")
    print(f"io: extract {ours:,.0f} rows/s ({100 * ours / reads[best]:.0f}% of {best}), "
          f"load {args.rows / copy_s:,.0f} rows/s ({100 * raw_s / copy_s:.0f}% of raw binary COPY), "
          f"swap {swap_s + serve_s:.3f} s for {args.swap_rows:,} rows, run files write/read "
          + ", ".join(f"{name.split()[0]} {w:.0f}/{r:.0f} MB/s" for name, (w, r) in files.items()))


if __name__ == "__main__":
    main()
