"""The embedded PostgreSQL (pgserver) used when DATABASE_URL is not set: a real server, started on demand."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from urllib.parse import quote

from rec_models.config import PROJECT_ROOT

log = logging.getLogger(__name__)


def default_pgdata() -> Path:
    """One data dir per checkout, outside /root (pgserver chowns it to its own system user)."""
    if os.environ.get("RECS_PGDATA"):
        return Path(os.environ["RECS_PGDATA"])
    key = hashlib.sha1(str(PROJECT_ROOT).encode()).hexdigest()[:10]
    return Path("/tmp") / f"recs-pg-{key}"


def _pgserver():
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (root, no login session): harmless here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver  # imported lazily: only needed without DATABASE_URL
    # pgserver logs every command at INFO, and from an atexit hook after logging has shut down.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver


def ensure_embedded_server(pgdata: Path | None = None) -> Path:
    """Start (or reattach to) the embedded server and return its socket directory.

    The server is left running after this process exits so that Airflow's processes and later
    commands share it; ``stop_embedded_server`` stops it.
    """
    pgdata = pgdata or default_pgdata()
    server = _pgserver().get_server(pgdata, cleanup_mode=None)
    log.debug("embedded PostgreSQL running in %s", pgdata)
    return Path(server.pgdata)


def stop_embedded_server(pgdata: Path | None = None) -> bool:
    """Stop the embedded server if it runs; returns whether one was stopped."""
    pgdata = pgdata or default_pgdata()
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _pgserver().get_server(pgdata, cleanup_mode=None)
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
    return True


def socket_url(socket_dir: Path, database: str, driver: str = "postgresql") -> str:
    """A URL whose host part is the URL-encoded socket directory (what Airflow's Connection parses)."""
    return f"{driver}://postgres@{quote(str(socket_dir), safe='')}/{database}"


def restart_embedded_server(pgdata: Path | None = None) -> None:
    """Restart the running embedded server (fast shutdown: open connections are cut), as a crash would."""
    server = _pgserver().get_server(pgdata or default_pgdata(), cleanup_mode=None)
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)
