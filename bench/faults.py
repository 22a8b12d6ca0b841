"""Reliability, measured: bad input quarantined, faults injected at every task boundary and inside
publish, and readers hammering the _current views while runs publish.

    python -m bench.faults            (make bench-faults)

Last line, for scripts:
    faults: bad-input classes <n>, quarantined <q>/<injected>, fault points <f> survived <s>, reader queries <r>, bad reads <b>
Tests call the same functions on smaller settings (tests/db/test_faults.py, tests/db/test_readers.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.data.rules import SERVICE_START
from rec_models.data.synthetic import WorldSpec, generate_world
from rec_models.data.validate import validate_sources
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import OUTPUTS
from rec_models.db.publish import point_serving
from rec_models.faults import AFTER_SERVING, ERASURE_POINTS, POINTS, InjectedFault
from rec_models.run import Run

log = logging.getLogger("bench.faults")

BAD_ROWS_DAY = DAY = "2026-11-20"

# (table, reason, SQL that inserts exactly `count` rows breaking only that rule)
BAD_ROWS = [
    ("video_views", "user_id null or non-positive",
     f"INSERT INTO video_views VALUES (NULL, {{v}}, '{DAY}', 10), (-4, {{v}}, '{DAY}', 10)", 2),
    ("video_views", "video_id null or non-positive", f"INSERT INTO video_views VALUES ({{u}}, 0, '{DAY}', 10)", 1),
    ("video_views", "viewed_at missing", "INSERT INTO video_views VALUES ({u}, {v}, NULL, 10)", 1),
    ("video_views", "viewed_at before the service existed", "INSERT INTO video_views VALUES ({u}, {v}, '1999-01-01', 10)", 1),
    ("video_views", "watch_seconds missing or negative", f"INSERT INTO video_views VALUES ({{u}}, {{v}}, '{DAY}', -3)", 1),
    ("video_views", "watch_seconds absurd", f"INSERT INTO video_views VALUES ({{u}}, {{v}}, '{DAY}', 999999)", 1),
    ("video_views", "view of an unknown video", f"INSERT INTO video_views VALUES ({{u}}, 987654321, '{DAY}', 10)", 1),
    ("video_views", "duplicate row",
     f"INSERT INTO video_views VALUES ({{u}}, {{v}}, '{DAY} 10:00', 10), ({{u}}, {{v}}, '{DAY} 10:00', 10)", 1),
    ("user_domain_visits", "empty domain", f"INSERT INTO user_domain_visits VALUES ({{u}}, '  ', '{DAY}', 2)", 1),
    ("user_domain_visits", "domain is not a hostname",
     f"INSERT INTO user_domain_visits VALUES ({{u}}, 'not a domain!', '{DAY}', 2), ({{u}}, 'localhost', '{DAY}', 2)", 2),
    ("user_domain_visits", "domain too long",
     f"INSERT INTO user_domain_visits VALUES ({{u}}, repeat('a', 260) || '.com', '{DAY}', 2)", 1),
    ("user_domain_visits", "visits missing or non-positive", f"INSERT INTO user_domain_visits VALUES ({{u}}, 'ok-site.com', '{DAY}', 0)", 1),
    ("user_domain_visits", "visits absurd", f"INSERT INTO user_domain_visits VALUES ({{u}}, 'ok-site2.com', '{DAY}', 5000000)", 1),
    ("user_domain_visits", "bot: too many distinct domains in a day",
     f"INSERT INTO user_domain_visits SELECT 999, 'bot' || g || '.com', '{DAY}', 1 FROM generate_series(1, 250) g", 250),
    ("videos", "empty title", "INSERT INTO videos (video_id, title, is_active) VALUES (424242, '   ', true)", 1),
]




def inject_bad_rows(conn: psycopg.Connection, user_id: int, video_id: int) -> int:
    """Insert every BAD_ROWS example; returns the number of rows that must be quarantined."""
    for _, _, statement, _ in BAD_ROWS:
        conn.execute(statement.format(u=user_id, v=video_id))
    conn.commit()
    return sum(count for *_, count in BAD_ROWS)


def bad_input_check(url: str, world) -> tuple[int, int, int]:
    """(classes tried, rows quarantined for them, rows injected) on a freshly seeded database."""
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, world)
        injected = inject_bad_rows(conn, int(world.view_user[0]), int(world.view_video[0]))
        reports = validate_sources(conn, "bench-faults", world.end, world.end - timedelta(days=180),
                                   SERVICE_START, max_rejected_share=0.5)
    reasons = {(t, r) for t, r, _, n in BAD_ROWS if n}
    quarantined = sum(reports[t].by_reason.get(r, 0) for t, r in reasons)
    return len({(t, r) for t, r, _, _ in BAD_ROWS}), quarantined, injected


@dataclass
class FaultReport:
    tried: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _served(conn) -> dict[str, tuple[int, int, int]]:
    """Per output view: (distinct runs, rows, serving run id)."""
    out = {}
    for name in OUTPUTS:
        runs, rows = conn.execute(f"SELECT count(DISTINCT model_run_id), count(*) FROM rec.{name}_current").fetchone()
        serving = conn.execute("SELECT model_run_id FROM rec.serving WHERE output_name = %s", (name,)).fetchone()
        out[name] = (runs, rows, serving[0] if serving else None)
    return out


def _leftovers(conn) -> int:
    return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'rec' AND tablename LIKE '%%_stage_%%'").fetchone()[0]


def fault_check(url: str, world, config: PipelineConfig,
                points=tuple(p for p in POINTS if p not in AFTER_SERVING + ERASURE_POINTS), restart=None) -> FaultReport:
    """Publish run A (the day before), then for each point before B serves: roll serving back to A, run
    B with a fault there, check readers still see A whole, rerun B without it, check B is served exactly once.

    restart: optional callable that restarts the database server (tested between two tasks).
    """
    report = FaultReport()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, world)
    ctx_a = Run(database_url=url, interval_end=world.end - timedelta(days=1), config=config)
    ctx_b = Run(database_url=url, interval_end=world.end, config=config)
    models = ("mf",)
    run_a = pipeline.run_all(ctx_a, models)["model_run_id"]
    with psycopg.connect(url) as conn:
        served_a = _served(conn)
    for point in [*points, *(["db:restart_between_tasks"] if restart else [])]:
        report.tried.append(point)
        with psycopg.connect(url) as conn:
            point_serving(conn, run_a, list(OUTPUTS.values()), allow_older=True)  # a rollback to A
        try:
            if point == "db:restart_between_tasks":
                pipeline.migrate(ctx_b)
                pipeline.validate(ctx_b)
                restart()
                pipeline.extract(ctx_b)  # a new task, a new connection: the restart is invisible
            else:
                os.environ["RECS_FAULTS"] = point
                try:
                    pipeline.run_all(ctx_b, models)
                    report.problems.append(f"{point}: no fault was raised")
                    continue
                except InjectedFault:
                    pass
        finally:
            os.environ.pop("RECS_FAULTS", None)
        with psycopg.connect(url) as conn:
            if _served(conn) != served_a:
                report.problems.append(f"{point}: readers did not see run A whole during the failure")
                continue
        result = pipeline.run_all(ctx_b, models)  # the retry / rerun
        with psycopg.connect(url) as conn:
            served = _served(conn)
            b_runs = conn.execute("SELECT count(*) FROM rec.model_runs WHERE run_key = %s", (ctx_b.run_key,)).fetchone()[0]
            parts = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhrelid::regclass::text LIKE %s",
                                 (f"rec.%_r{result['model_run_id']}",)).fetchone()[0]
            ok = (all(runs == 1 and serving == result["model_run_id"] for runs, _, serving in served.values())
                  and b_runs == len(models) and parts == len(OUTPUTS) and _leftovers(conn) == 0)
        if ok:
            report.survived.append(point)
        else:
            report.problems.append(f"{point}: after the rerun: served {served}, runs {b_runs}, partitions {parts}")
    return report


@dataclass
class ReaderReport:
    queries: int = 0
    bad_reads: int = 0
    max_stall_s: float = 0.0
    long_reader_s: float = 0.0
    publishes: int = 0
    problems: list[str] = field(default_factory=list)


def readers_check(url: str, world, config: PipelineConfig, publishes: int = 6, readers: int = 2,
                  long_reader_s: float = 3.0) -> ReaderReport:
    """Reader threads (point queries and full scans) run while runs A and B take turns publishing,
    one long reader transaction included; every read must show exactly one complete run."""
    report = ReaderReport(long_reader_s=long_reader_s)
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        seed_world(conn, world)
    contexts = [Run(database_url=url, interval_end=world.end - timedelta(days=d), config=config)
                for d in (1, 0)]
    runs = [pipeline.run_all(ctx, ("mf",)) for ctx in contexts]
    expected: dict[int, int] = {}
    with psycopg.connect(url) as conn:
        for r in runs:
            expected[r["model_run_id"]] = conn.execute(
                "SELECT count(*) FROM rec.user_recommendations WHERE model_run_id = %s", (r["model_run_id"],)).fetchone()[0]
        users = [u for (u,) in conn.execute("SELECT DISTINCT user_id FROM rec.user_recommendations_current")]
    stop = threading.Event()
    lock = threading.Lock()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                started = time.perf_counter()
                bad = False
                if rng.random() < 0.2:
                    rows = conn.execute("SELECT model_run_id, count(*) FROM rec.user_recommendations_current GROUP BY 1").fetchall()
                    bad = len(rows) != 1 or rows[0][1] != expected.get(rows[0][0])
                else:
                    rows = conn.execute("SELECT model_run_id, rank FROM rec.user_recommendations_current WHERE user_id = %s "
                                        "ORDER BY rank", (rng.choice(users),)).fetchall()
                    bad = (not rows or len({r[0] for r in rows}) != 1 or [r[1] for r in rows] != list(range(1, len(rows) + 1)))
                elapsed = time.perf_counter() - started
                with lock:
                    report.queries += 1
                    report.bad_reads += bad
                    report.max_stall_s = max(report.max_stall_s, elapsed)

    def long_reader() -> None:
        with psycopg.connect(url) as conn:  # one transaction holding its locks for long_reader_s
            conn.execute("SELECT count(*) FROM rec.user_recommendations_current").fetchone()
            conn.execute("SELECT pg_sleep(%s)", (long_reader_s,))
            conn.rollback()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    long_thread = threading.Thread(target=long_reader)
    long_thread.start()
    time.sleep(0.2)
    evaluations = {}
    for ctx, r in zip(contexts, runs):
        evaluations[r["model_run_id"]] = {"model": "mf", "model_run_id": r["model_run_id"], "publish": True,
                                          "reason": "bench", "ndcg@10": 0.0, "dot_product": True}
    for i in range(publishes):
        ctx, r = contexts[i % 2], runs[i % 2]
        # Re-publishing replaces the run's partitions (DETACH: the lock a long reader blocks), then
        # the serving pointer moves to it.
        pipeline.publish(ctx, "mf", [evaluations[r["model_run_id"]]])
        with psycopg.connect(url) as conn:
            point_serving(conn, r["model_run_id"], list(OUTPUTS.values()), allow_older=True)
        report.publishes += 1
    long_thread.join()
    stop.set()
    for t in threads:
        t.join()
    # The long reader may stall the publisher (it retries), never the other readers for its length.
    if config.swap_lock_timeout_ms and report.max_stall_s >= long_reader_s * 0.5:
        report.problems.append(f"a reader stalled {report.max_stall_s:.2f} s behind the publish")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--publishes", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s: %(message)s")
    retries = _count_lock_retries()
    from rec_models.db.connect import scratch_database
    from rec_models.db.embedded import restart_embedded_server

    world = generate_world(WorldSpec(n_users=args.users, n_videos=300, n_views=args.users * 20,
                                     n_domain_visits=args.users * 25, seed=5), pipeline_end())
    config = dataclasses.replace(PipelineConfig.from_params({"top_n": 10, "mf_epochs": 5}),
                                 run_root=str(os.path.join("var", "bench-faults")))
    with scratch_database("bench_faults") as url:
        classes, quarantined, injected = bad_input_check(url, world)
    print(f"bad input: {classes} classes, {quarantined} of {injected} injected rows quarantined with their reason")
    restart = None if os.environ.get("DATABASE_URL") else restart_embedded_server
    with scratch_database("bench_faults") as url:
        faults = fault_check(url, world, config, restart=restart)
    print(f"fault points: {len(faults.tried)} tried, {len(faults.survived)} survived: {', '.join(faults.survived)}")
    for problem in faults.problems:
        print(f"  PROBLEM {problem}")
    with scratch_database("bench_faults") as url:
        readers = readers_check(url, world, config, publishes=args.publishes)
    print(f"readers: {readers.queries} queries during {readers.publishes} publishes (one reader held a transaction "
          f"{readers.long_reader_s:.0f} s): {readers.bad_reads} bad reads, worst reader latency {readers.max_stall_s:.3f} s; "
          f"the publisher backed off {retries.count} times (lock_timeout) instead of queueing readers behind it")
    for problem in readers.problems:
        print(f"  PROBLEM {problem}")
    # The control: the same readers with a swap that waits for its locks as long as it takes.
    with scratch_database("bench_faults") as url:
        control = readers_check(url, world, dataclasses.replace(config, swap_lock_timeout_ms=0), publishes=2)
    print(f"control without lock_timeout: worst reader latency {control.max_stall_s:.3f} s behind a "
          f"{control.long_reader_s:.0f} s reader ({control.bad_reads} bad reads)")
    print(f"faults: bad-input classes {classes}, quarantined {quarantined}/{injected}, fault points {len(faults.tried)} "
          f"survived {len(faults.survived)}, reader queries {readers.queries}, bad reads {readers.bad_reads}")


def _count_lock_retries():
    """Counts the publisher's lock_timeout back-offs (logged as warnings by rec_models.db.publish)."""

    class Counter(logging.Handler):
        count = 0

        def emit(self, record: logging.LogRecord) -> None:
            if "waited >" in record.getMessage():
                Counter.count += 1

    handler = Counter(level=logging.WARNING)
    publish_log = logging.getLogger("rec_models.db.publish")
    publish_log.setLevel(logging.WARNING)
    publish_log.propagate = False
    publish_log.addHandler(handler)
    return Counter


def pipeline_end():
    from datetime import datetime, timezone

    return datetime(2026, 11, 27, 2, tzinfo=timezone.utc)


if __name__ == "__main__":
    main()
