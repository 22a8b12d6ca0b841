import numpy as np
import pytest
from scipy import sparse

from rec_models.evaluation import evaluate_ranking


def test_metrics_on_a_hand_checked_case():
    # Items scored by a single dimension: item j has score j for every user.
    items = np.arange(6, dtype=np.float32)[:, None]
    users = np.ones((2, 1), dtype=np.float32)
    train = sparse.csr_matrix(np.array([[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]], dtype=np.float32))
    # user 0: ranking (5 excluded) 4,3,2,...: relevant {3, 0}; user 1: ranking 5,4,...: relevant {1}
    test = sparse.csr_matrix(np.array([[1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=np.float32))
    m = evaluate_ranking(users, items, train, test, np.array([0, 1]), k=2)
    # user 0: top2 = [4, 3] -> one hit at rank 2; ideal DCG for 2 relevant = 1 + 1/log2(3)
    ndcg0 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m.per_user_ndcg[0] == pytest.approx(ndcg0)
    assert m.per_user_recall[0] == pytest.approx(0.5)
    # user 1: top2 = [5, 4] -> no hit
    assert m.per_user_ndcg[1] == 0 and m.per_user_recall[1] == 0
    assert m.hr == pytest.approx(0.5)
    assert m.coverage == pytest.approx(3 / 6)  # items 3, 4, 5 recommended


def test_perfect_ranking_scores_one():
    items = np.eye(4, dtype=np.float32)
    users = np.eye(4, dtype=np.float32)
    train = sparse.csr_matrix((4, 4), dtype=np.float32)
    test = sparse.identity(4, format="csr", dtype=np.float32)
    m = evaluate_ranking(users, items, train, test, np.arange(4), k=1)
    assert m.ndcg == pytest.approx(1.0) and m.recall == pytest.approx(1.0) and m.hr == 1.0
