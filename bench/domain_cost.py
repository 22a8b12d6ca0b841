"""What the domain model (``DomainRidge``) costs to train and serve at a size: seconds and peak memory
of its fit on every view, and of the user vectors of every domain-only-scored user.

    python -m bench.domain_cost [--size M|L] [--domains-per-topic N]        (make bench-domain-cost)

The worlds of ``bench.worlds`` have about a hundred domains; ``--domains-per-topic`` widens the world's
vocabulary of domains (default 2,500 a topic: 20,000 distinct domains with 8 topics), so the
domains x domains solve is measured at the size ``domain_max_domains`` allows. Last line:
    domain model: size <S>, users <u>, videos <v>, domains <d>, fit <f> s, user vectors <s> s, peak RSS <g> GiB
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from dataclasses import replace

import numpy as np

from bench.worlds import SIZES
from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.synthetic import default_end, generate_world, snapshot_of
from rec_models.models import build_domain_model
from rec_models.threads import set_torch_threads


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="L")
    parser.add_argument("--domains-per-topic", type=int, default=2500)
    args = parser.parse_args()
    set_torch_threads(0)
    spec = replace(SIZES[args.size], domains_per_topic=args.domains_per_topic)
    started = time.perf_counter()
    data = Dataset.from_snapshot(snapshot_of(generate_world(spec, default_end())))
    print(f"world {args.size}: {data.n_users:,} users, {data.n_videos:,} videos, {data.n_views:,} views, "
          f"{len(data.feature_rows):,} domain-days, {data.user_features.shape[1]:,} domains; built in "
          f"{time.perf_counter() - started:.0f} s, peak RSS {peak_rss_gib():.2f} GiB", flush=True)
    model = build_domain_model(PipelineConfig())
    started = time.perf_counter()
    model.fit(data)
    fit_s = time.perf_counter() - started
    print(f"fit: {fit_s:.1f} s, {len(model.domain_rows):,} domains learned, rank {model.video_vectors.shape[1]}, "
          f"peak RSS {peak_rss_gib():.2f} GiB", flush=True)
    started = time.perf_counter()
    users = np.arange(data.n_users)
    for start in range(0, len(users), 65_536):
        model.user_vectors(data, users[start:start + 65_536])
    vectors_s = time.perf_counter() - started
    print(f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    print(f"domain model: size {args.size}, users {data.n_users}, videos {data.n_videos}, domains "
          f"{len(model.domain_rows)}, fit {fit_s:.1f} s, user vectors {vectors_s:.1f} s, peak RSS {peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
