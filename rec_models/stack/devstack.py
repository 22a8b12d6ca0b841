"""The local stack behind `make demo`, `make airflow` and `make stop`: Airflow settings that point at
the same PostgreSQL as the pipeline, and the Airflow processes started and stopped by pid."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import psycopg

from psycopg import sql

from rec_models.stack.celery_workers import celery_settings, redis_answers, redis_binary, start_redis, start_worker
from rec_models.config import PROJECT_ROOT
from rec_models.stack.processes import PRELOADED_WORKERS, airflow_binary, start_airflow_process

from rec_models.db.connect import ensure_database, resolve_database_url, with_database
from rec_models.db.migrate import apply_migrations
from rec_models.names import RECS_CONN_ID, UI_CONN_ID

VAR = PROJECT_ROOT / "var"
AIRFLOW_HOME = VAR / "airflow"
PID_DIR = AIRFLOW_HOME / "pids"
API_HOST, API_PORT = "127.0.0.1", int(os.environ.get("RECS_AIRFLOW_PORT", "8080"))
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")


def airflow_uri(url: str) -> str:
    """The recs database as an Airflow Connection URI (a socket directory goes URL-encoded in the host)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = quote(info.get("user", "postgres"), safe="")
    password = f":{quote(info['password'], safe='')}" if info.get("password") else ""
    host = quote(info.get("host", "localhost"), safe="")
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{password}@{host}{port}/{quote(info.get('dbname', 'recs'), safe='')}"


