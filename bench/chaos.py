"""Faults under the real scheduler: the nightly DAG runs night after night under Airflow's scheduler
with the CeleryExecutor (Redis, two workers of one slot each, run files on an S3 server) while a
reader queries the ``rec.*_current`` views, and each night one thing goes wrong:

- a worker's machine is lost (``kill -9`` of its whole process group, its local cache gone, a new
  worker started under its name) in the middle of a train task, of a user-scoring shard, of a publish;
- the scheduler is killed and started again mid-run;
- PostgreSQL (the recommendations and Airflow's metadata databases both) restarts mid-publish; the
  stack brings back whatever exited, as a supervisor would;
- a backfill of an earlier night starts while the nightly runs.

A fault strikes at a known moment: the bench arms a fault point (rec_models.faults), the first task to
reach it waits there, the bench acts, then lets it go. Every night must end in success through
Airflow's own retries and heartbeat-timeout handling, publish exactly the rows an undisturbed run of
the same nights in the same order publishes (compared per model and night, the gate's baseline
included), show readers no partial or empty result, and leave no staging table, advisory lock or file
of a failed attempt behind.

    python -m bench.chaos [--size S] [--store s3|local]        (make bench-chaos)

Last line:
    chaos: cases <n>, runs succeeded <s>/<n>, rows equal <e>/<n>, reader queries <r>, bad reads <b>, leftovers <l>
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from bench.worlds import SIZES
from rec_models.config import PROJECT_ROOT
from rec_models.data.seed import seed_world
from rec_models.data.synthetic import generate_world
from rec_models.db.connect import scratch_database
from rec_models.db.embedded import restart_embedded_server
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import run_digest
from rec_models.faults import PauseControl
from rec_models.names import PAUSE_DIR_ENV, RUN_STORE_CONN_ID
from rec_models.run import leftover_files
from rec_models.stack.scheduler import NIGHTLY_DAG, QUICK_RECOVERY, LocalScheduler
from rec_models.stack.seaweedfs import SeaweedS3
from rec_models.storage import open_store

OUT = PROJECT_ROOT / "var" / "bench-chaos"

PAUSE_TIMEOUT_S = 1800


@dataclass
class Case:
    name: str
    point: str  # the fault point where the fault strikes
    act: Callable[["Chaos", dict], None]  # given the paused task's {"pid", "worker", "point"}


def lose_worker(chaos: "Chaos", paused: dict) -> None:
    chaos.scheduler.replace_worker(paused["worker"], also=(paused["pid"],))


def restart_scheduler(chaos: "Chaos", paused: dict) -> None:
    chaos.scheduler.kill("scheduler")
    time.sleep(10)
    chaos.scheduler.start_process("scheduler")


def restart_postgres(chaos: "Chaos", paused: dict) -> None:
    restart_embedded_server()


def start_backfill(chaos: "Chaos", paused: dict) -> None:
    chaos.backfill_run = chaos.scheduler.backfill(chaos.backfill_night, chaos.conf)


CASES = [
    Case("worker lost mid-train", "train:epoch", lose_worker),
    Case("worker lost as a scoring shard ends", "score:done", lose_worker),
    Case("worker lost mid-publish", "publish:before_swap", lose_worker),
    Case("scheduler killed, restarted", "evaluate:done", restart_scheduler),
    Case("PostgreSQL restarted mid-publish", "publish:after_stage", restart_postgres),
    Case("backfill beside the nightly", "train:epoch", start_backfill),
]


@dataclass
class ReaderStats:
    queries: int = 0
    bad_reads: int = 0
    refused: int = 0  # queries the server refused while it restarted (not a read at all)
    problems: list[str] = field(default_factory=list)


class Reader(threading.Thread):
    """Queries the _current views as a service would, checking every answer: one run, a whole list
    (ranks 1..n) for every user known to the first night, and, one query in ten in one snapshot, as
    many rows in the view as the serving run's partition holds."""

    def __init__(self, url: str, users: list[int], videos: list[int]):
        super().__init__(daemon=True)
        self.url, self.users, self.videos = url, users, videos
        self.stats, self.stop = ReaderStats(), threading.Event()

    def run(self) -> None:
        rng = random.Random(7)
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True)
                bad = self._read(conn, rng)
                self.stats.queries += 1
                self.stats.bad_reads += bool(bad)
                if bad and len(self.stats.problems) < 10:
                    self.stats.problems.append(bad)
            except psycopg.OperationalError:
                self.stats.refused += 1
                conn = None
                time.sleep(0.5)
            time.sleep(0.05)

    def _read(self, conn: psycopg.Connection, rng: random.Random) -> str | None:
        draw = rng.random()
        if draw < 0.1:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                rows = conn.execute("SELECT model_run_id, count(*) FROM rec.user_recommendations_current "
                                    "GROUP BY 1").fetchall()
                if len(rows) != 1:
                    return f"user_recommendations_current shows runs {rows}"
                whole = conn.execute("SELECT count(*) FROM rec.user_recommendations WHERE model_run_id = %s",
                                     (rows[0][0],)).fetchone()[0]
            return None if rows[0][1] == whole else f"run {rows[0][0]}: {rows[0][1]} of {whole} rows in the view"
        table, key, value = (("user_recommendations", "user_id", rng.choice(self.users)) if draw < 0.7
                             else ("similar_videos", "video_id", rng.choice(self.videos)))
        rows = conn.execute(sql.SQL("SELECT model_run_id, rank FROM {} WHERE {} = %s ORDER BY rank").format(
            sql.Identifier("rec", f"{table}_current"), sql.Identifier(key)), (value,)).fetchall()
        if not rows or len({r[0] for r in rows}) != 1 or [r[1] for r in rows] != list(range(1, len(rows) + 1)):
            return f"{table}_current for {key} {value}: {rows[:3]}... ({len(rows)} rows)"
        return None


