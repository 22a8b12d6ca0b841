"""What NeuMF's user lists cost: the network on every (user, video) pair vs re-ranking the pretrained GMF's
top candidates, on a sample of users of a world ``bench-scale`` already ran.

    python -m bench.neumf_cost [--size M] [--users 2000] [--candidates 200]

Both paths score the same users with the same trained model (the run's serving NeuMF); printed: the
seconds per 1,000 users of each, extrapolated to every user of the world, and the share of the full
scoring's top-N slots the re-ranked lists reproduce. The last line, for scripts:
    neumf rerank: <x.x>x faster, top-<N> agreement <pct>% (users=<n>, candidates=<c>)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from rec_models.names import NEUMF
from rec_models.run import RunFolder
from rec_models.storage import LocalStore
from rec_models.threads import set_torch_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="M")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--top-n", type=int, default=20)
    args = parser.parse_args()
    runs = sorted((Path("var") / "bench-scale" / args.size).glob("*/models/neumf/serve"))
    if not runs:
        raise SystemExit(f"no NeuMF run for world {args.size}: run `make bench-scale SIZE={args.size}` first")
    folder = runs[-1].parents[2]
    files = RunFolder(LocalStore(folder.parent), folder.name)
    data = files.load_dataset()
    threads = set_torch_threads(0, data.n_views)
    model = files.load_model(NEUMF, "serve")
    seen = data.interactions()
    users = np.sort(np.random.default_rng(0).choice(np.flatnonzero(np.diff(seen.indptr) > 0), args.users, replace=False))

    def lists(config) -> tuple[np.ndarray, float]:
        model.config = config
        started = time.perf_counter()
        items = np.vstack([b.items for b in model.recommend(data, users, args.top_n, seen=seen)])
        return items, time.perf_counter() - started

    full_items, full_s = lists(dataclasses.replace(model.config, full_scoring_max_pairs=2**62))
    rerank_items, rerank_s = lists(dataclasses.replace(model.config, full_scoring_max_pairs=0,
                                                       rerank_candidates=args.candidates))
    agreement = np.mean([len(np.intersect1d(a, b)) / args.top_n for a, b in zip(full_items, rerank_items)])
    scale = data.n_users / len(users)
    print(f"world {args.size}: {data.n_users:,} users x {data.n_videos:,} videos, {threads} thread(s), "
          f"sample of {len(users):,} users with views")
    print(f"{'path':<34}{'s per 1k users':>15}{'all users (est.) s':>20}")
    print(f"{'network on every pair':<34}{1000 * full_s / len(users):>15.2f}{full_s * scale:>20.0f}")
    print(f"{f'pretrained-GMF top-{args.candidates} re-ranked':<34}{1000 * rerank_s / len(users):>15.2f}"
          f"{rerank_s * scale:>20.0f}")
    print(f"neumf rerank: {full_s / rerank_s:.1f}x faster, top-{args.top_n} agreement {100 * agreement:.1f}% "
          f"(users={len(users)}, candidates={args.candidates})")


if __name__ == "__main__":
    main()
