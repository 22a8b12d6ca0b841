"""The nightly run at growing sizes: per step wall seconds, rows/s and peak RSS, and a scaling
exponent per step (time ~ rows^e) across the sizes run.

    python -m bench.scale --size S|M|L [--size ...]      (make bench-scale SIZE=M)

Worlds come from the project's generator straight into PostgreSQL (binary COPY), in a scratch
database. Steps are the functions the DAG's tasks call (rec_models.pipeline), in DAG order, in this
process, so each step's time and memory can be read. The last line, for scripts:
    scale <SIZE>: end-to-end <seconds> s, peak RSS <GiB> GiB
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path

import numpy as np

from rec_models import pipeline
from rec_models.config import PipelineConfig
from rec_models.data.seed import seed_world
from rec_models.data.synthetic import WorldSpec, default_end, generate_world
from rec_models.db.connect import connect, scratch_database
from rec_models.db.migrate import apply_migrations

SIZES = {
    "S": WorldSpec(n_users=10_000, n_videos=2_000, n_views=200_000, n_domain_visits=300_000, seed=21),
    "M": WorldSpec(n_users=100_000, n_videos=20_000, n_views=2_000_000, n_domain_visits=3_000_000, seed=22),
    "L": WorldSpec(n_users=1_000_000, n_videos=100_000, n_views=20_000_000, n_domain_visits=30_000_000, seed=23),
}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def run(size: str, params: dict) -> dict:
    spec = SIZES[size]
    models = params.pop("models", "mf,neumf,two_tower").split(",")
    rows = spec.n_views + spec.n_domain_visits
    steps: list[dict] = []

    def step(name: str, work, n_rows: int):
        started = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - started
        steps.append({"step": name, "seconds": seconds, "rows": n_rows, "rows_per_s": n_rows / seconds,
                      "peak_rss_gib": peak_rss_gib()})
        print(f"  {size} {name:<24} {seconds:8.1f} s {n_rows / seconds:12,.0f} rows/s  peak RSS {peak_rss_gib():.2f} GiB",
              flush=True)
        return result

    started = time.perf_counter()
    end = default_end()
    with scratch_database("bench_scale") as url:
        world = step("generate", lambda: generate_world(spec, end), rows)
        apply_migrations(url)
        with connect(url) as conn:
            step("seed (COPY)", lambda w=world: seed_world(conn, w), rows)
        del world
        config = dataclasses.replace(PipelineConfig.from_params(params), run_root=str(Path("var") / "bench-scale" / size))
        ctx = pipeline.RunContext(database_url=url, interval_end=end, config=config)
        step("validate", lambda: pipeline.validate(ctx), rows)
        step("extract", lambda: pipeline.extract(ctx), rows)
        step("train_fallbacks", lambda: pipeline.train(ctx, pipeline.FALLBACKS), spec.n_views)
        evaluations = {}
        for model in models:
            step(f"train_{model}", lambda: pipeline.train(ctx, model), spec.n_views)
            evaluations[model] = step(f"evaluate_{model}", lambda: pipeline.evaluate(ctx, model), spec.n_views)
        for model, evaluation in evaluations.items():
            step(f"score_{model}", lambda: pipeline.score(ctx, model, evaluation, evaluations.get("two_tower")),
                 spec.n_users)
            step(f"publish_{model}", lambda: pipeline.publish(ctx, model, evaluation), spec.n_users * config.top_n)
        step("choose_serving", lambda: pipeline.choose_serving(ctx, list(evaluations.values())), 1)
    total = time.perf_counter() - started
    training = [training_figures(ctx, model, evaluations[model]) for model in models]
    return {"size": size, "rows": rows, "seconds": total, "peak_rss_gib": peak_rss_gib(), "steps": steps,
            "training": training}


def training_figures(ctx: "pipeline.RunContext", model: str, evaluation: dict) -> dict:
    """Throughput and time to quality of one model's fit, from the fit report the train task wrote."""
    fit = json.loads((ctx.model_dir(model, "serve") / "fit.json").read_text())
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", choices=list(SIZES), required=True)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline params, plus models=mf,two_tower (which models to train)")
    args = parser.parse_args()
    params = dict(p.split("=", 1) for p in args.param)
    results = [run(size, dict(params)) for size in args.size]
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
        if len(points) > 1 and all(p[1] > 0 for p in points):
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
    Path("var").mkdir(exist_ok=True)
    Path("var/bench-scale.json").write_text(json.dumps(results, indent=2, default=float))
    last = results[-1]
    print(f"scale {last['size']}: end-to-end {last['seconds']:.0f} s, peak RSS {last['peak_rss_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
