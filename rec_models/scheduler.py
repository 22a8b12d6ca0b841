"""Nights run by Airflow's own scheduler and executor (LocalExecutor, or CeleryExecutor with a Redis
broker and workers of their own): the DAG-tier tests and `make bench-nights` trigger a DAG run for one
data interval, wait for it, and read what the scheduler recorded. An api-server runs too, on a free
port of 127.0.0.1: Airflow 3's tasks report to its execution API. The cron schedule is off
(``use_job_schedule``), so only the nights asked for run."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import psycopg

from rec_models.celery_workers import EXECUTORS, celery_settings, start_redis, start_worker
from rec_models.config import PROJECT_ROOT
from rec_models.processes import airflow_binary, start_airflow_process
from rec_models.devstack import airflow_uri, free_port, login_token, sqlalchemy_url, start_api_server
from rec_models.names import RECS_CONN_ID

NIGHTLY_DAG = "nightly_recommendations"
FINISHED = ("success", "failed")


class LocalScheduler:
    """A scheduler and a dag-processor on ``metadata_url`` (a PostgreSQL database of their own), running
    this checkout's DAGs against ``recs_url`` with run files under ``run_root`` (a folder or an
    object-store URL; ``env``: what its clients read, such as credentials or an Airflow Connection);
    ``executor`` "celery" adds a Redis broker and ``workers`` Celery workers named worker-1, worker-2,
    ..., each with a run-file cache of its own, as if on machines of their own."""

    def __init__(self, recs_url: str, metadata_url: str, home: Path, run_root: Path | str, parallelism: int = 4,
                 executor: str = "local", workers: int = 2, env: dict[str, str] | None = None):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
        self.recs_url, self.metadata_url, self.home, self.run_root = recs_url, metadata_url, home, run_root
        self.parallelism, self.executor, self.extra_env = parallelism, executor, dict(env or {})
        self.worker_names = [f"worker-{n}" for n in range(1, workers + 1)] if executor == "celery" else []
        self.processes: dict[str, subprocess.Popen] = {}
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
        if self.executor == "celery":
            self.processes["redis"] = start_redis(self.redis_port, self.home / "redis")
        self.processes["api-server"] = start_api_server(self.env(), self.api_port, self.home / "api-server.log")
        for name in ("scheduler", "dag-processor"):
            self.start_process(name)
        for name in self.worker_names:
            self.start_process(name)
        deadline = time.monotonic() + timeout
        while not self._query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", (NIGHTLY_DAG,)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes.values()):
                self.stop()
                raise RuntimeError(f"the DAG was not parsed within {timeout:.0f} s; see {self.home}/*.log")
            time.sleep(2)
        self.airflow("dags", "unpause", NIGHTLY_DAG)

    def start_process(self, name: str) -> subprocess.Popen:
        """(Re)start the scheduler, the dag-processor or a worker (``worker-N``), in a process group of its own."""
        if name in self.worker_names:
            env = {**self.env(), "RECS_RUN_CACHE": str(self.home / f"run-cache-{name}")}
            self.processes[name] = start_worker(env, name, self.home / f"{name}.log")
        else:
            self.processes[name] = start_airflow_process([name], self.env(), self.home / f"{name}.log")
        return self.processes[name]

    def trigger(self, interval_end: datetime, conf: dict, run_id: str) -> str:
        """A run of the nightly DAG for the day ending at ``interval_end``, through the REST API with its
        data interval explicit (`airflow dags trigger -l` sets the logical date but takes the interval
        from the moment of the trigger)."""
        body = {"dag_run_id": run_id, "logical_date": interval_end.isoformat(),
                "data_interval_start": (interval_end - timedelta(days=1)).isoformat(),
                "data_interval_end": interval_end.isoformat(), "conf": conf}
        request = urllib.request.Request(f"{self.base_url}/api/v2/dags/{NIGHTLY_DAG}/dagRuns", method="POST",
                                         data=json.dumps(body).encode(), headers={
                                             "Content-Type": "application/json",
                                             "Authorization": f"Bearer {login_token(self.base_url, self.home, 'admin')}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["dag_run_id"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def wait(self, run_id: str, timeout: float = 3600) -> str:
        """The run's final state (success or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self._query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (NIGHTLY_DAG, run_id))
            if rows and rows[0][0] in FINISHED:
                return rows[0][0]
            if any(p.poll() is not None for p in self.processes.values()):
                raise RuntimeError(f"an Airflow process exited; see {self.home}/*.log")
            time.sleep(3)
        raise TimeoutError(f"DAG run {run_id} did not finish within {timeout:.0f} s")

    def task_states(self, run_id: str) -> dict[str, str]:
        """task id (mapped tasks: ``id[index]``) -> state, as the scheduler recorded them."""
        rows = self._query("SELECT task_id, map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
                           (NIGHTLY_DAG, run_id))
        return {task if index < 0 else f"{task}[{index}]": state for task, index, state in rows}

    def task_hostnames(self, run_id: str) -> dict[str, str]:
        """task id (mapped tasks: ``id[index]``) -> the hostname Airflow recorded for its last try."""
        rows = self._query("SELECT task_id, map_index, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s",
                           (NIGHTLY_DAG, run_id))
        return {task if index < 0 else f"{task}[{index}]": host for task, index, host in rows}

    def task_seconds(self, run_id: str) -> dict[str, float]:
        """task id -> seconds its finished tries took (a mapped task's shards summed)."""
        seconds: dict[str, float] = {}
        for task, value in self._query("SELECT task_id, extract(epoch FROM end_date - start_date) FROM task_instance "
                                       "WHERE dag_id = %s AND run_id = %s AND end_date IS NOT NULL",
                                       (NIGHTLY_DAG, run_id)):
            seconds[task] = seconds.get(task, 0.0) + float(value)
        return seconds

    def run_seconds(self, run_id: str) -> float:
        row = self._query("SELECT extract(epoch FROM end_date - start_date) FROM dag_run WHERE dag_id = %s "
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

    def _query(self, statement: str, params: tuple) -> list[tuple]:
        try:
            with psycopg.connect(self.metadata_url) as conn:
                return conn.execute(statement, params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []

    def __enter__(self) -> "LocalScheduler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
