"""One night of a synthetic world run twice through Airflow's scheduler: LocalExecutor with the run
folder on local disk, then CeleryExecutor (Redis, two workers of one slot each, each with its own
run-file cache as if on a machine of its own) with the run folder on an S3 server (SeaweedFS on
127.0.0.1) reached through the Airflow Connection recs_run_store.

    python -m bench.scale_out [--size M] [--shards 4]      (make bench-scale-out)

Prints each task's seconds in both (mapped tasks summed), the DAG runs' seconds, where the tasks ran,
and whether the published rows are equal; the last line:
    scale-out: size <S>, local <a> s, celery+s3 <b> s (<r>x), workers <w>, rows equal <yes|no>
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from bench.scale import SIZES
from rec_models.config import PROJECT_ROOT
from rec_models.data.seed import seed_world
from rec_models.data.synthetic import generate_world
from rec_models.db.connect import scratch_database
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import OUTPUT_TABLES
from rec_models.names import RUN_STORE_CONN_ID
from rec_models.stack.scheduler import LocalScheduler
from rec_models.stack.seaweedfs import SeaweedS3

OUT = PROJECT_ROOT / "var" / "bench-scale-out"


def night(world, executor: str, home: Path, run_root, env: dict, conf: dict, end: datetime) -> dict:
    with scratch_database("bench_scale_out") as recs, scratch_database("airflow_bench_scale_out") as meta:
        apply_migrations(recs)
        with psycopg.connect(recs) as conn:
            seed_world(conn, world)
        with LocalScheduler(recs, meta, home / "airflow", run_root, executor=executor, env=env) as scheduler:
            run_id = scheduler.trigger(end, conf, f"bench_{executor}")
            state = scheduler.wait(run_id, timeout=4 * 3600)
            tasks = scheduler.task_seconds(run_id)
            hosts = sorted({h for h in scheduler.task_hostnames(run_id).values() if h})
            result = {"state": state, "seconds": scheduler.run_seconds(run_id), "tasks": tasks, "hosts": hosts}
        with psycopg.connect(recs) as conn:
            result["rows"] = {t.name: conn.execute(
                f"SELECT {', '.join(t.columns[1:])} FROM rec.{t.name}_current "  # noqa: S608 (names from the contract)
                f"ORDER BY {', '.join(c for c in t.primary_key if c != 'model_run_id')}").fetchall() for t in OUTPUT_TABLES}
    return result


def _equal(a: dict, b: dict) -> bool:
    for table in OUTPUT_TABLES:
        score = table.columns.index("score") - 1
        if len(a[table.name]) != len(b[table.name]):
            return False
        for x, y in zip(a[table.name], b[table.name]):
            if x[:score] + x[score + 1:] != y[:score] + y[score + 1:] or abs(x[score] - y[score]) > 1e-5 * max(1, abs(y[score])):
                return False
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="M")
    parser.add_argument("--shards", type=int, default=4, help="user_shards: more than the two workers")
    args = parser.parse_args(argv)
    end = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    world = generate_world(SIZES[args.size], end)
    conf = {"user_shards": args.shards}
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        home = Path(tmp)
        local = night(world, "local", home / "local", home / "local" / "runs", {}, conf, end)
        with SeaweedS3(home / "seaweedfs") as s3:
            connection = {"conn_type": "aws", "login": s3.key, "password": s3.secret,
                          "extra": {"endpoint_url": s3.endpoint_url}}
            celery = night(world, "celery", home / "celery", f"{s3.url}/{args.size}",
                           {f"AIRFLOW_CONN_{RUN_STORE_CONN_ID.upper()}": json.dumps(connection)}, conf, end)
    equal = _equal(local["rows"], celery["rows"])
    print(f"{'task':<28} {'local s':>8} {'celery+s3 s':>12}")
    for task in sorted(set(local["tasks"]) | set(celery["tasks"])):
        print(f"{task:<28} {local['tasks'].get(task, float('nan')):>8.1f} {celery['tasks'].get(task, float('nan')):>12.1f}")
    print(f"{'DAG run':<28} {local['seconds']:>8.1f} {celery['seconds']:>12.1f}   "
          f"(states {local['state']} / {celery['state']}; celery tasks ran on {', '.join(celery['hosts'])})")
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, {time.perf_counter() - started:.0f} s)")
    print(f"scale-out: size {args.size}, local {local['seconds']:.0f} s, celery+s3 {celery['seconds']:.0f} s "
          f"({celery['seconds'] / local['seconds']:.2f}x), workers {len(celery['hosts'])}, "
          f"rows equal {'yes' if equal else 'no'}")


if __name__ == "__main__":
    main()
