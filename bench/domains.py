"""Users known only by their domains: our domain model against the anchors a reviewer would run first,
each chosen on validation only, on synthetic worlds whose truth is known.

    python -m bench.domains [--size S|M] [--levels structured,noisy,clean]        (make bench-domains)

Each level's world (``WorldSpec.at_noise``) is split as the nightly run splits it. Candidates:
  - domain popularity (``FeaturePopularity``, idf-weighted visits), half-life of visits in days from
    {0, 3, 7, 14};
  - ridge regression domains -> videos in closed form (``DomainRidgeAnchor``), λ from {0.1, 1, 10},
    the same half-lives;
  - ours, ``DomainRidge`` (reduced-rank, popularity-damped, a recent bag weighted in), rank x
    half-life x damping x the recent bag's weight;
  - the two-tower's domain tower with the product's settings, for comparison (not tuned here).
Each family's setting is the one with the best Recall@10 on the validation split (users with views in
the day before the holdout, scored from their domains alone), fitted again before the holdout. Test
figures: precision@10 in current interests of the world's true domain-only users (bots left out;
"changed": those whose interest changed in the last week, counted in their new interest alone), and
Recall@10 of the holdout's users scored from their domains alone. "planted" ranks each user's current
interests' videos by their training views: the ceiling. p: paired bootstrap of ours against the best
anchor over the same domain-only users. The last line is the last level's:
    domains: level <level> size <S|M>, domain-only precision@10 ours <p> vs <anchor> <a> (<+d>, p=<p>), changed <c>/<ca>, planted <t>
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np

from bench.anchors import DomainRidgeAnchor
from bench.worlds import SIZES
from rec_models.__main__ import config_from_params
from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.synthetic import NOISE_LEVELS, World, default_end, generate_world, snapshot_of
from rec_models.evaluation import evaluate_model
from rec_models.evaluation.bootstrap import confidence_interval, paired_p_value
from rec_models.models import DomainRidge, FeaturePopularity, Recommender, build_model
from rec_models.names import TWO_TOWER
from rec_models.threads import set_torch_threads

HALF_LIVES = (0, 3, 7, 14)
RECENT_WEIGHTS = (0.0, 0.5, 1.0)
ANCHORS = ("domain popularity", "ridge")


def candidates(config: PipelineConfig) -> dict[str, list[Recommender]]:
    """Each family's settings to choose from on validation."""
    return {
        "domain popularity": [FeaturePopularity(half_life_days=h) for h in HALF_LIVES],
        "ridge": [DomainRidgeAnchor(l2=l2, half_life_days=h) for l2 in (0.1, 1.0, 10.0) for h in HALF_LIVES],
        "ours": [DomainRidge(rank=r, l2=config.domain_l2, half_life_days=h, popularity_damping=b, recent_weight=a,
                             recent_half_life_days=config.domain_recent_half_life_days, seed=config.seed)
                 for r in sorted({32, config.domain_rank}) for h in HALF_LIVES for b in (0.25, 0.5)
                 for a in RECENT_WEIGHTS],
    }


class PlantedInterests(Recommender):
    """The generator's truth as a dot product: user = current interests, video = its share of its
    interest's training views in its interest's column."""

    name = "planted"
    serves_warm_users = True

    def __init__(self, world: World, data: Dataset, train_views):
        interest = np.zeros(data.n_videos, dtype=np.int64)
        interest[np.searchsorted(data.video_ids, world.video_id)] = world.current_interest_of_videos()
        current = world.current_interests()
        counts = np.asarray(train_views.sum(axis=0)).ravel() + 0.1
        self.items = np.zeros((data.n_videos, current.shape[1]), dtype=np.float32)
        for i in range(current.shape[1]):
            mine = interest == i
            self.items[mine, i] = counts[mine] / counts[mine].sum()
        self.users = np.zeros((data.n_users, current.shape[1]), dtype=np.float32)
        rows, known = rows_of(world, data)
        self.users[rows[known]] = current[known]

    def fit(self, data, *, before=None, validation=None, epochs=None):
        raise TypeError("the planted model is the generator's truth: it is not fitted")

    def features_only(self) -> "PlantedInterests":
        return self

    def user_vectors(self, data: Dataset, users: np.ndarray) -> np.ndarray:
        return self.users[users]

    def item_vectors(self) -> np.ndarray:
        return self.items


