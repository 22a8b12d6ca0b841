"""No path pays for another: in one run, the product's quality where its users are, each path next to
its best anchor (chosen on validation only) with a paired-bootstrap verdict.

    python -m bench.quality [--data PATH] [--size S] [--levels noisy,structured] [--quick]   (make bench-quality)

  - MovieLens 100K, A-temporal NDCG@10: the two-tower vs EASE with a recency-weighted history row
    (``bench.ml100k``'s grids and splits; skipped, and said so, where the data is absent);
  - on each domain-world level (``bench.domains``' worlds):
      hot: the holdout's users with views (bots left out), Recall@10, the two-tower with the
        product's settings vs EASE + recency (λ and half-life chosen on validation);
      domain-only: precision@10 in current interests of the true domain-only users, the night's
        domain model (``domain_ridge``) vs the best of domain popularity and closed-form ridge;
      changed: precision@10 in the new interest of the users whose interest changed in the last
        week, each served as the product serves them (with views: the two-tower; domains only: the
        domain model) vs the same users served by the anchors.
Last line, with the last level's figures:
    quality: ml100k <ours>/<anchor>, domain-only <ours>/<anchor>, changed <ours>/<anchor>, hot <ours>/<anchor> at level <level>
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np

from bench.anchors import EASE
from bench.candidates import EASE_L2
from bench.domains import ANCHORS, DomainOnlyUsers, rows_of, measure, parse_levels
from bench.worlds import SIZES
from rec_models.__main__ import config_from_params
from rec_models.config import PipelineConfig
from rec_models.data.dataset import Dataset
from rec_models.data.movielens import DEFAULT_PATH
from rec_models.data.synthetic import NOISE_LEVELS, World, default_end, generate_world, snapshot_of
from rec_models.evaluation import evaluate_model
from rec_models.evaluation.bootstrap import confidence_interval, paired_p_value
from rec_models.models import Recommender, build_model
from rec_models.names import TWO_TOWER
from rec_models.threads import set_torch_threads

EASE_HALF_LIVES = (0, 5, 10, 20)


def verdict(ours: np.ndarray, anchor: np.ndarray) -> str:
    p = paired_p_value(ours, anchor)
    diff = float(np.mean(ours) - np.mean(anchor))
    word = "ahead" if diff > 0 and p < 0.05 else "behind" if diff < 0 and p < 0.05 else "no significant difference"
    return f"{diff:+.4f} p={p:.4f} {word}"


def movielens(data: Path, quick: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-user A-temporal NDCG@10 of the two-tower and of EASE + recency, or None without the data."""
    from bench.ml100k import run

    if not (data / "u.data").exists():
        return None
    results = run(data, quick, only={"two_tower", "ease_recency"}, protocols=("AT",))
    return results["two_tower"]["AT_ndcg"], results["ease_recency"]["AT_ndcg"]


def _precision_in_current(model: Recommender, data: Dataset, rows: np.ndarray, current: np.ndarray,
                          video_interest: np.ndarray, seen) -> np.ndarray:
    out = np.zeros(len(rows))
    for block in model.recommend(data, rows, 10, seen=seen, allowed_items=data.video_active):
        at = np.arange(block.start, block.start + len(block.items))
        out[at] = current[at[:, None], video_interest[block.items]].mean(axis=1)
    return out


def hot_path(world: World, data: Dataset, config: PipelineConfig) -> dict:
    """The two-tower and EASE + recency on users with views: holdout Recall@10 and, for the users who
    changed interest, precision@10 in the new interest."""
    holdout, validation = data.holdout(config.holdout_days), data.validation(config.holdout_days)
    tower = build_model(TWO_TOWER, config)
    tower.fit(data, before=validation.boundary, validation=validation)
    # EASE + recency chosen on an inner validation split of the same training views.
    inner = data.validation(config.holdout_days + 1)
    best, best_score = None, -1.0
    for l2 in EASE_L2:
        for half_life in EASE_HALF_LIVES:
            model = EASE(l2=l2, half_life=half_life)
            model.fit(data, before=inner.boundary)
            score = evaluate_model(model, data, inner.train, inner.test, inner.test_users).ndcg
            if score > best_score:
                best, best_score = {"l2": l2, "half_life": half_life}, score
    ease = EASE(**best)
    ease.fit(data, before=validation.boundary)
    rows, known = rows_of(world, data)
    bots = np.zeros(data.n_users, bool)
    if world.bot_user is not None:
        bots[rows[known & world.bot_user]] = True
    users = holdout.test_users[~bots[holdout.test_users]]
    out = {"ease": best, "users": len(users)}
    for name, model in (("ours", tower), ("anchor", ease)):
        out[f"{name}_recall"] = evaluate_model(model, data, holdout.train, holdout.test, users).per_user_recall
    changed = world.changed_user if world.changed_user is not None else np.zeros(len(rows), bool)
    with_views = np.diff(data.interactions(validation.boundary).indptr) > 0
    chosen = known & changed & ~world.domain_only_user
    chosen[known] &= with_views[rows[known]]
    interest = np.zeros(data.n_videos, dtype=np.int64)
    interest[np.searchsorted(data.video_ids, world.video_id)] = world.current_interest_of_videos()
    seen = data.interactions(validation.boundary)
    out["changed_users"] = int(chosen.sum())
    for name, model in (("ours", tower), ("anchor", ease)):
        out[f"{name}_changed"] = _precision_in_current(model, data, rows[chosen], world.current_interests()[chosen],
                                                       interest, seen)
    return out


