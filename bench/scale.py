"""The nightly run at growing sizes: per step wall seconds, rows/s and peak RSS, and a scaling
exponent per step (time ~ rows^e) across the sizes run.

    python -m bench.scale --size S|M|L [--size ...] [--combine]      (make bench-scale SIZE=M)

Each world's figures are saved in var/bench-scale/<SIZE>.json with the commit of the nightly's code
that made them; --combine adds to the table (and the exponents) the saved worlds of the same commit
that were not run this time, so a long L run need not be repeated to fit S-M-L exponents. The last
line is then the largest world's.

Worlds come from the project's generator straight into PostgreSQL (binary COPY), in a scratch
database. Steps are the functions the DAG's tasks call (rec_models.pipeline), in DAG order, each in a
process of its own as Airflow runs tasks, so each step's time and peak RSS can be read. End to end
counts every step including generating and seeding the world; the peak RSS on the last line is the
largest nightly task's (the generator, the benchmark's own setup, is listed on its rows). Last line:
    scale <SIZE>: end-to-end <seconds> s, peak RSS <GiB> GiB
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import resource
import subprocess
import time
from pathlib import Path

import numpy as np

from bench.worlds import SIZES
from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.data.synthetic import default_end, generate_world
from rec_models.db.connect import connect, scratch_database
from rec_models.db.migrate import apply_migrations
from rec_models.run import Run



def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _child(work, pipe) -> None:
    try:
        pipe.send((True, work(), peak_rss_gib()))
    except BaseException as exc:  # report it to the parent, which raises
        pipe.send((False, repr(exc), peak_rss_gib()))
        raise


def in_own_process(work):
    """Run one step in a forked process, as Airflow runs each task in its own: returns (result, that
    process's peak RSS in GiB). Steps hand each other files in the run folder, as tasks do."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(work, send))
    process.start()
    ok, result, rss = receive.recv()
    process.join()
    if not ok or process.exitcode != 0:
        raise RuntimeError(f"step failed (exit code {process.exitcode}): {result}")
    return result, rss


def run(size: str, params: dict) -> dict:
    spec = SIZES[size]
    models = params.pop("models", "mf,neumf,two_tower").split(",")
    rows = spec.n_views + spec.n_domain_visits
    steps: list[dict] = []

    def record(name: str, seconds: float, n_rows: int, rss: float) -> None:
        steps.append({"step": name, "seconds": seconds, "rows": n_rows, "rows_per_s": n_rows / seconds,
                      "peak_rss_gib": rss})
        print(f"  {size} {name:<24} {seconds:8.1f} s {n_rows / seconds:12,.0f} rows/s  peak RSS {rss:.2f} GiB",
              flush=True)

    def step(name: str, work, n_rows: int):
        started = time.perf_counter()
        result, rss = in_own_process(work)
        record(name, time.perf_counter() - started, n_rows, rss)
        return result

    started = time.perf_counter()
    end = default_end()
    with scratch_database("bench_scale") as url:
        apply_migrations(url)

        def generate_and_seed() -> dict:
            t0 = time.perf_counter()
            world = generate_world(spec, end)
            t1 = time.perf_counter()
            with connect(url) as conn:
                seed_world(conn, world)
            return {"generate": t1 - t0, "seed": time.perf_counter() - t1}

        setup, setup_rss = in_own_process(generate_and_seed)
        record("generate", setup["generate"], rows, setup_rss)
        record("seed (COPY)", setup["seed"], rows, setup_rss)
        # One step at a time in this process: each has every core (tasks_per_machine 1) unless told otherwise;
        # every model scored and published, so each model's steps are measured.
        config = dataclasses.replace(PipelineConfig.from_params({"tasks_per_machine": 1, "publish_models": "all",
                                                                 **params}),
                                     run_root=str(Path("var") / "bench-scale" / size))
        ctx = Run(database_url=url, interval_end=end, config=config)
        step("validate", lambda: pipeline.validate(ctx), rows)
        step("extract", lambda: pipeline.extract(ctx), rows)
        step("train_fallbacks", lambda: pipeline.train(ctx, pipeline.FALLBACKS), spec.n_views)
        evaluations = {}
        for model in models:
            step(f"train_{model}", lambda: pipeline.train(ctx, model), spec.n_views)
            evaluations[model] = step(f"evaluate_{model}", lambda: pipeline.evaluate(ctx, model), spec.n_views)
        every_evaluation = list(evaluations.values())
        for model in evaluations:
            step(f"score_{model}", lambda: pipeline.score(ctx, model, every_evaluation), spec.n_users)
            step(f"publish_{model}", lambda: pipeline.publish(ctx, model, every_evaluation), spec.n_users * config.top_n)
        step("choose_serving", lambda: pipeline.choose_serving(ctx, list(evaluations.values())), 1)
    total = time.perf_counter() - started
    nightly_rss = max(x["peak_rss_gib"] for x in steps if x["step"] not in ("generate", "seed (COPY)"))
    training = [training_figures(ctx, model, evaluations[model]) for model in models]
    return {"size": size, "rows": rows, "seconds": total, "peak_rss_gib": nightly_rss, "steps": steps,
            "training": training}


def training_figures(ctx: Run, model: str, evaluation: dict) -> dict:
    """Throughput and time to quality of one model's fit, from the fit report the train task wrote."""
    fit = ctx.files.read_fit(model)
    history = fit["history"]
    best = max(range(len(history)), key=lambda i: history[i].get("validation", float("-inf")))
    rate_key = next(k for k in history[best] if k.endswith("_per_s"))
    return {
        "model": model, "unit": rate_key[: -len("_per_s")],
        "samples_per_s": float(np.median([h[rate_key] for h in history if rate_key in h and "pretrain" not in h])),
        "epochs_run": len(history), "best_epoch": fit["best_epoch"],
        # Wall seconds of training (pretraining stages included) until the epoch that was kept.
        "seconds_to_best": float(sum(h["seconds"] for h in history[: best + 1])),
        "validation_ndcg10": float(history[best]["validation"]),
        "holdout_ndcg10": float(evaluation["ndcg@10"]),
        "train_seconds": fit["train_seconds"],
    }


def _commit() -> str | None:
    """The last commit of the nightly's code (rec_models, dags, sql), or None where the working tree
    differs from it (figures then belong to no commit)."""
    code = ["--", "rec_models", "dags", "sql"]
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%H", *code], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", *code], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return None if dirty else head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", choices=list(SIZES), required=True)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline params, plus models=mf,two_tower (which models to train)")
    parser.add_argument("--combine", action="store_true",
                        help="also tabulate saved worlds of this commit (with no params) not run now")
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.param)
    results = []
    saved = Path("var/bench-scale")
    saved.mkdir(parents=True, exist_ok=True)
    commit = _commit()
    for size in args.size:
        results.append({**run(size, dict(params)), "commit": commit, "params": params})
        # Saved as each world finishes, so a long run's figures survive whatever comes after.
        (saved / f"{size}.json").write_text(json.dumps(results[-1], indent=2, default=float))
    if args.combine and commit and not params:
        for size in SIZES:
            path = saved / f"{size}.json"
            if size not in args.size and path.exists():
                earlier = json.loads(path.read_text())
                if earlier.get("commit") == commit and not earlier.get("params"):
                    print(f"(world {size}: saved by an earlier run of commit {commit[:10]})")
                    results.append(earlier)
        results.sort(key=lambda r: list(SIZES).index(r["size"]))
    names = [s["step"] for s in results[0]["steps"]]
    print(f"\n{'step':<24}" + "".join(f"{r['size'] + ' s':>10}{r['size'] + ' rows/s':>14}" for r in results)
          + ("   exponent" if len(results) > 1 else ""))
    for name in names:
        cells, points = "", []
        for r in results:
            s = next(x for x in r["steps"] if x["step"] == name)
            cells += f"{s['seconds']:>10.1f}{s['rows_per_s']:>14,.0f}"
            points.append((s["rows"], s["seconds"]))
        exponent = ""
        # A step whose rows do not grow with the world (choose_serving: one row) has no exponent.
        if len({p[0] for p in points}) > 1 and all(p[1] > 0 for p in points):
            x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
            exponent = f"{np.polyfit(x, y, 1)[0]:>11.2f}"
        print(f"{name:<24}{cells}{exponent}")
    print(f"\n{'size':<5}{'model':<11}{'samples/s':>12} {'unit':<10}{'epochs':>7}{'best':>5}"
          f"{'s to best':>10}{'train s':>9}{'val NDCG@10':>12}{'holdout NDCG@10':>16}")
    for r in results:
        for t in r["training"]:
            print(f"{r['size']:<5}{t['model']:<11}{t['samples_per_s']:>12,.0f} {t['unit']:<10}{t['epochs_run']:>7}"
                  f"{t['best_epoch']:>5}{t['seconds_to_best']:>10.1f}{t['train_seconds']:>9.1f}"
                  f"{t['validation_ndcg10']:>12.4f}{t['holdout_ndcg10']:>16.4f}")
    last = results[-1]
    print(f"scale {last['size']}: end-to-end {last['seconds']:.0f} s, peak RSS {last['peak_rss_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