def sqlalchemy_url(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = quote(info.get("user", "postgres"), safe="")
    password = f":{quote(info['password'], safe='')}" if info.get("password") else ""
    host = info.get("host", "localhost")
    if host.startswith("/"):
        return f"postgresql+psycopg://{user}{password}@/{info['dbname']}?host={quote(host, safe='/')}"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql+psycopg://{user}{password}@{host}{port}/{info['dbname']}"


# The Recommendations view's login: in role rec_ui (migration 005), never the pipeline's own.
UI_LOGIN = "recs_ui"


def ui_login_url(recs_url: str, home: Path = AIRFLOW_HOME) -> str:
    """The view's read-only login on the pipeline's database, created (or its password renewed) here:
    role rec_ui, a password generated once into the local Airflow home."""
    apply_migrations(recs_url)  # rec_ui comes with the migrations
    password_file = home / "ui_db_password"
    if not password_file.exists():
        home.mkdir(parents=True, exist_ok=True)
        password_file.write_text(secrets.token_urlsafe(24))
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    with psycopg.connect(recs_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (UI_LOGIN,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(UI_LOGIN), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT rec_ui TO {}").format(sql.Identifier(UI_LOGIN)))
    info = psycopg.conninfo.conninfo_to_dict(recs_url)
    info.update(user=UI_LOGIN, password=password)
    return psycopg.conninfo.make_conninfo(**info)


def airflow_env() -> dict[str, str]:
    """Environment for every airflow command of the local stack."""
    recs_url = resolve_database_url()
    env = dict(os.environ)
    if not env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        meta_url = with_database(recs_url, "airflow")
        ensure_database(with_database(recs_url, "postgres"), "airflow")
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = sqlalchemy_url(meta_url)
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    secret_file = AIRFLOW_HOME / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(64))
        secret_file.chmod(0o600)
    env.update({
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        **PRELOADED_WORKERS,
        "AIRFLOW__API__HOST": API_HOST,
        "AIRFLOW__API__PORT": str(API_PORT),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{API_HOST}:{API_PORT}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        f"AIRFLOW_CONN_{RECS_CONN_ID.upper()}": airflow_uri(recs_url),
        "RECS_RUN_ROOT": env.get("RECS_RUN_ROOT", str(VAR / "runs")),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
    })
    try:
        env[f"AIRFLOW_CONN_{UI_CONN_ID.upper()}"] = airflow_uri(ui_login_url(recs_url))
    except psycopg.errors.InsufficientPrivilege:  # DATABASE_URL's user may not create roles
        print(f"could not create the view's login {UI_LOGIN} (needs CREATEROLE): the Recommendations view reads "
              f"through {RECS_CONN_ID} and warns on every page", file=sys.stderr)
    return env


def airflow(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([airflow_binary(), *args], env=env, **kwargs)


def migrate_metadata(env: dict[str, str]) -> None:
    airflow(["db", "migrate"], env, check=True, stdout=subprocess.DEVNULL)


def start_airflow(executor: str = "local", workers: int = 2) -> None:
    """The local stack; ``executor`` "celery": a Redis broker and ``workers`` Celery workers too."""
    env = airflow_env()
    PID_DIR.mkdir(parents=True, exist_ok=True)
    logs = AIRFLOW_HOME / "process-logs"
    logs.mkdir(exist_ok=True)
    worker_names = []
    if executor == "celery":
        env.update(celery_settings(_redis_port(logs), env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
        worker_names = [f"worker-{n}" for n in range(1, workers + 1)]
    migrate_metadata(env)
    for name in (*PROCESSES, *worker_names):
        pid_file = PID_DIR / f"{name}.pid"
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            print(f"{name} already running (pid {pid_file.read_text().strip()})")
            continue
        if name in worker_names:
            proc = start_worker(env, name, logs / f"{name}.log")
        else:
            # Own session per process: `make stop` signals the whole group, workers included.
            proc = start_airflow_process([name], env, logs / f"{name}.log")
        pid_file.write_text(str(proc.pid))
    url = f"http://{API_HOST}:{API_PORT}"
    if not _wait_http(f"{url}/api/v2/version", 180):
        print(f"the api-server did not answer within 180 s; see {logs}/api-server.log")
        sys.exit(1)
    print(f"Airflow UI: {url}  (login: admin / {admin_password()})" +
          (f"; CeleryExecutor with {', '.join(worker_names)}" if worker_names else ""))
    print(f"logs: {logs}; stop everything with: make stop")


def _redis_port(logs: Path) -> int:
    """The broker of `make airflow EXECUTOR=celery`: the running one, or a new one on a free port."""
    pid_file, port_file = PID_DIR / "redis.pid", PID_DIR / "redis.port"
    if pid_file.exists() and _alive(int(pid_file.read_text())) and port_file.exists() \
            and redis_answers(int(port_file.read_text())):
        return int(port_file.read_text())
    redis_binary()  # says how to install it before anything starts
    port = free_port()
    pid_file.write_text(str(start_redis(port, logs / "redis").pid))
    port_file.write_text(str(port))
    return port


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now (for a server of a test or a benchmark)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api_server(env: dict[str, str], port: int, log_path: Path, timeout: float = 180) -> subprocess.Popen:
    """An api-server of its own (tests, benchmarks) on 127.0.0.1:``port``, answering when this returns."""
    proc = start_airflow_process(["api-server", "--port", str(port)],
                                 {**env, "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port)}, log_path)
    if not _wait_http(f"http://127.0.0.1:{port}/api/v2/version", timeout, alive=lambda: proc.poll() is None):
        proc.terminate()
        raise RuntimeError(f"the api-server did not answer within {timeout:.0f} s; see {log_path}")
    return proc


def login_token(base: str, airflow_home: Path, username: str) -> str:
    """A bearer token for a SimpleAuthManager user, with the password Airflow generated for them."""
    passwords = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
    request = urllib.request.Request(f"{base}/auth/token", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"username": username, "password": passwords[username]}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def admin_password() -> str:
    generated = AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated"
    if generated.exists():
        return json.loads(generated.read_text()).get("admin", "?")
    return "(see the api-server log)"


def stop_airflow(timeout: float = 30.0) -> None:
    if not PID_DIR.exists():
        return
    # The broker last: workers finish their shutdown while it still answers.
    for pid_file in sorted(PID_DIR.glob("*.pid"), key=lambda f: (f.stem == "redis", f.name)):
        pid = int(pid_file.read_text())
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while _group_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.3)
            if _group_alive(pid):
                os.killpg(pid, signal.SIGKILL)
            print(f"stopped {pid_file.stem} (pid {pid})")
        pid_file.unlink()


def _alive(pid: int) -> bool:
    return _answers(os.kill, pid)


def _group_alive(pgid: int) -> bool:
    return _answers(os.killpg, pgid)


def _answers(send, target: int) -> bool:
    """Whether signal 0 reaches ``target`` (a process, or a process group with ``os.killpg``)."""
    try:
        send(target, 0)
        return True
    except ProcessLookupError:
        return False


def _wait_http(url: str, timeout: float, alive=lambda: True) -> bool:
    """Whether ``url`` answers within ``timeout`` seconds (giving up early once ``alive()`` is false)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered (401 without a token): the server is up
        except Exception:
            time.sleep(1)
    return False