def level(size: str, name: str, config: PipelineConfig) -> dict:
    world = generate_world(SIZES[size].at_noise(name), default_end())
    data = Dataset.from_snapshot(snapshot_of(world))
    domains = measure(size, name, config)
    hot = hot_path(world, data, config)
    people = DomainOnlyUsers.of(world, data)
    best = domains["best_anchor"]
    domain_ours, domain_anchor = domains["rows"]["ours"]["precision"], domains["rows"][best]["precision"]
    changed = people.changed
    return {"level": name, "hot": hot, "domain_anchor": best, "domain_ours": domain_ours,
            "domain_anchor_values": domain_anchor,
            "changed_ours": np.concatenate([hot["ours_changed"], domain_ours[changed]]),
            "changed_anchor": np.concatenate([hot["anchor_changed"], domain_anchor[changed]])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_PATH, help="folder with MovieLens 100K's u.data")
    # EASE inverts a videos x videos matrix per grid point: S (2k videos) is its size, not M (20k).
    parser.add_argument("--size", choices=["XS", "S"], default="S")
    parser.add_argument("--levels", default="noisy,structured", help=f"comma-separated, of {', '.join(NOISE_LEVELS)}")
    parser.add_argument("--quick", action="store_true", help="MovieLens: the first grid point only (a smoke run)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline param (the DAG's names), repeatable")
    args = parser.parse_args()
    levels = parse_levels(parser, args.levels)
    logging.basicConfig(level=logging.WARNING)
    config = config_from_params(args.param)
    started = time.perf_counter()
    set_torch_threads(1)  # as bench.ml100k measures MovieLens
    ml = movielens(args.data, args.quick)
    set_torch_threads(config.torch_threads)
    results = [level(args.size, name, config) for name in levels]

    print(f"Quality where the users are (world {args.size}; {time.perf_counter() - started:.0f} s; load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    header = f"{'path':<56}{'users':>7}{'ours [95% CI]':>28}{'anchor [95% CI]':>28}  verdict"
    print(header)
    print("-" * (len(header) + 30))

    def row(label: str, ours: np.ndarray, anchor: np.ndarray) -> None:
        if not len(ours):
            print(f"{label:<56}{0:>7}  (no such users at this level)")
            return
        print(f"{label:<56}{len(ours):>7}{str(confidence_interval(ours)):>28}{str(confidence_interval(anchor)):>28}"
              f"  {verdict(ours, anchor)}")

    if ml is None:
        print(f"{'ml100k A-temporal NDCG@10':<56} absent: no u.data under {args.data} (--data)")
    else:
        row("ml100k A-temporal NDCG@10, two-tower/EASE+rec", *ml)
    for r in results:
        hot = r["hot"]
        row(f"{r['level']}: hot Recall@10, two-tower/EASE+rec", hot["ours_recall"], hot["anchor_recall"])
        row(f"{r['level']}: domain-only P@10, ours/{r['domain_anchor']}", r["domain_ours"], r["domain_anchor_values"])
        row(f"{r['level']}: changed P@10 (both paths)", r["changed_ours"], r["changed_anchor"])
        row(f"{r['level']}:   of them with views", hot["ours_changed"], hot["anchor_changed"])
    print(f"(EASE + recency chosen on validation: " + ", ".join(f"{r['level']} {r['hot']['ease']}" for r in results)
          + f"; domain anchors: {', '.join(ANCHORS)})")
    last = results[-1]

    def pair(ours, anchor) -> str:
        return f"{np.mean(ours):.4f}/{np.mean(anchor):.4f}" if len(ours) else "none/none"

    print(f"quality: ml100k {pair(*ml) if ml else 'absent'}, domain-only {pair(last['domain_ours'], last['domain_anchor_values'])}, "
          f"changed {pair(last['changed_ours'], last['changed_anchor'])}, hot {pair(last['hot']['ours_recall'], last['hot']['anchor_recall'])} "
          f"at level {last['level']}")


if __name__ == "__main__":
    main()
