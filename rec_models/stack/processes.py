"""Airflow's own processes started by this project (the local stack, the scheduler harness, Celery
workers): each an `airflow ...` command of this Python's environment, logging to a file, in a process
group of its own so that stopping (or killing) the group takes its children with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# The LocalExecutor's workers start from a fork server that imported torch and the pipeline once: each
# task forked from them skips those imports (seconds of CPU per task on 2 cores; a test night of the
# scheduler tier 171 s instead of 194 s).
PRELOADED_WORKERS = {
    "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
    "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": "airflow,airflow.executors.local_executor,numpy,scipy,torch,"
                                            "rec_models.pipeline",
}


def airflow_binary() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def start_airflow_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([airflow_binary(), *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
