"""The database's side of a night's disk: what a publish is expected to add, the free space of the
server's data directory where this machine can see it, and each night's expected and actual bytes
(rec.night_checks). Plain values in, plain values out."""

from __future__ import annotations

import ipaddress
import shutil

import psycopg
from psycopg import sql

from rec_models.db.outputs import OUTPUT_TABLES
from rec_models.db.publish import partition_name


def database_bytes(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def database_free_bytes(conn: psycopg.Connection) -> int | None:
    """Free bytes on the disk of the server's data directory, when the server runs on this machine and
    tells its data directory (a superuser or pg_read_all_settings); None when that cannot be seen."""
    row = conn.execute("SELECT inet_server_addr()::text, "
                       "(SELECT setting FROM pg_settings WHERE name = 'data_directory')").fetchone()
    address, directory = row
    local = address is None or ipaddress.ip_interface(address).ip.is_loopback  # NULL: a Unix socket
    if not local or not directory:
        return None
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def published_run_bytes(conn: psycopg.Connection, model_run_id: int) -> int:
    """Bytes (with indexes and TOAST) of one run's published partitions."""
    total = 0
    for output in OUTPUT_TABLES:
        name = partition_name(output, model_run_id).as_string(conn)
        total += conn.execute("SELECT coalesce(pg_total_relation_size(to_regclass(%s)), 0)", (name,)).fetchone()[0]
    return int(total)


def expected_publish_bytes(conn: psycopg.Connection, models_to_publish: int) -> int | None:
    """What tonight's publishes are expected to add before older partitions are pruned: the largest of
    each model's newest published run, times the models the night may publish; None when nothing has
    been published yet."""
    latest = [r[0] for r in conn.execute(
        "SELECT DISTINCT ON (model_name) model_run_id FROM rec.model_runs WHERE published_at IS NOT NULL "
        "AND coalesce(status_reason, '') NOT LIKE 'pruned%%' ORDER BY model_name, data_interval_end DESC")]
    sizes = [published_run_bytes(conn, run_id) for run_id in latest]
    return max(sizes) * models_to_publish if sizes else None


def record_disk_check(conn: psycopg.Connection, run_key: str, *, expected_run_folder: int | None,
                      run_root_free: int | None, expected_database: int | None, database_free: int | None,
                      database_before: int) -> None:
    """The pre-flight figures of a night whose data check is recorded (record_night_check first)."""
    conn.execute(
        "UPDATE rec.night_checks SET expected_run_folder_bytes = %s, run_root_free_bytes = %s, "
        "expected_database_bytes = %s, database_free_bytes = %s, database_bytes_before = %s WHERE run_key = %s",
        (expected_run_folder, run_root_free, expected_database, database_free, database_before, run_key))
    conn.commit()


def record_night_bytes(conn: psycopg.Connection, run_key: str, *, run_folder: int, database: int) -> None:
    """What the night's run folder and the database hold at its end."""
    conn.execute("UPDATE rec.night_checks SET run_folder_bytes = %s, database_bytes = %s WHERE run_key = %s",
                 (run_folder, database, run_key))
    conn.commit()


def night_disk(conn: psycopg.Connection, nights: int = 14) -> list[dict]:
    """The newest nights' expected and actual bytes, newest first (the health page)."""
    rows = conn.execute(sql.SQL(
        "SELECT data_interval_end, trained, expected_run_folder_bytes, run_folder_bytes, run_root_free_bytes, "
        "expected_database_bytes, database_bytes_before, database_bytes, database_free_bytes "
        "FROM rec.night_checks ORDER BY data_interval_end DESC LIMIT {}").format(sql.Literal(int(nights)))).fetchall()
    keys = ("end", "trained", "expected_run_folder", "run_folder", "run_root_free", "expected_database",
            "database_before", "database", "database_free")
    return [dict(zip(keys, row)) for row in rows]

