"""Domain-only users on a clean and a noisy synthetic world: how well the two-tower serves a user from
the domains they visit alone, against the same users scored with their views, and against domain
popularity (the fallback for domain-only users).

    python -m bench.domains [--size S|M] [--levels clean,noisy]        (make bench-domains)

Each level's world (``WorldSpec.at_noise``) is split as the nightly run splits it: the models learn
from the views before the validation boundary with the product's settings (PipelineConfig defaults
and any ``--param``),
and are scored on the holdout's users (views in the last ``holdout_days``) who also have views
before it. Recall@10 per user with 95% bootstrap intervals; the p-value is the paired bootstrap over
the same users. "planted" is the generator's own answer, a ceiling for any model: each user's true
topic mix (before any drift) times each video's share of its topic's training views. The last line
is the last level's:
    domains: level <level> size <S|M>, domains-only/with-views Recall@10 <r>, vs domain popularity <+d> p=<p>
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.scale import SIZES
from rec_models.__main__ import config_from_params
from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.synthetic import NOISE_LEVELS, World, default_end, generate_world, snapshot_of
from rec_models.evaluation import evaluate_model
from rec_models.evaluation.bootstrap import confidence_interval, paired_p_value
from rec_models.models import FeaturePopularity, Recommender, build_model
from rec_models.names import TWO_TOWER
from rec_models.threads import set_torch_threads


class PlantedTopics(Recommender):
    """The generator's truth as a dot product: user = true topic mix, video = its share of its
    topic's training views in its topic's column."""

    name = "planted"

    def __init__(self, world: World, data: Dataset, train_views):
        topic = np.zeros(data.n_videos, dtype=np.int64)
        topic[np.searchsorted(data.video_ids, world.video_id)] = world.video_topic
        counts = np.asarray(train_views.sum(axis=0)).ravel() + 0.1
        self.items = np.zeros((data.n_videos, world.spec.n_topics), dtype=np.float32)
        for t in range(world.spec.n_topics):
            mine = topic == t
            self.items[mine, t] = counts[mine] / counts[mine].sum()
        self.users = np.zeros((data.n_users, world.spec.n_topics), dtype=np.float32)
        rows = np.searchsorted(data.user_ids, world.user_id)
        known = (rows < data.n_users) & (data.user_ids[np.minimum(rows, data.n_users - 1)] == world.user_id)
        self.users[rows[known]] = world.user_topic_pref[known]

    def fit(self, data, *, before=None, validation=None, epochs=None):
        raise TypeError("the planted model is the generator's truth: it is not fitted")

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        return self.users[users]

    def item_vectors(self) -> np.ndarray:
        return self.items


def measure(size: str, level: str, config: PipelineConfig) -> dict:
    world = generate_world(SIZES[size].at_noise(level), default_end())
    data = Dataset.from_snapshot(snapshot_of(world))
    holdout = data.holdout(config.holdout_days)
    validation = data.validation(config.holdout_days)
    users = holdout.test_users
    started = time.perf_counter()
    model = build_model(TWO_TOWER, config)
    model.fit(data, before=validation.boundary, validation=validation)
    train_s = time.perf_counter() - started
    domain_popularity = FeaturePopularity()
    domain_popularity.fit(data, before=validation.boundary)

    def recall(m):
        return evaluate_model(m, data, holdout.train, holdout.test, users).per_user_recall

    with_views, domains_only, popular = recall(model), recall(model.features_only()), recall(domain_popularity)
    planted = recall(PlantedTopics(world, data, holdout.train))
    return {"level": level, "users": len(users), "train_s": train_s, "with_views": with_views,
            "domains_only": domains_only, "domain_popularity": popular, "planted": planted,
            "ratio": domains_only.mean() / max(with_views.mean(), 1e-12),
            "p": paired_p_value(domains_only, popular)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["S", "M"], default="S")
    parser.add_argument("--levels", default="clean,noisy", help=f"comma-separated, of {', '.join(NOISE_LEVELS)}")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline param (the DAG's names), repeatable")
    args = parser.parse_args()
    levels = args.levels.split(",")
    unknown = [level for level in levels if level not in NOISE_LEVELS]
    if unknown:
        parser.error(f"unknown noise level(s) {', '.join(unknown)}: expected {', '.join(NOISE_LEVELS)}")
    config = config_from_params(args.param)
    set_torch_threads(config.torch_threads)
    rows = [measure(args.size, level, config) for level in levels]
    print(f"Two-tower Recall@10 on world {args.size}, holdout users with earlier views, 95% CIs "
          f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    header = (f"{'level':<8}{'users':>7}{'with views':>26}{'domains only':>26}{'domain popularity':>26}"
              f"{'planted':>9}{'only/with':>10}{'p vs pop':>9}{'train s':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['level']:<8}{r['users']:>7}{str(confidence_interval(r['with_views'])):>26}"
              f"{str(confidence_interval(r['domains_only'])):>26}{str(confidence_interval(r['domain_popularity'])):>26}"
              f"{r['planted'].mean():>9.4f}{r['ratio']:>10.3f}{r['p']:>9.4f}{r['train_s']:>8.1f}")
    last = rows[-1]
    print(f"domains: level {last['level']} size {args.size}, domains-only/with-views Recall@10 {last['ratio']:.3f}, "
          f"vs domain popularity {last['domains_only'].mean() - last['domain_popularity'].mean():+.4f} "
          f"p={last['p']:.4f}")


if __name__ == "__main__":
    main()
