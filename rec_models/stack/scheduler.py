"""Nights run by Airflow's own scheduler and executor (LocalExecutor, or CeleryExecutor with a Redis
broker and workers of their own): the DAG-tier tests and `make bench-nights` trigger a DAG run for one
data interval, wait for it, and read what the scheduler recorded. An api-server runs too, on a free
port of 127.0.0.1: Airflow 3's tasks report to its execution API. The cron schedule is off
(``use_job_schedule``), so only the nights asked for run."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import psutil
import psycopg

from rec_models.stack.celery_workers import EXECUTORS, celery_settings, start_redis, start_worker
from rec_models.config import PROJECT_ROOT
from rec_models.stack.processes import PRELOADED_WORKERS, airflow_binary, start_airflow_process
from rec_models.stack.devstack import airflow_uri, free_port, login_token, sqlalchemy_url, start_api_server
from rec_models.names import RECS_CONN_ID

NIGHTLY_DAG = "nightly_recommendations"
FINISHED = ("success", "failed")
# For benches and tests that kill things: a lost task noticed in a minute, not in five (defaults in
# brackets). A task whose heartbeats stop is failed, and retried, after this many seconds [300]; the
# scheduler looks for such tasks this often [10]; a restarted scheduler adopts the tasks of a dead one
# this often [300]; a task queued but never started is queued again after [600], checked every [120].
QUICK_RECOVERY = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "180",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
}


class LocalScheduler:
    """A scheduler and a dag-processor on ``metadata_url`` (a PostgreSQL database of their own), running
    this checkout's DAGs against ``recs_url`` with run files under ``run_root`` (a folder or an
    object-store URL; ``env``: what its clients read, such as credentials or an Airflow Connection);
    ``executor`` "celery" adds a Redis broker and ``workers`` Celery workers named worker-1, worker-2,
    ..., each with a run-file cache of its own, as if on machines of their own. ``supervise``: a process
    that exits is started again (as systemd or Kubernetes would), instead of failing the wait.
    ``triggerer``: a triggerer too (it runs the deadline alert's callback)."""

    def __init__(self, recs_url: str, metadata_url: str, home: Path, run_root: Path | str, parallelism: int = 4,
                 executor: str = "local", workers: int = 2, env: dict[str, str] | None = None,
                 supervise: bool = False, triggerer: bool = False):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
        self.recs_url, self.metadata_url, self.home, self.run_root = recs_url, metadata_url, home, run_root
        self.parallelism, self.executor, self.extra_env = parallelism, executor, dict(env or {})
        self.worker_names = [f"worker-{n}" for n in range(1, workers + 1)] if executor == "celery" else []
        self.processes: dict[str, subprocess.Popen] = {}
        self.supervise, self.triggerer = supervise, triggerer
        self.restarts: list[str] = []  # "<process> (exit <code>)", each time supervision restarted one
        self.api_port = free_port()
        self.redis_port = free_port()
        self.jwt_secret = secrets.token_urlsafe(64)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlalchemy_url(self.metadata_url),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only the nights triggered here run
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            **PRELOADED_WORKERS,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,  # shared by the api-server and the tasks
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            f"AIRFLOW_CONN_{RECS_CONN_ID.upper()}": airflow_uri(self.recs_url),
            "RECS_RUN_ROOT": str(self.run_root),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        })
        if self.executor == "celery":
            env.update(celery_settings(self.redis_port, sqlalchemy_url(self.metadata_url)))
        env.update(self.extra_env)
        return env

    def airflow(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([airflow_binary(), *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    def start(self, timeout: float = 240) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        for name in (["redis"] if self.executor == "celery" else []) + ["api-server", "scheduler", "dag-processor",
                                                                         *self.worker_names] + \
                (["triggerer"] if self.triggerer else []):
            self.start_process(name)
        deadline = time.monotonic() + timeout
        while not self.query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", (NIGHTLY_DAG,)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes.values()):
                self.stop()
                raise RuntimeError(f"the DAG was not parsed within {timeout:.0f} s; see {self.home}/*.log")
            time.sleep(2)
        self.airflow("dags", "unpause", NIGHTLY_DAG)

    def start_process(self, name: str) -> subprocess.Popen:
        """(Re)start one process of the stack (redis, api-server, scheduler, dag-processor or a worker
        ``worker-N``), in a process group of its own."""
        if name == "redis":
            self.processes[name] = start_redis(self.redis_port, self.home / "redis")
        elif name == "api-server":
            self.processes[name] = start_api_server(self.env(), self.api_port, self.home / "api-server.log")
        elif name in self.worker_names:
            env = {**self.env(), "RECS_RUN_CACHE": str(self.worker_cache(name))}
            self.processes[name] = start_worker(env, name, self.home / f"{name}.log")
        else:
            self.processes[name] = start_airflow_process([name], self.env(), self.home / f"{name}.log")
        return self.processes[name]

    def worker_cache(self, name: str) -> Path:
        return self.home / f"run-cache-{name}"

    def kill(self, name: str, also: tuple[int, ...] = ()) -> None:
        """SIGKILL a process of the stack with its whole process group and every process it started
        (task processes included), plus the pids in ``also``: a machine lost, not a clean shutdown."""
        proc = self.processes[name]
        victims = set(also)
        try:
            victims |= {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def replace_worker(self, name: str, also: tuple[int, ...] = ()) -> None:
        """Lose worker ``name``'s machine (killed, its local run-file cache gone) and start a new one
        under the same name."""
        self.kill(name, also)
        shutil.rmtree(self.worker_cache(name), ignore_errors=True)
        self.start_process(name)

    def check_processes(self) -> None:
        """Restart what exited (``supervise``), or raise naming it."""
        for name, proc in list(self.processes.items()):
            if proc.poll() is None:
                continue
            if not self.supervise:
                raise RuntimeError(f"airflow {name} exited ({proc.returncode}); see {self.home}/{name}.log")
            self.restarts.append(f"{name} (exit {proc.returncode})")
            self.start_process(name)

    def trigger(self, interval_end: datetime, conf: dict, run_id: str) -> str:
        """A run of the nightly DAG for the day ending at ``interval_end``, through the REST API with its
        data interval explicit (`airflow dags trigger -l` sets the logical date but takes the interval
        from the moment of the trigger)."""
        body = {"dag_run_id": run_id, "logical_date": interval_end.isoformat(),
                "data_interval_start": (interval_end - timedelta(days=1)).isoformat(),
                "data_interval_end": interval_end.isoformat(), "conf": conf}
        return self.post(f"/api/v2/dags/{NIGHTLY_DAG}/dagRuns", body)["dag_run_id"]

    def clear(self, run_id: str) -> None:
        """Run a finished night again, every task of it, as an operator's Clear in the UI does."""
        self.post(f"/api/v2/dags/{NIGHTLY_DAG}/dagRuns/{run_id}/clear", {"dry_run": False})

    def post(self, path: str, body: dict) -> dict:
        """POST ``body`` to the api-server's REST API as the admin."""
        request = urllib.request.Request(f"{self.base_url}{path}", method="POST", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "Authorization":
                                                  f"Bearer {login_token(self.base_url, self.home, 'admin')}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def backfill(self, interval_end: datetime, conf: dict) -> str:
        """A backfill (`airflow backfill create`) of the one night ending at ``interval_end``, which the
        running scheduler executes beside any other run; returns its DAG run id."""
        # The cron timetable names a night by the start of its data interval.
        day = (interval_end - timedelta(days=1)).isoformat()
        self.airflow("backfill", "create", "--dag-id", NIGHTLY_DAG, "--from-date", day, "--to-date", day,
                     "--dag-run-conf", json.dumps(conf))
        rows = self.query("SELECT run_id FROM dag_run WHERE dag_id = %s AND run_type = 'backfill' "
                           "AND data_interval_end = %s", (NIGHTLY_DAG, interval_end))
        if not rows:
            raise RuntimeError(f"airflow backfill create made no run for the night ending {interval_end}")
        return rows[0][0]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def wait(self, run_id: str, timeout: float = 3600) -> str:
        """The run's final state (success or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (NIGHTLY_DAG, run_id))
            if rows and rows[0][0] in FINISHED:
                return rows[0][0]
            self.check_processes()
            time.sleep(3)
        raise TimeoutError(f"DAG run {run_id} did not finish within {timeout:.0f} s")

    def task_states(self, run_id: str) -> dict[str, str]:
        """task id (mapped tasks: ``id[index]``) -> state, as the scheduler recorded them."""
        rows = self.query("SELECT task_id, map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                           (NIGHTLY_DAG, run_id))
        return {task if index < 0 else f"{task}[{index}]": state for task, index, state in rows}

    def task_hostnames(self, run_id: str) -> dict[str, str]:
        """task id (mapped tasks: ``id[index]``) -> the hostname Airflow recorded for its last try."""
        rows = self.query("SELECT task_id, map_index, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s",
                           (NIGHTLY_DAG, run_id))
        return {task if index < 0 else f"{task}[{index}]": host for task, index, host in rows}

    def task_tries(self, run_id: str) -> dict[str, int]:
        """task id (mapped tasks: ``id[index]``) -> the number of its latest try."""
        rows = self.query("SELECT task_id, map_index, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
                           (NIGHTLY_DAG, run_id))
        return {task if index < 0 else f"{task}[{index}]": tries for task, index, tries in rows}

    def task_seconds(self, run_id: str) -> dict[str, float]:
        """task id -> seconds its finished tries took (a mapped task's shards summed)."""
        seconds: dict[str, float] = {}
        for task, value in self.query("SELECT task_id, extract(epoch FROM end_date - start_date) FROM task_instance "
                                       "WHERE dag_id = %s AND run_id = %s AND end_date IS NOT NULL",
                                       (NIGHTLY_DAG, run_id)):
            seconds[task] = seconds.get(task, 0.0) + float(value)
        return seconds

    def task_spans(self, run_id: str) -> dict[str, tuple[float, float]]:
        """task id -> (start, end) in epoch seconds of its last try (a mapped task: its first start, last end)."""
        spans: dict[str, tuple[float, float]] = {}
        for task, start, end in self.query(
                "SELECT task_id, extract(epoch FROM start_date), extract(epoch FROM end_date) FROM task_instance "
                "WHERE dag_id = %s AND run_id = %s AND start_date IS NOT NULL AND end_date IS NOT NULL",
                (NIGHTLY_DAG, run_id)):
            old = spans.get(task, (float(start), float(end)))
            spans[task] = (min(old[0], float(start)), max(old[1], float(end)))
        return spans

    def run_seconds(self, run_id: str) -> float:
        row = self.query("SELECT extract(epoch FROM end_date - start_date) FROM dag_run WHERE dag_id = %s "
                          "AND run_id = %s", (NIGHTLY_DAG, run_id))
        return float(row[0][0]) if row and row[0][0] is not None else float("nan")

    def stop(self, timeout: float = 30) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.processes.values():
            try:  # LocalExecutor workers or Celery's pool processes left in the group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.processes.clear()

    def query(self, statement: str, params: tuple, patience: float = 60) -> list[tuple]:
        """Rows from Airflow's metadata database (asked again while the server restarts)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                with psycopg.connect(self.metadata_url) as conn:
                    return conn.execute(statement, params).fetchall()
            except psycopg.errors.UndefinedTable:
                return []
            except psycopg.OperationalError:  # the database restarting: ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def __enter__(self) -> "LocalScheduler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
