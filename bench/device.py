"""The three models trained, evaluated and scored on the device PyTorch picks (``cuda`` when present),
on an in-memory synthetic world: no PostgreSQL, no Airflow, only numpy, scipy and torch. Prepared for
a machine with a GPU, where the CUDA paths of training and top-N run; here it runs on the CPU.

    python -m bench.device [--size M]

Per step seconds: building the Dataset, each model's fit (early stopping on a validation split, as
the nightly's train task; epochs run), its holdout NDCG@10 (full ranking), top-``top_n`` for every
user and (dot-product models) similar videos for every video. Last line:
    device: <name>, size <S>, train s mf=<a> neumf=<b> two_tower=<c>, top-N s mf=<d> neumf=<e> two_tower=<f>
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from bench.worlds import SIZES
from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.synthetic import default_end, generate_world, snapshot_of
from rec_models.evaluation import evaluate_model
from rec_models.models import build_model
from rec_models.names import MODEL_NAMES
from rec_models.topn import pick_device



def _timed(work):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def _drain(blocks) -> int:
    return sum(len(block.queries) for block in blocks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=tuple(SIZES), default="M")
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    args = parser.parse_args(argv)
    device = pick_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    print(f"python {platform.python_version()}, torch {torch.__version__}, device {name}", flush=True)
    config = PipelineConfig.from_params({"tasks_per_machine": 1})
    seconds, world = _timed(lambda: generate_world(SIZES[args.size], default_end()))
    print(f"{'generate world':<28} {seconds:8.1f} s", flush=True)
    seconds, data = _timed(lambda: Dataset.from_snapshot(snapshot_of(world)))
    print(f"{'Dataset':<28} {seconds:8.1f} s  ({data.n_users:,} users, {data.n_videos:,} videos, "
          f"{data.n_views:,} views)", flush=True)
    holdout, validation = data.holdout(config.holdout_days), data.validation(config.holdout_days)
    everyone = np.arange(data.n_users)
    train_s, topn_s = {}, {}
    for model_name in args.models.split(","):
        model = build_model(model_name, config)
        train_s[model_name], report = _timed(
            lambda: model.fit(data, before=validation.boundary, validation=validation))
        print(f"{'train ' + model_name:<28} {train_s[model_name]:8.1f} s  ({report.epochs} epochs, best "
              f"{report.best_epoch})", flush=True)
        seconds, metrics = _timed(lambda: evaluate_model(model, data, holdout.train, holdout.test, holdout.test_users))
        print(f"{'evaluate ' + model_name:<28} {seconds:8.1f} s  (holdout NDCG@10 {metrics.ndcg:.4f})", flush=True)
        topn_s[model_name], users = _timed(lambda: _drain(model.recommend(data, everyone, config.top_n,
                                                                          seen=holdout.train)))
        print(f"{'top-N users ' + model_name:<28} {topn_s[model_name]:8.1f} s  ({users:,} users)", flush=True)
        if model.finds_similar_videos:
            seconds, videos = _timed(lambda: _drain(model.similar_items(np.arange(data.n_videos), config.top_n)))
            print(f"{'similar videos ' + model_name:<28} {seconds:8.1f} s  ({videos:,} videos)", flush=True)
    print(f"device: {name}, size {args.size}, train s " + " ".join(f"{m}={s:.1f}" for m, s in train_s.items())
          + ", top-N s " + " ".join(f"{m}={s:.1f}" for m, s in topn_s.items()))


if __name__ == "__main__":
    main()
