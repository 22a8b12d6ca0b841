"""Erasing people during a night under Airflow's scheduler, with a reader on the ``_current`` views.

    python -m bench.erasure [--size M] [--people 1000]   (make bench-erasure)

A synthetic world of SIZE; three nights run by the scheduler (LocalExecutor, local run folders): the
first trains from scratch, the second (warm) is the night without erasure, and before the third
(warm) erasure requests are filed for PEOPLE users with views, so the night's first step erases them.
A reader thread queries the ``_current`` views all along (a mix of erased and other users): a bad read
is a list that is not whole (ranks 1..n of one run), an empty list for a user who is not erased, or any
row of an erased person once their requests are done. After the third night every place is scanned
for the erased ids: each user-list partition and staging table, rejected rows, judged source rows, health
samples, and per run folder the snapshot's views and visits, the Dataset's users, the scored user
parts and each checkpoint's user ids. Upstream's tables still hold the erased people (the product
does not delete from them): the third night must read and publish none of them. The last line:
    erasure: people <n>, places cleaned <p>/<p>, traces found <t>, reader queries <r>, bad reads <b>, night seconds <s> vs <s0> without
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from bench.worlds import SIZES
from rec_models.config import PROJECT_ROOT
from rec_models.data.id_maps import IdMaps
from rec_models.data.seed import seed_world
from rec_models.data.synthetic import generate_world
from rec_models.db.connect import scratch_database
from rec_models.db.migrate import apply_migrations
from rec_models.names import USER_DOMAIN_VISITS, VIDEO_VIEWS, judged_table
from rec_models.run import run_folders
from rec_models.scoring import user_part_name
from rec_models.storage import open_store
from rec_models.stack.scheduler import LocalScheduler

OUT = PROJECT_ROOT / "var" / "bench-erasure"
_USERS = user_part_name(0)[:-4]  # the prefix of the user shards inside a scores folder


@dataclass
class ReaderStats:
    queries: int = 0
    bad_reads: int = 0
    problems: list[str] = field(default_factory=list)


class Reader(threading.Thread):
    """A service reading lists: one user a query, erased or not, checking each answer."""

    def __init__(self, url: str, kept: list[int], erased: list[int]):
        super().__init__(daemon=True)
        self.url, self.kept, self.erased = url, kept, erased
        self.stats, self.stop, self.erasure_done = ReaderStats(), threading.Event(), threading.Event()

    def run(self) -> None:
        rng = random.Random(5)
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                erased = rng.random() < 0.3
                user = rng.choice(self.erased if erased else self.kept)
                done_before = self.erasure_done.is_set()
                rows = conn.execute("SELECT model_run_id, rank FROM rec.user_recommendations_current WHERE user_id = %s "
                                    "ORDER BY rank", (user,)).fetchall()
                self.stats.queries += 1
                whole = len({r[0] for r in rows}) <= 1 and [r[1] for r in rows] == list(range(1, len(rows) + 1))
                bad = (not whole) or (not erased and not rows) or (erased and done_before and rows)
                if bad:
                    self.stats.bad_reads += 1
                    if len(self.stats.problems) < 10:
                        self.stats.problems.append(f"user {user} (erased={erased}, done={done_before}): {rows[:3]}")
                time.sleep(0.02)


def scan(url: str, run_root: Path, erased: np.ndarray) -> dict[str, int]:
    """place -> traces of the erased people found there."""
    found: dict[str, int] = {}
    ids = [int(u) for u in erased]
    with psycopg.connect(url) as conn:
        for (table,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'rec'::regnamespace AND relkind = 'r' AND ("
                "relname LIKE 'user\\_recommendations\\_%%' OR relname = ANY(%s)) ORDER BY 1",
                ([judged_table(VIDEO_VIEWS), judged_table(USER_DOMAIN_VISITS)],)).fetchall():
            found[f"table rec.{table}"] = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE user_id = ANY(%s)").format(
                sql.Identifier("rec", table)), (ids,)).fetchone()[0]
        found["table rec.rejected_rows"] = conn.execute(
            "SELECT count(*) FROM rec.rejected_rows WHERE row_data ->> 'user_id' = ANY(%s)",
            ([str(u) for u in ids],)).fetchone()[0]
        found["health samples"] = conn.execute(
            "SELECT count(*) FROM rec.run_health h, jsonb_each_text(h.sample_users) s WHERE s.value::int8 = ANY(%s)",
            (ids,)).fetchone()[0]
    for folder in run_folders(open_store(run_root)):
        root = run_root / folder.slug
        arrays = {"snapshot views": (root / "snapshot" / "views.npz", "user"),
                  "snapshot visits": (root / "snapshot" / "visits.npz", "user"),
                  "dataset users": (root / "dataset" / "arrays.npz", "user_ids")}
        for label, (path, name) in arrays.items():
            if path.exists():
                with np.load(path) as loaded:
                    found[f"{folder.slug} {label}"] = int(np.isin(loaded[name], erased).sum())
        for part in sorted((root / "outputs").glob(f"*/{_USERS}*/*.npz")):
            with np.load(part) as loaded:
                found[f"{folder.slug} scores {part.parent.parent.name}"] = found.get(
                    f"{folder.slug} scores {part.parent.parent.name}", 0) + int(np.isin(loaded["group"], erased).sum())
        for checkpoint in sorted((root / "checkpoints").glob("*/ids.npz")):
            found[f"{folder.slug} checkpoint {checkpoint.parent.name}"] = int(
                np.isin(IdMaps.load(checkpoint).user, erased).sum())
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="M")
    parser.add_argument("--people", type=int, default=1000)
    args = parser.parse_args(argv)
    end = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    world = generate_world(SIZES[args.size], end)
    nights = [end - timedelta(days=d) for d in (2, 1, 0)]
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    erased = np.sort(rng.choice(np.unique(world.view_user), size=args.people, replace=False))
    with tempfile.TemporaryDirectory(dir=OUT) as tmp, scratch_database("bench_erasure") as recs, \
            scratch_database("airflow_bench_erasure") as meta:
        apply_migrations(recs)
        with psycopg.connect(recs) as conn:
            seed_world(conn, world)
        run_root = Path(tmp) / "runs"
        seconds, tasks = {}, {}
        with LocalScheduler(recs, meta, Path(tmp) / "airflow", run_root) as scheduler:
            reader = None
            for i, night in enumerate(nights):
                run_id = f"bench_erasure_{i}"
                if i == 2:
                    with psycopg.connect(recs) as conn:
                        kept = [r[0] for r in conn.execute(
                            "SELECT DISTINCT user_id FROM rec.user_recommendations_current WHERE rank = 1 "
                            "AND user_id <> ALL(%s) LIMIT 5000", ([int(u) for u in erased],)).fetchall()]
                        conn.execute("INSERT INTO rec.erasure_requests (user_id, requested_by) "
                                     "SELECT u, 'bench' FROM unnest(%s::int8[]) u", ([int(u) for u in erased],))
                        conn.commit()
                    reader = Reader(recs, kept, [int(u) for u in erased])
                    reader.start()
                started = time.perf_counter()
                scheduler.trigger(night, {}, run_id)
                if reader is not None:
                    watcher = threading.Thread(target=_watch_done, args=(recs, reader), daemon=True)
                    watcher.start()
                state = scheduler.wait(run_id, timeout=4 * 3600)
                seconds[i] = scheduler.run_seconds(run_id)
                tasks[i] = scheduler.task_seconds(run_id)
                print(f"night {night:%Y-%m-%d} ({'erasure of ' + str(args.people) if i == 2 else 'no erasure'}): "
                      f"{state} in {seconds[i]:.0f} s (wall {time.perf_counter() - started:.0f} s)", flush=True)
                if state != "success":
                    raise SystemExit(f"night {night} ended {state}: see {scheduler.home}")
            time.sleep(1)
            reader.stop.set()
            reader.join()
        with psycopg.connect(recs) as conn:
            done, open_ = conn.execute("SELECT count(*) FILTER (WHERE done_at IS NOT NULL), "
                                       "count(*) FILTER (WHERE done_at IS NULL) FROM rec.erasure_requests").fetchone()
            removed = conn.execute("SELECT key, sum(value::int8) FROM rec.erasure_requests, jsonb_each_text(removed) "
                                   "GROUP BY key ORDER BY key").fetchall()
            withheld_lists = conn.execute("SELECT count(*) FROM rec.user_recommendations_current WHERE user_id = ANY(%s)",
                                          ([int(u) for u in erased],)).fetchone()[0]
        found = scan(recs, run_root, erased)
    print(f"requests done {done}, open {open_}; removed per place:")
    for place, count in removed:
        print(f"  {place:52s} {count:>10,}")
    print(f"erase_personal_data task: {tasks[2].get('erase_personal_data', float('nan')):.1f} s; "
          f"the night without erasure's: {tasks[1].get('erase_personal_data', float('nan')):.1f} s")
    print(f"places scanned {len(found)}; with traces: {[p for p, n in found.items() if n] or 'none'}; "
          f"erased people's rows in the served lists after the night: {withheld_lists}")
    for problem in reader.stats.problems:
        print("bad read:", problem)
    clean = sum(1 for n in found.values() if n == 0)
    print(f"erasure: people {args.people}, places cleaned {clean}/{len(found)}, traces found {sum(found.values())}, "
          f"reader queries {reader.stats.queries}, bad reads {reader.stats.bad_reads}, "
          f"night seconds {seconds[2]:.0f} vs {seconds[1]:.0f} without")


def _watch_done(url: str, reader: Reader) -> None:
    """Tell the reader when every request is done (from then on an erased person's list is a bad read)."""
    with psycopg.connect(url, autocommit=True) as conn:
        while not reader.stop.is_set():
            if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM rec.erasure_requests WHERE done_at IS NULL)").fetchone()[0]:
                reader.erasure_done.set()
                return
            time.sleep(0.2)


if __name__ == "__main__":
    main()
