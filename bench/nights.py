"""Night after night through Airflow's own scheduler: an evolving world seeded one day at a time,
each night then run by the scheduler and LocalExecutor (a triggered run for that one data interval),
once with ``train_mode=full`` and once with ``train_mode=warm`` on the same world.

    python -m bench.nights [--size S|M|L] [--nights N] [--modes full,warm] [--fresh]   (make bench-nights)

Each mode has its own recommendations and Airflow databases (kept, so an interrupted bench resumes at
the first night without a saved result; --fresh starts the modes run over) and its results in
var/bench-nights/<SIZE>/<mode>/night_NN.json. One row per night, mode and model: the interval's
views, train seconds, the DAG run's seconds, holdout NDCG@10, next-day NDCG@10 (the lists that served
during the interval, against its new views, every listed user: hot, warm and cold), churn against the
model's previous run, and the gate's decision. Bad nights are scripted by the world (a burst of
malformed rows, a re-delivered day, a day whose views come a day late, a day without views): a night
that keeps serving is one whose DAG run ends as it should (trained on the quarantined data, or failed
visibly at the data check with the reason recorded) with serving never left empty. Then each mode's
last night that published is cleared and runs again, as an operator would: its published rows
(per output table, scores to 4 decimals) and lineage (mode, parent) before and after. The last line:
    nights: <N> size <S|M>, warm/full train time <r>x, next-day NDCG@10 warm=<a> full=<b>, bad nights <kept>/<scripted> kept serving
where r = full's train seconds / warm's, summed over every night (forced full retrains included),
and a, b the mean next-day NDCG@10 of the serving run over the nights measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from bench.worlds import SIZES
from rec_models.config import PROJECT_ROOT
from rec_models.data.evolving import EvolvingSpec, generate_evolving, last_night_end, scripted_bad_nights
from rec_models.data.seed import seed_days
from rec_models.db.connect import ensure_database, resolve_database_url, with_database
from rec_models.db.migrate import apply_migrations
from rec_models.db.outputs import night_digests
from rec_models.names import MODEL_NAMES
from rec_models.run import run_folder
from rec_models.stack.scheduler import LocalScheduler

OUT = PROJECT_ROOT / "var" / "bench-nights"
# L: a few nights (a full night there takes most of an hour on 2 cores), e.g. --modes warm for the
# night seconds of warm nights next to the first, full one.
DEFAULT_NIGHTS = {"S": 14, "M": 7, "L": 4}


def world_for(size: str, nights: int, last_end):
    return generate_evolving(EvolvingSpec(world=SIZES[size], nights=nights, bad_nights=scripted_bad_nights(nights)),
                             last_end)


def run_mode(world, size: str, mode: str, fresh: bool, conf: dict, rerun: bool = True) -> None:
    server = resolve_database_url("postgres")
    names = {"recs": f"bench_nights_{size}_{mode}".lower(), "meta": f"airflow_bench_nights_{size}_{mode}".lower()}
    folder = OUT / size / mode
    if fresh or not list(folder.glob("night_*.json")):  # nothing saved: no database of another world survives
        shutil.rmtree(folder, ignore_errors=True)
        with psycopg.connect(server, autocommit=True) as conn:
            for name in names.values():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    for name in names.values():
        ensure_database(server, name)
    recs, meta = with_database(server, names["recs"]), with_database(server, names["meta"])
    apply_migrations(recs)
    folder.mkdir(parents=True, exist_ok=True)
    pending = [n for n in range(1, world.spec.nights + 1) if not (folder / f"night_{n:02d}.json").exists()]
    for night in sorted(set(range(1, world.spec.nights + 1)) - set(pending)):  # resumed: the saved nights first
        path = folder / f"night_{night:02d}.json"
        record = json.loads(path.read_text())
        if any("segments" not in nd for nd in record["next_day"].values()):  # saved by an older bench
            with psycopg.connect(recs) as conn:
                record["next_day"] = _next_day(conn, world.night_end(night))
            path.write_text(json.dumps(record, indent=1, default=str))
        _print_night(mode, record)
    rerun_file = folder / "rerun.json"
    if pending or (rerun and not rerun_file.exists()):
        with LocalScheduler(recs, meta, folder / "airflow", folder / "runs") as scheduler:
            for night in pending:
                with psycopg.connect(recs) as conn:
                    seed_days(conn, world, night, replace_foreign=True)
                    serving_before = dict(conn.execute("SELECT output_name, model_run_id FROM rec.serving").fetchall())
                run_id = f"bench_{mode}_{night:02d}"
                state = scheduler.wait(scheduler.trigger(world.night_end(night), {**conf, "train_mode": mode}, run_id),
                                       timeout=4 * 3600)
                record = _night_record(recs, world, night, state, scheduler.run_seconds(run_id),
                                       scheduler.task_states(run_id), serving_before)
                record.update(_night_costs(recs, folder / "runs", world.night_end(night),
                                           scheduler.task_spans(run_id), record["seconds"]))
                (folder / f"night_{night:02d}.json").write_text(json.dumps(record, indent=1, default=str))
                _print_night(mode, record)
            if rerun:
                rerun_file.write_text(json.dumps(_rerun(scheduler, recs, world, mode, folder), indent=1, default=str))


def _rerun(scheduler: LocalScheduler, recs: str, world, mode: str, folder: Path) -> dict:
    """The last night that published, cleared and run again as an operator would: its runs' lineage
    and rows (each output table's count and digest) before and after."""
    night = max(n for n in range(1, world.spec.nights + 1)
                if any(m["status"] == "published" for m in
                       json.loads((folder / f"night_{n:02d}.json").read_text())["models"].values()))
    end, run_id = world.night_end(night), f"bench_{mode}_{night:02d}"

    def published():
        with psycopg.connect(recs) as conn:
            return night_digests(conn, end)

    before = published()
    started = time.perf_counter()
    scheduler.clear(run_id)
    state = scheduler.wait(run_id, timeout=4 * 3600)
    after = published()
    equal = sorted(m for m in before if before[m] == after.get(m))
    print(f"rerun of night {night} ({mode}): {state} in {time.perf_counter() - started:.0f} s, rows and lineage "
          f"equal for {len(equal)}/{len(before)} models" + (f" (differ: {sorted(set(before) - set(equal))})"
                                                            if len(equal) < len(before) else ""), flush=True)
    return {"night": night, "state": state, "models": sorted(before), "equal": equal, "before": before, "after": after}


def _night_record(recs, world, night, state, seconds, tasks, serving_before) -> dict:
    end = world.night_end(night)
    with psycopg.connect(recs) as conn:
        check = conn.execute("SELECT views_in_interval, trained, reason FROM rec.night_checks WHERE run_key = %s",
                             (end.isoformat(),)).fetchone()
        models = {}
        for name, run_id, mode, status, reason, ndcg, train_s, churn in conn.execute(
                "SELECT m.model_name, m.model_run_id, m.train_mode, m.status, m.status_reason, "
                "(m.metrics->>'ndcg@10')::float8, (m.timings->>'train_seconds')::float8, h.churn "
                "FROM rec.model_runs m LEFT JOIN rec.run_health h USING (model_run_id) WHERE m.data_interval_end = %s",
                (end,)).fetchall():
            models[name] = {"model_run_id": run_id, "train_mode": mode, "status": status, "reason": reason,
                            "holdout_ndcg": ndcg, "train_seconds": train_s, "churn": churn}
        next_day = _next_day(conn, end)
        serving_after = dict(conn.execute("SELECT output_name, model_run_id FROM rec.serving").fetchall())
        rejected = conn.execute("SELECT count(*) FROM rec.rejected_rows WHERE run_key = %s",
                                (end.isoformat(),)).fetchone()[0]
    return {"night": night, "end": end, "bad": world.spec.bad_night(night), "state": state, "seconds": seconds,
            "views": check[0] if check else None, "trained": check[1] if check else None,
            "skip_reason": check[2] if check else None, "models": models, "next_day": next_day,
            "serving_before": serving_before, "serving_after": serving_after, "rejected_rows": rejected,
            "failed_tasks": sorted(t for t, s in tasks.items() if s == "failed")}


def _night_costs(recs: str, run_root: Path, end, spans: dict[str, tuple[float, float]], seconds: float) -> dict:
    """Every task's seconds (its tries' span; a mapped task from its first shard's start to its last's
    end), the training phase's wall seconds (first train task's start to the last one's end) and what
    is around it, the night's run folder bytes per part and the database's bytes after the night."""
    train = [span for task, span in spans.items() if task.startswith("train_")]
    train_wall = max(e for _, e in train) - min(s for s, _ in train) if train else 0.0
    with psycopg.connect(recs) as conn:
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    return {"tasks": {task: round(e - s, 1) for task, (s, e) in ordered}, "train_wall": round(train_wall, 1),
            "around_training": round(seconds - train_wall, 1),
            "run_folder_bytes": run_folder(run_root, end).stored_bytes(), "database_bytes": int(database)}


def _next_day(conn, end) -> dict:
    """model -> the run that served before the night, its next-day NDCG@10 over every listed user
    ("model") and per segment ("segments": hot, warm, cold), and its popular list's ("popularity")."""
    next_day = {}
    for name, run_id, ranker, segment, value in conn.execute(
            "SELECT m.model_name, m.model_run_id, n.ranker, n.segment, n.value FROM rec.next_day_metrics n "
            "JOIN rec.model_runs m USING (model_run_id) WHERE n.run_key = %s AND n.metric = 'ndcg@10'",
            (end.isoformat(),)).fetchall():
        entry = next_day.setdefault(name, {"model_run_id": run_id, "segments": {}})
        if segment == "all":
            entry[ranker] = value
        elif ranker == "model":
            entry["segments"][segment] = value
    return next_day


def _print_night(mode: str, r: dict) -> None:
    serving = r["serving_before"].get("user_recommendations")
    for name in MODEL_NAMES:
        m, nd = r["models"].get(name, {}), r["next_day"].get(name, {})
        mark = "*" if serving is not None and nd.get("model_run_id") == serving else " "
        print(f"{r['night']:>5} {mode:<5} {name:<9} {r['views'] if r['views'] is not None else '—':>8} "
              f"{_f(m.get('train_seconds'), 1):>8} {_f(r['seconds'], 0):>7} {_f(m.get('holdout_ndcg')):>8} "
              f"{_f(nd.get('model')):>8}{mark} {_f(nd.get('segments', {}).get('hot')):>6} "
              f"{_f(nd.get('segments', {}).get('warm')):>6} {_f(nd.get('popularity')):>8} {_f(m.get('churn'), 3):>6} "
              f"{(m.get('train_mode') or '—'):<5} {(m.get('status') or r['skip_reason'] or r['state'])[:60]}"
              + (f"  [{r['bad']}]" if r["bad"] else ""), flush=True)
    _print_costs(mode, r)


def _print_costs(mode: str, r: dict) -> None:
    if "tasks" not in r:  # saved by an older bench
        return
    print(f"      {mode} night {r['night']} task seconds: "
          + ", ".join(f"{task} {seconds:.0f}" for task, seconds in r["tasks"].items()), flush=True)
    parts = r["run_folder_bytes"]
    print(f"      {mode} night {r['night']}: {_f(r['seconds'], 0)} s, train {r['train_wall']:.0f} s, around training "
          f"{r['around_training']:.0f} s; run folder {sum(parts.values()) / 1e9:.2f} GB ("
          + ", ".join(f"{part} {size / 1e9:.2f}" for part, size in sorted(parts.items(), key=lambda p: -p[1])
                      if size >= 1e6)
          + f"), database {r['database_bytes'] / 1e9:.2f} GB", flush=True)


def _night_line(size: str, results: list[dict]) -> str | None:
    """The warm nights' mean seconds (training and around it), night 1's (a full retrain: nothing to
    continue from), the warm nights' mean run folder and the database after the last night."""
    warm = [r for r in results if r.get("tasks") and r["state"] == "success" and r["night"] > 1
            and r["models"] and all(m.get("train_mode") == "warm" for m in r["models"].values())]
    first = next((r for r in results if r["night"] == 1 and r.get("tasks")), None)
    if not warm or first is None:
        return None

    def mean(key):
        return sum(r[key] for r in warm) / len(warm)

    folder = sum(sum(r["run_folder_bytes"].values()) for r in warm) / len(warm)
    return (f"{size} night: warm {mean('seconds'):.0f} s (train {mean('train_wall'):.0f} s, around training "
            f"{mean('around_training'):.0f} s), full {first['seconds']:.0f} s, run folder {folder / 1e9:.2f} GB, "
            f"database {results[-1]['database_bytes'] / 1e9:.2f} GB")


def _f(value, digits: int = 4) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def _summary(results: list[dict]) -> dict:
    train = sum(m.get("train_seconds") or 0 for r in results for m in r["models"].values())
    served, ahead, measured = [], 0, 0
    for r in results:
        serving = r["serving_before"].get("user_recommendations")
        for nd in r["next_day"].values():
            if nd.get("model_run_id") == serving and "model" in nd:
                served.append(nd["model"])
                measured += 1
                ahead += nd["model"] > nd.get("popularity", float("inf"))
    kept = 0
    for r in results:
        if not r["bad"]:
            continue
        serving_ok = bool(r["serving_after"]) and (r["state"] == "success" or r["serving_after"] == r["serving_before"])
        if r["bad"] in ("late", "no_views"):
            handled = r["state"] == "failed" and r["trained"] is False and bool(r["skip_reason"])
        else:  # malformed, re-delivered: quarantined with reasons, then trained as any night
            handled = r["state"] == "success" and r["rejected_rows"] > 0
        kept += serving_ok and handled
    return {"train_seconds": train, "next_day": sum(served) / len(served) if served else float("nan"),
            "ahead_of_popularity": f"{ahead}/{measured}", "bad_kept": kept,
            "bad_scripted": sum(1 for r in results if r["bad"])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(DEFAULT_NIGHTS), default="S")
    parser.add_argument("--nights", type=int)
    parser.add_argument("--modes", default="full,warm", help="modes to run (the summary reads every mode saved)")
    parser.add_argument("--fresh", action="store_true", help="drop the saved nights and databases of these modes")
    parser.add_argument("--no-rerun", dest="rerun", action="store_false",
                        help="skip clearing and running again the last published night")
    args = parser.parse_args(argv)
    nights = args.nights or DEFAULT_NIGHTS[args.size]
    if args.size == "M" and nights < 7:
        parser.error("SIZE=M needs at least 7 nights")
    last_end_file = OUT / args.size / "world.json"
    if not last_end_file.exists() or json.loads(last_end_file.read_text())["nights"] != nights:
        shutil.rmtree(OUT / args.size, ignore_errors=True)  # another world: every mode starts over
        last_end_file.parent.mkdir(parents=True, exist_ok=True)
        last_end_file.write_text(json.dumps({"nights": nights, "last_end": last_night_end(datetime.now(timezone.utc)).isoformat()}))
        args.fresh = True
    world = world_for(args.size, nights, datetime.fromisoformat(json.loads(last_end_file.read_text())["last_end"]))
    conf = {"user_shards": 2}
    started = time.perf_counter()
    print("next-day: NDCG@10 of the lists a run served against the views of the day after, over every listed "
          "user, the hot ones, the warm ones (domains only), and the popular list's; * the run serving that day")
    print(f"{'night':>5} {'mode':<5} {'model':<9} {'views':>8} {'train s':>8} {'night s':>7} {'holdout':>8} "
          f"{'next-day':>9} {'hot':>6} {'warm':>6} {'popular':>8} {'churn':>6} {'train':<5} gate")
    for mode in args.modes.split(","):
        run_mode(world, args.size, mode, args.fresh, conf, args.rerun)
    summaries, night_line = {}, None  # every mode with all its nights saved, run now or before
    for mode in ("full", "warm"):
        saved = [OUT / args.size / mode / f"night_{n:02d}.json" for n in range(1, nights + 1)]
        if all(path.exists() for path in saved):
            results = [json.loads(path.read_text()) for path in saved]
            summaries[mode] = _summary(results)
            if mode == "warm":
                night_line = _night_line(args.size, results)
    load = os.getloadavg()[0]
    print(f"\n{'mode':<5} {'train s (all nights)':>21} {'next-day NDCG@10':>17} {'ahead of popular':>17} bad nights kept")
    for mode, s in summaries.items():
        print(f"{mode:<5} {s['train_seconds']:>21.1f} {s['next_day']:>17.4f} {s['ahead_of_popularity']:>17} "
              f"{s['bad_kept']}/{s['bad_scripted']}")
    for mode in summaries:
        rerun_file = OUT / args.size / mode / "rerun.json"
        if rerun_file.exists():
            rerun = json.loads(rerun_file.read_text())
            print(f"{mode:<5} rerun of night {rerun['night']}: {rerun['state']}, rows and lineage equal for "
                  f"{len(rerun['equal'])}/{len(rerun['models'])} models")
    print(f"(load average {load:.2f} on {os.cpu_count()} cores, {time.perf_counter() - started:.0f} s)")
    warm, full = summaries.get("warm"), summaries.get("full")
    if night_line and args.size == "L":  # L's last line: one warm world's nights (MODES=warm)
        if warm and full:
            print(_nights_line(nights, args.size, warm, full))
        print(night_line)
        return
    if night_line:
        print(night_line)
    if warm and full:
        print(_nights_line(nights, args.size, warm, full))


def _nights_line(nights: int, size: str, warm: dict, full: dict) -> str:
    ratio = full["train_seconds"] / max(warm["train_seconds"], 1e-9)
    return (f"nights: {nights} size {size}, warm/full train time {ratio:.1f}x, next-day NDCG@10 "
            f"warm={warm['next_day']:.4f} full={full['next_day']:.4f}, bad nights "
            f"{warm['bad_kept'] + full['bad_kept']}/{warm['bad_scripted'] + full['bad_scripted']} kept serving")


if __name__ == "__main__":
    main()