class Chaos:
    """One stack (scheduler, workers, recommendations database) and the nights run on it."""

    def __init__(self, scheduler: LocalScheduler, recs_url: str, conf: dict, backfill_night: datetime):
        self.scheduler, self.recs_url, self.conf, self.backfill_night = scheduler, recs_url, conf, backfill_night
        self.backfill_run: str | None = None

    def night(self, end: datetime, label: str) -> dict:
        run_id = self.scheduler.trigger(end, self.conf, f"{label}_{end:%Y%m%d}")
        return self._finished(run_id)

    def _finished(self, run_id: str) -> dict:
        state = self.scheduler.wait(run_id, timeout=3 * 3600)
        retried = self.scheduler.query(
            "SELECT count(*) FROM task_instance WHERE dag_id = %s AND run_id = %s AND try_number > 1",
            (NIGHTLY_DAG, run_id))[0][0]
        return {"run_id": run_id, "state": state, "seconds": self.scheduler.run_seconds(run_id), "retried": retried}

    def case(self, case: Case, end: datetime, pauses: PauseControl) -> dict:
        pauses.arm(case.point)
        run_id = self.scheduler.trigger(end, self.conf, f"chaos_{end:%Y%m%d}")
        try:
            paused = pauses.wait_paused(case.point, PAUSE_TIMEOUT_S, alive=lambda: self._running(run_id))
            case.act(self, paused)
        finally:
            pauses.release(case.point)
        result = self._finished(run_id)
        if self.backfill_run:
            backfill = self._finished(self.backfill_run)
            backfill["overlap"] = self._overlap(run_id, self.backfill_run)
            result["backfill"] = backfill
            result["state"] = "success" if {result["state"], backfill["state"]} == {"success"} else "failed"
        return result

    def _overlap(self, run_a: str, run_b: str) -> float:
        """Seconds two DAG runs were running at the same time."""
        rows = self.scheduler.query(
            "SELECT extract(epoch FROM least(a.end_date, b.end_date) - greatest(a.start_date, b.start_date)) "
            "FROM dag_run a, dag_run b WHERE a.dag_id = %s AND b.dag_id = a.dag_id AND a.run_id = %s AND b.run_id = %s",
            (NIGHTLY_DAG, run_a, run_b))
        return max(0.0, float(rows[0][0] or 0)) if rows else 0.0

    def _running(self, run_id: str) -> bool:
        self.scheduler.check_processes()
        rows = self.scheduler.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (NIGHTLY_DAG, run_id))
        return not rows or rows[0][0] not in ("success", "failed")


def lasting_keys(url: str, first: datetime) -> tuple[list[int], list[int]]:
    """Users and videos served on the first night that every later night serves too: viewed in the
    month before it (the history window moves a day a night; a video without views may be served
    by one model and not by another)."""
    with psycopg.connect(url) as conn:
        users = [u for (u,) in conn.execute(
            "SELECT DISTINCT user_id FROM rec.user_recommendations_current JOIN video_views USING (user_id) "
            "WHERE viewed_at >= %s AND viewed_at < %s", (first - timedelta(days=30), first))]
        videos = [v for (v,) in conn.execute(
            "SELECT DISTINCT video_id FROM rec.similar_videos_current JOIN video_views USING (video_id) "
            "WHERE viewed_at >= %s AND viewed_at < %s", (first - timedelta(days=30), first))]
    return users, videos