def rows_of(world: World, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Each world user's Dataset row, and whether the Dataset has them."""
    rows = np.searchsorted(data.user_ids, world.user_id)
    known = (rows < data.n_users) & (data.user_ids[np.minimum(rows, data.n_users - 1)] == world.user_id)
    return rows, known


@dataclass
class DomainOnlyUsers:
    """The world's true domain-only users (no bots) and what counts as a hit for each: a video of an
    interest they hold now."""

    rows: np.ndarray
    current: np.ndarray  # (users, interests) bool
    changed: np.ndarray  # bool per user
    video_interest: np.ndarray  # per Dataset video

    @classmethod
    def of(cls, world: World, data: Dataset) -> "DomainOnlyUsers":
        rows, known = rows_of(world, data)
        bots = world.bot_user if world.bot_user is not None else np.zeros(len(rows), bool)
        changed = world.changed_user if world.changed_user is not None else np.zeros(len(rows), bool)
        chosen = world.domain_only_user & ~bots & known
        interest = np.zeros(data.n_videos, dtype=np.int64)
        interest[np.searchsorted(data.video_ids, world.video_id)] = world.current_interest_of_videos()
        return cls(rows[chosen], world.current_interests()[chosen], changed[chosen], interest)

    def precision(self, model: Recommender, data: Dataset, k: int = 10) -> np.ndarray:
        out = np.zeros(len(self.rows))
        for block in model.features_only().recommend(data, self.rows, k, allowed_items=data.video_active):
            at = np.arange(block.start, block.start + len(block.items))
            out[at] = self.current[at[:, None], self.video_interest[block.items]].mean(axis=1)
        return out


def _domain_recall(model: Recommender, data: Dataset, split) -> np.ndarray:
    return evaluate_model(model.features_only(), data, split.train, split.test, split.test_users).per_user_recall


def measure(size: str, level: str, config: PipelineConfig) -> dict:
    world = generate_world(SIZES[size].at_noise(level), default_end())
    data = Dataset.from_snapshot(snapshot_of(world))
    holdout, validation = data.holdout(config.holdout_days), data.validation(config.holdout_days)
    people = DomainOnlyUsers.of(world, data)
    rows = {}
    for family, models in candidates(config).items():
        started = time.perf_counter()
        scored = []
        for model in models:
            model.fit(data, before=validation.boundary)
            scored.append(_domain_recall(model, data, validation).mean())
        best = models[int(np.argmax(scored))]
        fit_started = time.perf_counter()
        best.fit(data, before=holdout.boundary)
        rows[family] = {"setting": best.config_dict(),
                        "validation": max(scored), "fit_s": time.perf_counter() - fit_started,
                        "search_s": time.perf_counter() - started, "model": best}
    started = time.perf_counter()
    tower = build_model(TWO_TOWER, config)
    tower.fit(data, before=validation.boundary, validation=validation)
    rows["two-tower"] = {"setting": {}, "validation": float("nan"), "fit_s": time.perf_counter() - started,
                         "search_s": 0.0, "model": tower}
    rows["planted"] = {"setting": {}, "validation": float("nan"), "fit_s": 0.0, "search_s": 0.0,
                       "model": PlantedInterests(world, data, holdout.train)}
    for row in rows.values():
        row["precision"] = people.precision(row["model"], data)
        row["recall"] = _domain_recall(row["model"], data, holdout)
    best_anchor = max(ANCHORS, key=lambda name: rows[name]["precision"].mean())
    return {"level": level, "users": len(people.rows), "changed": people.changed, "rows": rows,
            "best_anchor": best_anchor,
            "p": paired_p_value(rows["ours"]["precision"], rows[best_anchor]["precision"])}


def _setting_text(setting: dict) -> str:
    labels = {"half_life_days": "half-life", "l2": "λ", "rank": "rank", "popularity_damping": "damping",
              "recent_weight": "recent"}
    return " ".join(f"{label}={setting[key]:g}" for key, label in labels.items() if key in setting)


def print_level(r: dict) -> None:
    changed = r["changed"]
    print(f"\nlevel {r['level']}: {r['users']} domain-only users ({changed.sum()} changed interest in the last "
          f"week)")
    header = (f"{'model':<18}{'chosen on validation':<44}{'valid R@10':>11}{'precision@10 domain-only':>28}"
              f"{'changed':>9}{'stable':>8}{'R@10 domains':>13}{'fit s':>7}")
    print(header)
    print("-" * len(header))
    for name, row in r["rows"].items():
        p = row["precision"]
        print(f"{name:<18}{_setting_text(row['setting']):<44}{row['validation']:>11.4f}"
              f"{str(confidence_interval(p)):>28}{p[changed].mean() if changed.any() else float('nan'):>9.3f}"
              f"{p[~changed].mean():>8.3f}{row['recall'].mean():>13.4f}{row['fit_s']:>7.1f}")


def parse_levels(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The comma-separated world levels of ``--levels``, or the parser's error naming the unknown ones."""
    levels = text.split(",")
    unknown = [level for level in levels if level not in NOISE_LEVELS]
    if unknown:
        parser.error(f"unknown level(s) {', '.join(unknown)}: expected {', '.join(NOISE_LEVELS)}")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["XS", "S", "M"], default="S")
    parser.add_argument("--levels", default="structured", help=f"comma-separated, of {', '.join(NOISE_LEVELS)}")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline param (the DAG's names), repeatable")
    args = parser.parse_args()
    levels = parse_levels(parser, args.levels)
    config = config_from_params(args.param)
    set_torch_threads(config.torch_threads)
    results = []
    for level in levels:
        results.append(measure(args.size, level, config))
        print_level(results[-1])
    print(f"\n(world {args.size}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    last = results[-1]
    ours, anchor = last["rows"]["ours"]["precision"], last["rows"][last["best_anchor"]]["precision"]
    changed = last["changed"]
    print(f"domains: level {last['level']} size {args.size}, domain-only precision@10 ours {ours.mean():.3f} vs "
          f"{last['best_anchor']} {anchor.mean():.3f} ({ours.mean() - anchor.mean():+.3f}, p={last['p']:.4f}), "
          f"changed {ours[changed].mean() if changed.any() else float('nan'):.3f}/"
          f"{anchor[changed].mean() if changed.any() else float('nan'):.3f}, "
          f"planted {last['rows']['planted']['precision'].mean():.3f}")


if __name__ == "__main__":
    main()
