"""The CeleryExecutor on one machine: a Redis broker (Debian's ``redis-server``) and Celery workers,
each under a name of its own as Airflow records it (``task_instance.hostname``), for `make airflow
EXECUTOR=celery`, the DAG-tier test and `make bench-chaos`. Standard library only: the workers' task
processes import :func:`task_hostname` through Airflow's ``[core] hostname_callable``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from rec_models.names import WORKER_NAME_ENV
from rec_models.stack.processes import start_airflow_process

HOSTNAME_CALLABLE = "rec_models.stack.celery_workers.task_hostname"
EXECUTORS = ("local", "celery")


class RedisMissing(RuntimeError):
    """No ``redis-server`` binary on this machine."""


def task_hostname() -> str:
    """Airflow's ``[core] hostname_callable``: the worker's own name where it was given one (several
    workers on one machine share its hostname), else the machine's fully qualified name."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RedisMissing("redis-server not found: the CeleryExecutor needs a Redis broker; install Debian's "
                           "redis-server package (as root: apt-get install redis-server; .ci/run does)")
    return path


def start_redis(port: int, folder: Path, timeout: float = 30) -> subprocess.Popen:
    """A Redis broker on 127.0.0.1:``port`` that keeps nothing on disk, answering PING when this returns."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "redis.log", "ab") as log:
        proc = subprocess.Popen(
            [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(folder), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited ({proc.returncode}); see {folder / 'redis.log'}")
        if redis_answers(port):
            return proc
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout:.0f} s")


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def celery_settings(broker_port: int, metadata_sqlalchemy_url: str) -> dict[str, str]:
    """Airflow settings of the CeleryExecutor (the same in docker-compose.yml's celery profile): one task
    at a time per worker, none reserved ahead (prefetch 1), so tasks spread over the workers that are
    free; results in the metadata database."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{broker_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_sqlalchemy_url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
    }


def start_worker(env: dict[str, str], name: str, log_path: Path) -> subprocess.Popen:
    """``airflow celery worker`` named ``name`` (Celery's node name and Airflow's task hostname), in a
    process group of its own: killing the group is losing that machine. Its log server is off: every
    worker here writes task logs to the same folder the api-server reads."""
    return start_airflow_process(["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1",
                                  "--skip-serve-logs"], {**env, WORKER_NAME_ENV: name}, log_path)
