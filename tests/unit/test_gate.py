"""The quality gate's decision, apart from the database."""

import math

import pytest

from rec_models.config import PipelineConfig
from rec_models.evaluation.gate import PublishedRun, may_publish, plan_publishing, quality_gate, warm_gate
from rec_models.names import DOT_PRODUCT_MODELS, MODEL_NAMES


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


def _evaluation(model, ndcg, passed=True, dot_product=True):
    return {"model": model, "ndcg@10": ndcg, "publish": passed, "dot_product": dot_product}


def test_publish_plan_scores_and_publishes_the_serving_model_and_those_named():
    evaluations = [_evaluation("mf", 0.20), _evaluation("neumf", 0.30, dot_product=False),
                   _evaluation("two_tower", 0.25)]
    serving_only = plan_publishing(evaluations, "auto", ())
    assert serving_only.serving == "two_tower" and serving_only.published == ("two_tower",)  # best dot product
    assert plan_publishing(evaluations, "auto", ("mf",)).published == ("mf", "two_tower")
    assert plan_publishing(evaluations, "auto", ("mf", "neumf", "two_tower")).published == ("mf", "neumf", "two_tower")
    named = plan_publishing(evaluations, "neumf", ())
    assert named.serving == "neumf" and named.published == ("neumf",)


def test_a_candidate_is_gated_against_an_accepted_run_it_names_as_such():
    decision = quality_gate(0.25, PublishedRun(model_run_id=4, ndcg=0.3, published=False), tolerance=0.02)
    assert not decision.publish and "accepted run 4 (0.3000" in decision.reason


def test_publish_plan_never_publishes_a_rejected_model():
    evaluations = [_evaluation("mf", 0.20), _evaluation("neumf", 0.30, passed=False), _evaluation("two_tower", 0.1)]
    plan = plan_publishing(evaluations, "neumf", ("neumf",))
    assert plan.serving == "mf" and plan.published == ("mf",) and "did not pass its gate" in plan.reason
    nothing = plan_publishing([_evaluation("mf", 0.2, passed=False)], "auto", ("mf",))
    assert nothing.serving is None and nothing.published == ()


def test_publish_models_setting():
    assert PipelineConfig().published_besides_serving() == ()
    assert PipelineConfig(publish_models="all").published_besides_serving() == MODEL_NAMES
    assert PipelineConfig.from_params({"publish_models": "mf, two_tower"}).published_besides_serving() == \
        ("mf", "two_tower")
    with pytest.raises(ValueError, match="publish_models must be serving, all or model names .* got 'mf,svd'"):
        PipelineConfig(publish_models="mf,svd")


def test_scoring_starts_before_neumfs_evaluation_only_where_no_outcome_of_it_changes_the_plan():
    """"auto" never chooses NeuMF over a dot-product model that passed: with serving_model auto the best
    dot-product model is scored without waiting, the other is skipped; a named NeuMF leaves the best
    dot-product model open (it serves if NeuMF fails); a pending dot-product model leaves others open."""
    dot = [_evaluation("mf", 0.20), _evaluation("two_tower", 0.25)]
    pending = ("neumf",)

    def may(model, evaluations=dot, waiting=pending, serving="auto", besides=()):
        return may_publish(model, evaluations, waiting, serving, besides, DOT_PRODUCT_MODELS)

    assert may("two_tower") and not may("mf")
    assert may("mf", besides=("mf",))
    # A named NeuMF: the two-tower serves if NeuMF fails its gate (scored, the publish step decides);
    # MF serves in no outcome.
    assert may("two_tower", serving="neumf") and not may("mf", serving="neumf")
    assert not may("mf", [_evaluation("mf", 0.2, passed=False), dot[1]])
    assert may("mf", [dot[0]], ("neumf", "two_tower")) and may("mf", [dot[0]], ("two_tower",))
    everything = dot + [_evaluation("neumf", 0.3, dot_product=False)]
    assert may("two_tower", everything, ()) and not may("neumf", everything, ())  # nothing pending: the plan


def test_the_dot_product_models_are_those_whose_class_says_so():
    from rec_models.models import build_model

    assert DOT_PRODUCT_MODELS == tuple(m for m in MODEL_NAMES if build_model(m, PipelineConfig()).dot_product)