def published_digests(url: str) -> dict[tuple[str, str], dict]:
    """(model, night) -> each output table's row count and digest (scores to 4 decimals), the run's
    status and the night of the run its gate compared it with, for every published run."""
    out = {}
    with psycopg.connect(url) as conn:
        runs = conn.execute("SELECT model_run_id, model_name, data_interval_end, status, status_reason "
                            "FROM rec.model_runs WHERE published_at IS NOT NULL").fetchall()
        nights = dict(conn.execute("SELECT model_run_id, data_interval_end FROM rec.model_runs").fetchall())
        for run_id, model, end, status, reason in runs:
            baseline = re.search(r"published run (\d+)", reason or "")
            entry = {"status": status, "gate baseline": str(nights.get(int(baseline.group(1)))) if baseline else None}
            entry.update(run_digest(conn, run_id))
            out[(model, str(end))] = entry
    return out


def serving(url: str) -> dict[str, tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return {output: (model, str(end)) for output, model, end in conn.execute(
            "SELECT s.output_name, m.model_name, m.data_interval_end FROM rec.serving s "
            "JOIN rec.model_runs m USING (model_run_id)").fetchall()}


def leftovers(url: str, store, caches: list[Path]) -> list[str]:
    """Staging tables, advisory locks held, and files of failed attempts (in the run root and in the
    workers' caches)."""
    found = []
    with psycopg.connect(url) as conn:
        found += [f"staging table rec.{t}" for (t,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'rec' AND tablename LIKE '%%\\_stage\\_%%'")]
        found += [f"advisory lock {k} held by pid {p}" for k, p in conn.execute(
            "SELECT objid, pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")]
    found += [f"run file {path}" for path in leftover_files(store)]
    for cache in caches:
        found += [f"cache file {p}" for p in cache.rglob("*") if p.name.endswith((".part", ".tmp"))] if cache.is_dir() else []
    return found


def stack(recs: str, meta: str, home: Path, run_root: str, env: dict, supervise: bool) -> LocalScheduler:
    return LocalScheduler(recs, meta, home, run_root, executor="celery", workers=2,
                          env={**QUICK_RECOVERY, **env}, supervise=supervise)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="S")
    parser.add_argument("--store", choices=("s3", "local"), default="s3", help="where run files live")
    parser.add_argument("--shards", type=int, default=4, help="user_shards: more than the two workers")
    args = parser.parse_args(argv)
    if os.environ.get("DATABASE_URL"):
        parser.error("the bench restarts PostgreSQL: run it on the embedded server (DATABASE_URL unset)")
    end = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    world = generate_world(SIZES[args.size], end)
    first, nights = end - timedelta(days=len(CASES)), [end - timedelta(days=d) for d in range(len(CASES) - 1, -1, -1)]
    backfill_night = first - timedelta(days=3)
    conf = {"user_shards": args.shards}
    started = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp, (SeaweedS3(Path(tmp) / "seaweedfs") if args.store == "s3"
                                                          else contextlib.nullcontext()) as s3:
        home = Path(tmp)

        def run_root(name: str) -> tuple[str, dict, object]:
            if s3 is None:
                return str(home / name / "runs"), {}, open_store(home / name / "runs")
            connection = {"conn_type": "aws", "login": s3.key, "password": s3.secret,
                          "extra": {"endpoint_url": s3.endpoint_url}}
            return (f"{s3.url}/{name}", {f"AIRFLOW_CONN_{RUN_STORE_CONN_ID.upper()}": json.dumps(connection)},
                    open_store(f"{s3.url}/{name}", s3.storage_options))

        # The undisturbed reference: the same nights in the same order, the backfill night last.
        with scratch_database("bench_chaos_ref") as recs, scratch_database("airflow_bench_chaos_ref") as meta:
            apply_migrations(recs)
            with psycopg.connect(recs) as conn:
                seed_world(conn, world)
            root, env, _ = run_root("reference")
            reference = {}
            with stack(recs, meta, home / "reference", root, env, supervise=False) as scheduler:
                chaos = Chaos(scheduler, recs, conf, backfill_night)
                for night in [first, *nights, backfill_night]:
                    reference[night] = chaos.night(night, "reference")
                    print(f"reference night {night:%Y-%m-%d}: {reference[night]['state']} "
                          f"in {reference[night]['seconds']:.0f} s", flush=True)
            reference_rows, reference_serving = published_digests(recs), serving(recs)

        with scratch_database("bench_chaos") as recs, scratch_database("airflow_bench_chaos") as meta:
            apply_migrations(recs)
            with psycopg.connect(recs) as conn:
                seed_world(conn, world)
            root, env, store = run_root("chaos")
            pauses = PauseControl(home / "pauses")
            scheduler = stack(recs, meta, home / "chaos", root, {**env, PAUSE_DIR_ENV: str(pauses.folder)},
                              supervise=True)
            results, reader = [], None
            with scheduler:
                chaos = Chaos(scheduler, recs, conf, backfill_night)
                undisturbed = chaos.night(first, "chaos")
                print(f"first night {first:%Y-%m-%d} (undisturbed): {undisturbed['state']} in "
                      f"{undisturbed['seconds']:.0f} s", flush=True)
                users, videos = lasting_keys(recs, first)
                reader = Reader(recs, users, videos)
                reader.start()
                caches = [scheduler.worker_cache(name) for name in scheduler.worker_names]
                for case, night in zip(CASES, nights):
                    restarts_before = len(scheduler.restarts)
                    try:
                        result = chaos.case(case, night, pauses)
                    except Exception as exc:  # noqa: BLE001 (the bench reports it and goes on)
                        result = {"state": f"error: {exc}", "seconds": float("nan"), "retried": 0}
                    result["restarts"] = scheduler.restarts[restarts_before:]
                    result["leftovers"] = leftovers(recs, store, caches)
                    results.append((case, night, result))
                    print(f"{case.name}: {result['state']} in {result['seconds']:.0f} s, {result['retried']} task "
                          f"tries retried, restarted {result['restarts'] or 'nothing'}, leftovers "
                          f"{result['leftovers'] or 'none'}", flush=True)
                    if "backfill" in result:
                        print(f"  backfill of {backfill_night:%Y-%m-%d}: {result['backfill']['state']} in "
                              f"{result['backfill']['seconds']:.0f} s, {result['backfill']['overlap']:.0f} s of it "
                              f"beside the nightly", flush=True)
                reader.stop.set()
                reader.join()
            chaos_rows, chaos_serving = published_digests(recs), serving(recs)

    table_rows = []
    for case, night, result in results:
        keys = [k for k in reference_rows if k[1] == str(night) or
                (case.act is start_backfill and k[1] == str(backfill_night))]
        published = {k for k in chaos_rows if k[1] == str(night) or
                     (case.act is start_backfill and k[1] == str(backfill_night))}
        equal = bool(keys) and published == set(keys) and all(chaos_rows[k] == reference_rows[k] for k in keys)
        result["equal"] = equal
        table_rows.append((case, night, result))
    print(f"\n{'case':<36} {'night':<11} {'state':<8} {'DAG run s':>9} {'retried':>7} {'rows equal':>10} "
          f"{'leftovers':>9}  restarted by the stack")
    print(f"{'(reference, undisturbed)':<36} {'':<11} {'':<8} "
          f"{sum(r['seconds'] for r in reference.values()) / len(reference):>9.0f} {'':>7} {'':>10} {'':>9}  "
          f"(mean of {len(reference)} nights)")
    for case, night, result in table_rows:
        print(f"{case.name:<36} {night:%Y-%m-%d}  {result['state'][:8]:<8} {result['seconds']:>9.0f} "
              f"{result['retried']:>7} {'yes' if result['equal'] else 'no':>10} {len(result['leftovers']):>9}  "
              f"{', '.join(result['restarts']) or '-'}")
    stats = reader.stats if reader else ReaderStats()
    print(f"readers: {stats.queries} queries, {stats.bad_reads} bad reads, {stats.refused} refused while "
          f"PostgreSQL restarted; serving at the end {'equals' if chaos_serving == reference_serving else 'DIFFERS from'} "
          f"the reference")
    for problem in stats.problems:
        print(f"  bad read: {problem}")
    print("Airflow settings ([scheduler]): " + ", ".join(f"{k.split('__')[-1].lower()} {v}" for k, v in QUICK_RECOVERY.items()))
    print(f"(size {args.size}, run files on {args.store}, load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores, {time.perf_counter() - started:.0f} s)")
    n = len(table_rows)
    succeeded = sum(r["state"] == "success" for _, _, r in table_rows)
    equal = sum(r["equal"] for _, _, r in table_rows)
    left = sum(len(r["leftovers"]) for _, _, r in table_rows)
    print(f"chaos: cases {n}, runs succeeded {succeeded}/{n}, rows equal {equal}/{n}, reader queries {stats.queries}, "
          f"bad reads {stats.bad_reads}, leftovers {left}")


if __name__ == "__main__":
    main()
