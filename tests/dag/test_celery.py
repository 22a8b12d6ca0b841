"""The nightly DAG under the CeleryExecutor: Airflow's scheduler hands every task to two Celery workers
over a Redis broker (Debian's redis-server), the run folder on an S3 server (SeaweedFS) reached
through the Airflow Connection recs_run_store, each worker with a local cache of its own as if on a
machine of its own. The mapped user-scoring shards run on both workers, as Airflow records them, and
the published rows equal those of the same night run in one process with a local run folder
(`pipeline.run_all`: the same task functions in DAG order; the LocalExecutor runs them in
tests/dag/test_nights_scheduler.py), although one worker's machine is lost (kill -9, cache gone, a new
worker under its name) in the middle of a publish: Airflow notices the task's heartbeats stop and
retries it, and nothing of the lost attempt is left behind."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import uuid

import psycopg
import pytest

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import OUTPUT_TABLES
from rec_models.names import PAUSE_DIR_ENV, RUN_STORE_CONN_ID
from rec_models.faults import PauseControl
from rec_models.run import Run, leftover_files, run_folder
from rec_models.stack.scheduler import QUICK_RECOVERY, LocalScheduler
from rec_models.storage import open_store
from tests.conftest import END

# Six shards for two workers of one slot each, prefetch 1: neither worker can take them all.
# Every model published: the shards of all three spread over the workers.
CONF = {"top_n": 10, "mf_epochs": 4, "neumf_epochs": 2, "two_tower_epochs": 6, "quality_tolerance": 1.0,
        "user_shards": 6, "publish_models": "all"}


@pytest.fixture(scope="module")
def redis_server():
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (Debian package redis-server; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _night(executor, world, database_factory, tmp_path_factory, run_root=None, env=None, lose_worker_at=None):
    recs = database_factory()
    apply_migrations(recs)
    with psycopg.connect(recs) as conn:
        seed_world(conn, world)
    home = tmp_path_factory.mktemp(executor)
    pauses = PauseControl(home / "pauses")
    scheduler = LocalScheduler(recs, database_factory("airflow_meta"), home / "airflow", run_root or home / "runs",
                               executor=executor, workers=2, supervise=True,
                               env={**(env or {}), **QUICK_RECOVERY, PAUSE_DIR_ENV: str(pauses.folder),
                                    # the lost publish noticed in 30 s and retried 3 s later
                                    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                                    "RECS_RETRY_DELAY_MINUTES": "0.05"})
    with scheduler:
        if lose_worker_at:
            pauses.arm(lose_worker_at)
        run_id = scheduler.trigger(END, CONF, f"night_{executor}")
        lost = None
        if lose_worker_at:
            lost = pauses.wait_paused(lose_worker_at, timeout=900)
            lost["caches"] = sorted(p.name for p in scheduler.home.glob("run-cache-*"))
            scheduler.replace_worker(lost["worker"], also=(lost["pid"],))
            pauses.release(lose_worker_at)
        state = scheduler.wait(run_id, timeout=900)
        restarts = list(scheduler.restarts)
        # A process that dies (here the dag-processor, as a database restart can make it) is started again.
        crashed = scheduler.processes["dag-processor"]
        os.killpg(crashed.pid, signal.SIGKILL)
        crashed.wait()
        scheduler.check_processes()
        supervised = {"restarts": restarts, "after crash": list(scheduler.restarts),
                      "alive": scheduler.processes["dag-processor"].poll() is None}
        return {"recs": recs, "state": state, "supervised": supervised, "tasks": scheduler.task_states(run_id), "lost": lost,
                "tries": scheduler.task_tries(run_id), "hosts": scheduler.task_hostnames(run_id),
                "workers": scheduler.worker_names, "home": home,
                "caches": [scheduler.worker_cache(name) for name in scheduler.worker_names]}


@pytest.fixture(scope="module")
def celery_night(redis_server, s3_server, small_world, database_factory, tmp_path_factory):
    connection = {"conn_type": "aws", "login": s3_server.key, "password": s3_server.secret,
                  "extra": {"endpoint_url": s3_server.endpoint_url}}
    root = f"{s3_server.url}/celery-{uuid.uuid4().hex[:8]}"
    night = _night("celery", small_world, database_factory, tmp_path_factory, run_root=root,
                   env={f"AIRFLOW_CONN_{RUN_STORE_CONN_ID.upper()}": json.dumps(connection)},
                   lose_worker_at="publish:before_swap")
    return {**night, "store": open_store(root, s3_server.storage_options)}


@pytest.fixture(scope="module")
def local_night(small_world, database_factory, tmp_path_factory):
    """The same night with the same settings, in this process, its run folder on local disk."""
    recs = database_factory()
    apply_migrations(recs)
    with psycopg.connect(recs) as conn:
        seed_world(conn, small_world)
    config = dataclasses.replace(PipelineConfig.from_params(CONF), run_root=str(tmp_path_factory.mktemp("local")))
    result = pipeline.run_all(Run(database_url=recs, interval_end=END, dag_run_id="night_local", config=config))
    return {"recs": recs, "published": result["published"]}


def test_celery_workers_share_the_mapped_shards(celery_night):
    assert celery_night["state"] == "success", celery_night["tasks"]
    shards = {task: host for task, host in celery_night["hosts"].items() if task.startswith("score_users_")}
    assert len(shards) == 3 * CONF["user_shards"], shards
    assert set(shards.values()) == {"worker-1", "worker-2"}, shards
    # Every task ran on a worker, none in the scheduler's own process.
    assert set(celery_night["hosts"].values()) <= {"worker-1", "worker-2"}, celery_night["hosts"]


def test_a_worker_lost_mid_publish_is_retried_and_leaves_nothing_behind(celery_night):
    assert celery_night["state"] == "success", celery_night["tasks"]
    assert celery_night["lost"]["worker"] in celery_night["workers"]
    retried = {task: tries for task, tries in celery_night["tries"].items() if tries > 1}
    assert len(retried) == 1 and next(iter(retried)).startswith("publish_"), celery_night["tries"]
    with psycopg.connect(celery_night["recs"]) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'rec' "
                            "AND tablename LIKE '%%\\_stage\\_%%'").fetchone()[0] == 0
    assert leftover_files(celery_night["store"]) == []
    assert not [p for cache in celery_night["caches"] for p in cache.rglob("*") if p.name.endswith((".part", ".tmp"))]


def test_the_stack_restarts_a_process_that_died(celery_night):
    assert celery_night["supervised"]["restarts"] == []  # nothing died during the night
    assert celery_night["supervised"]["after crash"] == ["dag-processor (exit -9)"]
    assert celery_night["supervised"]["alive"]


def test_the_run_folder_lives_on_the_object_store(celery_night):
    store, slug = celery_night["store"], run_folder(celery_night["store"], END).slug
    assert {"snapshot", "dataset", "models", "checkpoints", "outputs", "records"} <= set(store.children(slug))
    assert len(store.children(f"{slug}/outputs/mf")) == 1 + CONF["user_shards"]  # items and every shard
    home = celery_night["home"]
    assert not (home / "runs").exists()  # nothing of it on local disk but each worker's cache
    every_cache = {"run-cache-worker-1", "run-cache-worker-2"}
    assert set(celery_night["lost"]["caches"]) == every_cache  # both had run tasks before one was lost
    # The lost worker's cache went with its machine; its replacement has one only if it ran a task since.
    survivor = f"run-cache-{next(name for name in celery_night['workers'] if name != celery_night['lost']['worker'])}"
    caches_now = {p.name for p in (home / "airflow").glob("run-cache-*")}
    assert survivor in caches_now and caches_now <= every_cache, caches_now


def _published(recs: str) -> dict[str, list[tuple]]:
    with psycopg.connect(recs) as conn:
        return {table.name: conn.execute(
            f"SELECT {', '.join(table.columns[1:])} FROM rec.{table.name}_current "  # noqa: S608 (names from the contract)
            f"ORDER BY {', '.join(c for c in table.primary_key if c != 'model_run_id')}").fetchall()
            for table in OUTPUT_TABLES}


def test_celery_publishes_the_rows_the_local_executor_does(celery_night, local_night):
    assert all(p["published"] for p in local_night["published"].values()), local_night["published"]
    celery_rows, local_rows = _published(celery_night["recs"]), _published(local_night["recs"])
    for table in OUTPUT_TABLES:
        assert len(celery_rows[table.name]) == len(local_rows[table.name]) > 0, table.name
        score = table.columns.index("score") - 1
        for got, want in zip(celery_rows[table.name], local_rows[table.name]):
            assert got[:score] + got[score + 1:] == want[:score] + want[score + 1:], table.name
            assert got[score] == pytest.approx(want[score], rel=1e-5, abs=1e-6), table.name
