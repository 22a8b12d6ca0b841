"""Night after night, apart from the database: the evolving world's days, the data check before
training, next-day metrics against a plain loop, and run-folder pruning."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from rec_models.config import DAG_RUN_TIMEOUT_MINUTES
from rec_models.data.checks import check_interval
from rec_models.data.evolving import DAY, SCRIPT, EvolvingSpec, day_rows, generate_evolving, scripted_bad_nights
from rec_models.data.synthetic import WorldSpec
from rec_models.db.next_day import ranking_metrics
from rec_models.run import leftover_files, prune_run_folders, run_folder

LAST = datetime(2026, 11, 27, 2, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def evolving():
    spec = EvolvingSpec(world=WorldSpec(n_users=800, n_videos=200, n_views=20_000, n_domain_visits=20_000, seed=5),
                        nights=6, warmup_days=10,
                        bad_nights=((2, "malformed"), (3, "redelivered"), (4, "late"), (5, "no_views")))
    return generate_evolving(spec, LAST)


def test_days_deliver_every_view_once_except_as_scripted(evolving):
    w = evolving.world
    delivered = [day_rows(evolving, day) for day in range(evolving.spec.nights + 1)]
    assert evolving.night_end(evolving.spec.nights) == LAST
    counts = np.bincount(np.concatenate([d.views for d in delivered]), minlength=len(w.view_user))
    no_views = (w.viewed_at >= evolving.day_bounds(5)[0]) & (w.viewed_at < evolving.day_bounds(5)[1])
    redelivered = (w.viewed_at >= evolving.day_bounds(3)[0]) & (w.viewed_at < evolving.day_bounds(3)[1])
    assert (counts[no_views] == 0).all() and (counts[redelivered] == 2).all()
    assert (counts[~no_views & ~redelivered] == 1).all()
    assert len(delivered[4].views) == 0 and len(delivered[5].views) > 0  # day 4 arrives with day 5
    assert delivered[5].views.min() >= 0 and (w.viewed_at[delivered[5].views] < evolving.day_bounds(4)[1]).all()
    assert len(delivered[2].malformed_views) > 0 and not any(d.malformed_views for i, d in enumerate(delivered) if i != 2)
    assert sorted(np.concatenate([d.videos for d in delivered]).tolist()) == list(range(len(w.video_id)))


def test_new_users_and_videos_arrive_during_the_nights(evolving):
    w, first_night = evolving.world, evolving.night_end(0).timestamp()
    new_videos = np.flatnonzero(w.published_at >= first_night)
    assert len(new_videos) > 10
    # A new video has no views on the day it is published (content only), and some later.
    published_day = np.floor((w.published_at - evolving.start) / DAY)
    row = np.searchsorted(w.video_id, w.view_video)
    viewed_day = np.floor((w.viewed_at - evolving.start) / DAY)
    assert not ((w.published_at[row] >= first_night) & (viewed_day <= published_day[row])).any()
    assert np.isin(new_videos, row).any()
    users_before = set(w.view_user[w.viewed_at < first_night]) | set(w.visit_user[w.visit_date * DAY < first_night])
    assert len(set(w.view_user) - users_before) > 50


def test_check_interval_skips_empty_and_partial_days(small_dataset):
    end = small_dataset.end
    normal = check_interval(small_dataset, end - DAY, end, 0.2)
    assert normal.train and normal.views_in_interval > 0 and normal.median_daily_views > 0
    empty = small_dataset.with_views(small_dataset.viewed_at < end - DAY)
    assert check_interval(empty, end - DAY, end, 0.2).reason == "no views in the interval: upstream data late?"
    last_day = np.flatnonzero(small_dataset.viewed_at >= end - DAY)
    thin = np.ones(small_dataset.n_views, bool)
    thin[last_day[len(last_day) // 10:]] = False  # a tenth of the day arrived
    partial = check_interval(small_dataset.with_views(thin), end - DAY, end, 0.2)
    assert not partial.train and partial.reason.startswith("a partial day") and "under 20%" in partial.reason
    assert check_interval(small_dataset.with_views(thin), end - DAY, end, 0.0).train  # 0: never partial


def test_next_day_metrics_match_a_plain_loop():
    rng = np.random.default_rng(3)
    n_users, k = 50, 10
    n_targets = rng.integers(1, 15, n_users)
    lists = [rng.choice(40, k, replace=False) for _ in range(n_users)]
    targets = [set(rng.choice(40, n, replace=False).tolist()) for n in n_targets]
    hit_user, hit_rank = [], []
    expected = {"hr@10": [], "recall@10": [], "ndcg@10": []}
    for u in range(n_users):
        ranks = [r + 1 for r, v in enumerate(lists[u]) if v in targets[u]]
        hit_user += [u] * len(ranks)
        hit_rank += ranks
        ideal = sum(1 / np.log2(i + 2) for i in range(min(len(targets[u]), k)))
        expected["hr@10"].append(float(bool(ranks)))
        expected["recall@10"].append(len(ranks) / min(len(targets[u]), k))
        expected["ndcg@10"].append(sum(1 / np.log2(r + 1) for r in ranks) / ideal)
    got = ranking_metrics(n_targets, np.array(hit_user, dtype=np.int64), np.array(hit_rank, dtype=np.float64))
    for metric, values in expected.items():
        np.testing.assert_allclose(got[metric], values, err_msg=metric)


def test_pruning_keeps_newest_nights_and_published_checkpoints(tmp_path):
    ends = [LAST - timedelta(days=d) for d in range(5, -1, -1)]
    for end in ends:
        folder = run_folder(tmp_path, end).path
        for part in ("snapshot/x", "checkpoints/mf/model.json", "checkpoints/two_tower/model.json"):
            (folder / part).parent.mkdir(parents=True, exist_ok=True)
            (folder / part).write_text("{}")
    keep = {("mf", ends[0]), ("two_tower", ends[1])}
    prune_run_folders(tmp_path, 2, keep, current=ends[-1])
    remaining = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    names = [run_folder(tmp_path, e).path.name for e in ends]
    assert remaining == sorted([f"{names[0]}/checkpoints/mf/model.json", f"{names[1]}/checkpoints/two_tower/model.json"]
                               + [f"{n}/{part}" for n in names[-2:] for part in
                                  ("snapshot/x", "checkpoints/mf/model.json", "checkpoints/two_tower/model.json")])
    (tmp_path / "not-a-run").mkdir()
    prune_run_folders(tmp_path, 1, set(), current=ends[-1])
    assert (tmp_path / "not-a-run").exists() and not run_folder(tmp_path, ends[0]).path.exists()


def test_pruning_leaves_a_folder_a_run_is_using(tmp_path):
    ends = [LAST - timedelta(days=d) for d in range(4, -1, -1)]
    for end in ends:
        (run_folder(tmp_path, end).path / "snapshot").mkdir(parents=True)
    busy, dead = run_folder(tmp_path, ends[0]), run_folder(tmp_path, ends[1])
    busy.mark_in_use()  # a backfill of an older night, running now
    (dead.path / "in_use.json").write_text(json.dumps({"since": time.time() - (DAG_RUN_TIMEOUT_MINUTES * 60 + 60)}))
    prune_run_folders(tmp_path, 1, set(), current=ends[-1])
    assert busy.path.exists() and not dead.path.exists()
    busy.unmark_in_use()
    prune_run_folders(tmp_path, 1, set(), current=ends[-1])
    assert not busy.path.exists()


def test_leftover_files_of_a_local_run_root(tmp_path):
    folder = run_folder(tmp_path, LAST)
    folder.write_validation({})
    (folder.path / "dataset.tmp").mkdir()  # a writer killed before its rename
    (folder.path / "dataset.tmp" / "arrays.npz").write_bytes(b"half")
    assert leftover_files(tmp_path) == [f"{folder.slug}/dataset.tmp"]


def test_bad_night_scripts_are_checked():
    with pytest.raises(ValueError, match="unknown bad night kind"):
        EvolvingSpec(world=WorldSpec(), bad_nights=((2, "flood"),))
    with pytest.raises(ValueError, match="needs a night after it"):
        EvolvingSpec(world=WorldSpec(), nights=3, bad_nights=((3, "late"),))
    assert dataclasses.replace(EvolvingSpec(world=WorldSpec()), bad_nights=()).bad_night(4) is None


def test_the_script_of_bad_nights_spreads_over_any_length():
    assert scripted_bad_nights(14) == SCRIPT
    assert scripted_bad_nights(7) == ((2, "malformed"), (3, "redelivered"), (4, "late"), (6, "no_views"))
    assert scripted_bad_nights(3) == ((2, "late"),) and scripted_bad_nights(2) == ()
    for nights in range(1, 40):
        EvolvingSpec(world=WorldSpec(), nights=nights, bad_nights=scripted_bad_nights(nights))  # always valid
