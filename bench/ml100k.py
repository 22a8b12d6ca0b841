"""MovieLens 100K, side by side: our models and the anchors, the same splits, one process.

    python -m bench.ml100k [--data PATH | --download] [--quick] [--json OUT]

Protocols (rec_models.evaluation.protocols): A-full and A-100 (leave-last-one-out), A-temporal
(latest 20% per user; primary, with 95% bootstrap CIs), B (cold-start users from features), C
(similar items share a genre). Hyperparameters are chosen on a validation split cut from the
A-temporal training data (for B: from B's training users), never on test. The last line is:
    verdict A-temporal NDCG@10: ours=<model> <value> anchor=<model> <value> p=<p>
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from bench.anchors import available
from bench.candidates import Candidate, candidates
from rec_models.data.dataset import Dataset
from rec_models.data.movielens import DEFAULT_PATH, download, load_movielens
from rec_models.evaluation import evaluate_model
from rec_models.evaluation.bootstrap import confidence_interval, paired_p_value
from rec_models.evaluation.protocols import (cold_user_metrics, cold_users, genre_share, last_one_out,
                                             latest_fraction, rank_positive_full, rank_positive_sampled,
                                             sampled_negatives)
from rec_models.threads import set_torch_threads
from rec_models.training import FitReport

log = logging.getLogger("bench.ml100k")


def fit(candidate: Candidate, params: dict, data: Dataset, validation=None, chosen: FitReport | None = None):
    """A fit with early stopping on ``validation``, or a refit for the epochs ``chosen`` kept."""
    model = candidate.make(params)
    started = time.perf_counter()
    report = model.refit(data, chosen) if chosen is not None else model.fit(data, validation=validation)
    return model, report, time.perf_counter() - started


def select(candidate: Candidate, fit_data: Dataset, val) -> tuple[dict, FitReport | None, float]:
    """The grid point with the best validation NDCG@10 (and, for ours, its fit: the early-stopped epochs)."""
    best = (None, None, -1.0)
    for params in candidate.grid:
        model, report, _ = fit(candidate, params, fit_data, validation=val if candidate.ours else None)
        score = evaluate_model(model, fit_data, val.train, val.test, val.test_users).ndcg
        log.info("  %s %s: validation NDCG@10 %.4f", candidate.label, params, score)
        if score > best[2]:
            best = (params, report if candidate.ours else None, score)
    return best


def select_cold(candidate: Candidate, train: Dataset, base: dict, chosen: FitReport | None) -> dict:
    """For B: hold out 20% of the training users as cold users and pick the best grid point on them
    (the A-temporal choice ``base``, or each grid point when the model runs B only)."""
    inner_cold = cold_users(train, 0.2, seed=1)
    inner_cold = inner_cold[np.diff(train.interactions().indptr)[inner_cold] > 0]
    inner_train = train.with_views(~np.isin(train.view_user, inner_cold))
    grid = candidate.grid if base is None else [{**base, **extra} for extra in candidate.cold_grid]
    best = (grid[0], -1.0)
    for params in grid:
        model, _, _ = fit(candidate, params, inner_train, chosen=chosen)
        score = cold_user_metrics(model, train, inner_cold)["ndcg"].mean()
        log.info("  %s %s: cold validation NDCG@10 %.4f", candidate.label, params, score)
        if score > best[1]:
            best = (params, score)
    return best[0]


def run(data_path: Path, quick: bool, only: set[str] | None = None,
        protocols: tuple[str, ...] = ("A", "AT", "B", "C")) -> dict:
    """Every candidate (or those labelled in ``only``) on the ``protocols`` it runs."""
    ml = load_movielens(data_path)
    d = ml.dataset
    # A-temporal, and the validation split cut from its training data.
    at_test = latest_fraction(d, 0.2)
    at_train = d.with_views(~at_test)
    at_split = d.split_by_views(at_test)
    val_test = latest_fraction(at_train, 0.2)
    val_fit = at_train.with_views(~val_test)
    val = at_train.split_by_views(val_test)
    # A: leave the last one out.
    a_test = last_one_out(d)
    a_train = d.with_views(~a_test)
    a_users = d.view_user[a_test]
    a_pos = d.view_video[a_test]
    a_neg = sampled_negatives(d, a_users, d.interactions())
    a_train_csr = a_train.interactions()
    # B: 20% of users held out entirely.
    b_users = cold_users(d, 0.2, seed=0)
    b_train = d.with_views(~np.isin(d.view_user, b_users))

    status = available()
    results: dict[str, dict] = {}
    for cand in candidates(quick):
        if only is not None and cand.label not in only:
            continue
        cand.protocols = tuple(p for p in cand.protocols if p in protocols)
        library = {"implicit_": "implicit", "lightfm_": "lightfm"}
        needs = next((lib for prefix, lib in library.items() if cand.label.startswith(prefix)), None)
        if needs and status[needs]:
            results[cand.label] = {"ours": cand.ours, "error": f"not installed ({status[needs]})"}
            log.warning("%s skipped: %s", cand.label, status[needs])
            continue
        log.info("%s: choosing hyperparameters on validation", cand.label)
        history_protocols = "AT" in cand.protocols or "A" in cand.protocols
        params, chosen, val_ndcg = select(cand, val_fit, val) if history_protocols else (None, None, float("nan"))
        epochs = (chosen.stage_epochs or chosen.best_epoch) if chosen is not None else None
        row: dict = {"ours": cand.ours, "params": params, "epochs": epochs, "validation_ndcg@10": val_ndcg}
        if "AT" in cand.protocols:
            model, _, train_s = fit(cand, params, at_train, chosen=chosen)
            started = time.perf_counter()
            m = evaluate_model(model, d, at_split.train, at_split.test, at_split.test_users)
            row.update({"train_s": train_s, "score_s": time.perf_counter() - started,
                        "AT_ndcg": m.per_user_ndcg, "AT_recall": m.per_user_recall})
            if "C" in cand.protocols and model.finds_similar_videos:
                row["C"] = genre_share(model, at_split.train, ml.item_genres)
        if "A" in cand.protocols:
            model, _, _ = fit(cand, params, a_train, chosen=chosen)
            full = rank_positive_full(model, d, a_train_csr, a_users, a_pos)
            sampled = rank_positive_sampled(model, d, a_users, a_pos, a_neg)
            row.update({"Afull_hr": full.hr(), "Afull_ndcg": full.ndcg(), "A100_hr": sampled.hr(),
                        "A100_ndcg": sampled.ndcg()})
        if "B" in cand.protocols:
            b_params = select_cold(cand, b_train, params, chosen)
            model, _, _ = fit(cand, b_params, b_train, chosen=chosen)
            cold = cold_user_metrics(model, d, b_users)
            row.update({"B_params": b_params, "B_recall": cold["recall"], "B_precision": cold["precision"],
                        "B_ndcg": cold["ndcg"]})
        results[cand.label] = row
        log.info("%s done: %s", cand.label, {k: round(float(np.mean(v)), 4) for k, v in row.items()
                                              if isinstance(v, np.ndarray)})
    return results


def _mean(row: dict, key: str) -> str:
    return f"{np.mean(row[key]):.4f}" if key in row else "—"


def report(results: dict, load: str) -> list[str]:
    lines = [f"MovieLens 100K, one run, same splits for every model ({load})", ""]
    header = (f"{'model':<20}{'A-full HR':>10}{'A-full NDCG':>12}{'A-100 HR':>9}{'A-100 NDCG':>11}"
              f"{'A-temporal Recall@10':>30}{'A-temporal NDCG@10 [95% CI]':>30}{'B Recall':>9}{'B Prec':>8}"
              f"{'B NDCG':>8}{'C genre':>8}{'train s':>8}{'score s':>8}")
    lines += [header, "-" * len(header)]
    for label, row in results.items():
        name = label + (" *" if row["ours"] else "")
        if "error" in row:
            lines.append(f"{name:<20}{row['error']}")
            continue
        at_r = str(confidence_interval(row["AT_recall"])) if "AT_recall" in row else "—"
        at_n = str(confidence_interval(row["AT_ndcg"])) if "AT_ndcg" in row else "—"
        c = f"{row['C']:.3f}" if "C" in row else "—"
        ts = f"{row['train_s']:.1f}" if "train_s" in row else "—"
        ss = f"{row['score_s']:.2f}" if "score_s" in row else "—"
        lines.append(f"{name:<20}{_mean(row, 'Afull_hr'):>10}{_mean(row, 'Afull_ndcg'):>12}{_mean(row, 'A100_hr'):>9}"
                     f"{_mean(row, 'A100_ndcg'):>11}{at_r:>30}{at_n:>30}{_mean(row, 'B_recall'):>9}"
                     f"{_mean(row, 'B_precision'):>8}{_mean(row, 'B_ndcg'):>8}{c:>8}{ts:>8}{ss:>8}")
    lines += ["", "* ours. Paired bootstrap over users (2000 resamples), our best vs the best anchor:"]
    verdict = None
    for key, title in (("Afull_ndcg", "A-full NDCG@10"), ("A100_hr", "A-100 HR@10"), ("B_ndcg", "B NDCG@10"),
                       ("AT_ndcg", "A-temporal NDCG@10")):
        ours = {k: r for k, r in results.items() if r["ours"] and key in r}
        anchors = {k: r for k, r in results.items() if not r["ours"] and key in r}
        if not ours or not anchors:
            continue
        best_ours = max(ours, key=lambda k: np.mean(ours[k][key]))
        best_anchor = max(anchors, key=lambda k: np.mean(anchors[k][key]))
        a, b = ours[best_ours][key], anchors[best_anchor][key]
        p = paired_p_value(a, b)
        diff = np.mean(a) - np.mean(b)
        word = ("significantly ahead" if diff > 0 and p < 0.05 else "significantly behind" if diff < 0 and p < 0.05
                else "not significantly different")
        line = (f"verdict {title}: ours={best_ours} {np.mean(a):.4f} anchor={best_anchor} {np.mean(b):.4f} "
                f"p={p:.4f}")
        if key == "AT_ndcg":
            verdict = line
        else:
            lines.append(f"{line}  ({word})")
    others = {k: r for k, r in results.items() if not r["ours"] and "AT_ndcg" in r}
    best_ours = max((k for k, r in results.items() if r["ours"] and "AT_ndcg" in r),
                    key=lambda k: np.mean(results[k]["AT_ndcg"]), default=None)
    if best_ours:
        for label, row in others.items():
            p = paired_p_value(results[best_ours]["AT_ndcg"], row["AT_ndcg"])
            lines.append(f"  A-temporal NDCG@10 {best_ours} vs {label}: "
                         f"{np.mean(results[best_ours]['AT_ndcg']) - np.mean(row['AT_ndcg']):+.4f} p={p:.4f}")
    if verdict:
        lines.append(verdict)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_PATH, help="folder with u.data, u.item, u.user")
    parser.add_argument("--download", action="store_true", help="fetch ml-100k from GroupLens into var/")
    parser.add_argument("--quick", action="store_true", help="first grid point only (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the per-model means here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("rec_models.training").setLevel(logging.WARNING)
    set_torch_threads(1)
    data = download(Path("var")) if args.download else args.data
    started = time.perf_counter()
    results = run(data, args.quick)
    load = f"load average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, {time.perf_counter() - started:.0f} s"
    lines = report(results, load)
    print("\n".join(lines))
    if args.json:
        means = {k: {m: (float(np.mean(v)) if isinstance(v, np.ndarray) else v) for m, v in r.items()}
                 for k, r in results.items()}
        args.json.write_text(json.dumps(means, indent=2, default=str))


if __name__ == "__main__":
    main()
