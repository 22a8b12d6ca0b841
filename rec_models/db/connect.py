"""Which database to use and how to open a connection to it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql

DEFAULT_DATABASE = "recs"


def resolve_database_url(database: str | None = None) -> str:
    """``DATABASE_URL`` when set; otherwise the embedded development server's database (started and
    created if missing). Production sets DATABASE_URL or an Airflow Connection and never loads pgserver."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from rec_models.db.embedded import ensure_embedded_server, socket_url

    socket_dir = ensure_embedded_server()
    name = database or os.environ.get("RECS_DATABASE", DEFAULT_DATABASE)
    ensure_database(socket_url(socket_dir, "postgres"), name)
    return socket_url(socket_dir, name)


def ensure_database(admin_url: str, name: str) -> None:
    """Create database ``name`` if it does not exist (CREATE DATABASE cannot run in a transaction)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def connect(database_url: str, **kwargs) -> psycopg.Connection:
    """A psycopg 3 connection with an application name operators can find in pg_stat_activity."""
    kwargs.setdefault("application_name", "rec_models")
    return psycopg.connect(database_url, **kwargs)


@contextlib.contextmanager
def scratch_database(prefix: str = "recs_scratch") -> Iterator[str]:
    """A new empty database on the server (embedded or DATABASE_URL's), dropped afterwards."""
    server = resolve_database_url("postgres") if not os.environ.get("DATABASE_URL") else \
        with_database(os.environ["DATABASE_URL"], "postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = database
    return psycopg.conninfo.make_conninfo(**info)


def from_airflow_connection(connection) -> str:
    """A libpq conninfo from an Airflow Connection (host may be a socket directory)."""
    return psycopg.conninfo.make_conninfo(
        host=connection.host or "", port=str(connection.port or ""), user=connection.login or "",
        password=connection.password or "", dbname=connection.schema or "",
    )
