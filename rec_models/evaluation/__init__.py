"""Evaluation: ranking metrics (full ranking by default), the benchmark protocols, and bootstrap tests."""

from rec_models.evaluation.metrics import RankingMetrics, evaluate_blocks, evaluate_model, evaluate_ranking

__all__ = ["RankingMetrics", "evaluate_blocks", "evaluate_model", "evaluate_ranking"]
