"""The quality gate's decision, apart from the database."""

import math

from rec_models.evaluation.gate import PublishedRun, quality_gate, warm_gate


def test_the_first_run_of_a_model_publishes():
    decision = quality_gate(0.01, None, tolerance=0.02)
    assert decision.publish and decision.reason == "first run of this model"


def test_within_the_tolerance_publishes_and_beyond_it_is_rejected_with_the_figures():
    published = PublishedRun(model_run_id=7, ndcg=0.30)
    assert quality_gate(0.29, published, tolerance=0.02).publish
    assert quality_gate(0.28, published, tolerance=0.02).publish  # exactly at the tolerance
    worse = quality_gate(0.2799, published, tolerance=0.02)
    assert not worse.publish
    assert "0.2799" in worse.reason and "published run 7 (0.3000 on its own holdout)" in worse.reason and "0.02" in worse.reason


def test_a_better_run_publishes_and_zero_tolerance_rejects_any_drop():
    published = PublishedRun(model_run_id=3, ndcg=0.1)
    assert quality_gate(0.2, published, tolerance=0.0).publish
    assert not quality_gate(0.0999, published, tolerance=0.0).publish


def test_nan_never_publishes():
    assert not quality_gate(math.nan, None, tolerance=1.0).publish
    assert not quality_gate(math.nan, PublishedRun(1, 0.1), tolerance=1.0).publish


def test_the_reason_says_when_the_published_run_was_scored_on_tonights_holdout():
    decision = quality_gate(0.25, PublishedRun(model_run_id=3, ndcg=0.3, same_holdout=True), tolerance=0.02)
    assert not decision.publish and "published run 3 (0.3000 on tonight's holdout)" in decision.reason


def test_domain_only_users_go_to_the_best_candidate_that_keeps_what_serves_them():
    candidates = {"domain_ridge": 0.30, "two_tower": 0.20, "feature_popularity": 0.25}
    first = warm_gate(candidates, None, 0.02, "feature_popularity")
    assert (first.model, first.ndcg) == ("domain_ridge", 0.30)
    assert warm_gate(candidates, 0.31, 0.02, "feature_popularity").model == "domain_ridge"
    # The best drops the serving figure by more than the tolerance: the next that does not serves.
    assert warm_gate({"domain_ridge": 0.25, "two_tower": math.nan, "feature_popularity": 0.29}, 0.30, 0.02,
                     "feature_popularity").model == "feature_popularity"
    dropped = warm_gate({"domain_ridge": 0.20, "two_tower": 0.10, "feature_popularity": 0.15}, 0.30, 0.02,
                        "feature_popularity")
    assert dropped.model == "feature_popularity" and "worse than the 0.3000 serving" in dropped.reason
    assert "domain_ridge 0.2000" in dropped.reason
