import numpy as np
from scipy import sparse

from rec_models.topn import flatten, top_n


def brute(q, items, k, exclude=None, allowed=None, own=None):
    scores = q @ items.T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    if exclude is not None:
        scores[exclude.toarray() > 0] = -np.inf
    if own is not None:
        scores[np.arange(len(q)), own] = -np.inf
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, 1)


def test_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    q, items = rng.normal(size=(57, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    exclude = sparse.random(57, 40, density=0.2, random_state=1, format="csr")
    allowed = rng.random(40) > 0.2
    blocks = list(top_n(q, items, 5, exclude=exclude, allowed_items=allowed, block_bytes=4 * 40 * 7))
    assert len(blocks) > 1  # really blocked
    got_idx = np.vstack([b.items for b in blocks])
    got_scores = np.vstack([b.scores for b in blocks])
    want_idx, want_scores = brute(q, items, 5, exclude, allowed)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)
    finite = np.isfinite(want_scores)
    np.testing.assert_array_equal(got_idx[finite], want_idx[finite])


def test_query_rows_and_self_exclusion():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(30, 4)).astype(np.float32)
    rows = np.array([3, 7, 29])
    (block,) = list(top_n(vectors, vectors, 4, query_rows=rows, exclude_items=rows))
    np.testing.assert_array_equal(block.queries, rows)
    assert not (block.items == rows[:, None]).any()
    want_idx, _ = brute(vectors[rows], vectors, 4, own=rows)
    np.testing.assert_array_equal(block.items, want_idx)


def test_flatten_drops_missing_candidates_and_ranks_from_one():
    items = np.eye(3, dtype=np.float32)
    q = np.ones((2, 3), dtype=np.float32)
    exclude = sparse.csr_matrix(np.array([[1, 1, 0], [0, 0, 0]]))
    (block,) = list(top_n(q, items, 3, exclude=exclude))
    ids = np.array([10, 20])
    users, ranks, videos, scores = flatten(block, ids, np.array([100, 200, 300]))
    assert users.tolist() == [10, 20, 20, 20]
    assert ranks.tolist() == [1, 1, 2, 3]
    assert videos[0] == 300
    assert np.isfinite(scores).all()


def test_exact_search_with_pruning_matches_brute_force_everywhere():
    """Norm-ordered termination and threshold pruning never change the answer."""
    from rec_models.topn_exact import exact_top_k
    import torch

    rng = np.random.default_rng(3)
    items = (rng.normal(size=(700, 6)) * rng.lognormal(0, 0.8, (700, 1))).astype(np.float32)
    order = np.argsort(-np.linalg.norm(items, axis=1))
    items = items[order]
    q = rng.normal(size=(90, 6)).astype(np.float32)
    exclude = sparse.random(90, 700, density=0.1, random_state=2, format="csr")
    allowed = rng.random(700) > 0.15
    penalty = torch.as_tensor(np.where(allowed, 0, -np.inf).astype(np.float32))
    own = torch.as_tensor(rng.integers(0, 700, 90))
    for k in (1, 10, 600):
        v, i = exact_top_k(torch.as_tensor(q), torch.as_tensor(items), k, item_norms_sorted=True, exclude=exclude,
                           exclude_items=own, penalty=penalty, column_block=64, first_block=16)
        want_idx, want_scores = brute(q, items, k, exclude, allowed, own.numpy())
        np.testing.assert_allclose(v.numpy(), want_scores, rtol=1e-5)
        finite = np.isfinite(want_scores)
        assert (np.sort(np.where(finite, i.numpy(), -1), 1) == np.sort(np.where(finite, want_idx, -1), 1)).all()
