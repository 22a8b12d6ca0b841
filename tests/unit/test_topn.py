import numpy as np
import pytest
import torch
from scipy import sparse

from rec_models.topn import flatten, top_n
from rec_models.topn import pruned
from rec_models.topn.pruned import exact_top_k
from rec_models.topn.reference import reference_top_k


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


@pytest.mark.parametrize("low_precision", [None, torch.bfloat16])
def test_exact_search_with_pruning_matches_brute_force_everywhere(low_precision):
    """Norm-ordered termination, threshold pruning and the bfloat16 pre-test never change the answer."""
    rng = np.random.default_rng(3)
    items = (rng.normal(size=(700, 6)) * rng.lognormal(0, 0.8, (700, 1))).astype(np.float32)
    order = np.argsort(-np.linalg.norm(items, axis=1))
    items = items[order]
    q = rng.normal(size=(90, 6)).astype(np.float32)
    exclude = sparse.random(90, 700, density=0.1, random_state=2, format="csr")
    own = torch.as_tensor(rng.integers(0, 700, 90))
    for k in (1, 10, 600):
        v, i = exact_top_k(torch.as_tensor(q), torch.as_tensor(items), k, item_norms_sorted=True, exclude=exclude,
                           exclude_items=own, column_block=64, first_block=16, low_precision=low_precision)
        want_idx, want_scores = brute(q, items, k, exclude, None, own.numpy())
        np.testing.assert_allclose(v.numpy(), want_scores, rtol=1e-5, atol=1e-5)  # float32 rounding of scores near 0
        finite = np.isfinite(want_scores)
        assert (np.sort(np.where(finite, i.numpy(), -1), 1) == np.sort(np.where(finite, want_idx, -1), 1)).all()


def test_bfloat16_pretest_is_exact_where_scores_differ_below_its_resolution():
    """Items whose scores differ by far less than bfloat16 can resolve: the float32 answer still comes back."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(1, 32)).astype(np.float32)
    # 3000 near-copies of one direction: every score agrees in its first ~3 significant digits.
    items = (base + rng.normal(scale=1e-3, size=(3000, 32))).astype(np.float32)
    items = items[np.argsort(-np.linalg.norm(items, axis=1))]
    q = (base + rng.normal(scale=1e-2, size=(40, 32))).astype(np.float32)
    v, i = exact_top_k(torch.as_tensor(q), torch.as_tensor(items), 25, item_norms_sorted=True, column_block=256,
                       first_block=64, low_precision=torch.bfloat16)
    want_idx, want_scores = brute(q, items, 25)
    np.testing.assert_allclose(v.numpy(), want_scores, rtol=1e-6)
    assert (np.sort(i.numpy(), 1) == np.sort(want_idx, 1)).mean() > 0.99  # ties at float32 precision aside


def test_bfloat16_pretest_error_bound_keeps_a_winner_it_cannot_resolve():
    """B beats A by 1e-4, which bfloat16 rounds away; without the error bound the pre-test would skip B's block."""
    dim = 4
    a = np.array([1.0, 0.5, 0, 0])  # seeds the threshold: score 1.0, the largest norm
    b = np.array([1.0001, 0, 0, 0])  # the true best: score 1.0001, a later block
    fillers = lambda n, norm: np.column_stack([-np.ones(n), np.zeros(n), np.linspace(0, 1, n), np.zeros(n)]) \
        / np.sqrt(1 + np.linspace(0, 1, n)[:, None] ** 2) * norm
    items = np.vstack([a, fillers(31, 1.05), b, fillers(15, 0.5)]).astype(np.float32)
    assert (np.diff(np.linalg.norm(items, axis=1)) <= 1e-6).all()  # descending norm, as the search expects
    q = np.tile(np.array([[1.0, 0, 0, 0]], dtype=np.float32), (8, 1))
    v, i = exact_top_k(torch.as_tensor(q), torch.as_tensor(items), 1, item_norms_sorted=True, column_block=16,
                       first_block=16, low_precision=torch.bfloat16)
    assert (i.numpy()[:, 0] == 32).all()
    np.testing.assert_allclose(v.numpy()[:, 0], 1.0001, rtol=1e-6)


@pytest.mark.parametrize("low_precision", [None, torch.bfloat16])
def test_seeded_search_matches_brute_force(low_precision):
    """A seed (items scored first, then skipped by the scan) never changes the answer, exclusions
    included: excluded pairs and the query's own item inside and outside the seed."""
    rng = np.random.default_rng(4)
    items = (rng.normal(size=(900, 6)) * rng.lognormal(0, 0.8, (900, 1))).astype(np.float32)
    items = items[np.argsort(-np.linalg.norm(items, axis=1))]
    q = rng.normal(size=(70, 6)).astype(np.float32)
    exclude = sparse.random(70, 900, density=0.1, random_state=3, format="csr")
    seed = torch.as_tensor(np.sort(rng.choice(900, 150, replace=False)))
    own = torch.as_tensor(np.where(np.arange(70) % 2 == 0, seed.numpy()[np.arange(70) % 150], rng.integers(0, 900, 70)))
    for k in (1, 10, 400):
        v, i = exact_top_k(torch.as_tensor(q), torch.as_tensor(items), k, item_norms_sorted=True, exclude=exclude,
                           exclude_items=own, column_block=64, first_block=16, low_precision=low_precision, seed=seed)
        want_idx, want_scores = brute(q, items, k, exclude, None, own.numpy())
        np.testing.assert_allclose(v.numpy(), want_scores, rtol=1e-5, atol=1e-5)
        finite = np.isfinite(want_scores)
        assert (np.sort(np.where(finite, i.numpy(), -1), 1) == np.sort(np.where(finite, want_idx, -1), 1)).all()


def test_large_catalogue_search_in_windows_keeps_the_query_order(monkeypatch):
    """Catalogues large enough for seeds: queries are searched grouped by direction, window by window,
    yet blocks come back in query order with the brute-force answer."""
    import rec_models.topn.search as search

    monkeypatch.setattr(search, "WINDOW_BYTES", 12 * 10 * 700)  # several windows of 700 queries
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(20, 8))
    items = (centres[rng.integers(0, 20, 5000)] + rng.normal(scale=0.5, size=(5000, 8))).astype(np.float32)
    q = (centres[rng.integers(0, 20, 1500)] + rng.normal(scale=0.5, size=(1500, 8))).astype(np.float32)
    rows = rng.permutation(1500)[:1400]
    exclude = sparse.random(1500, 5000, density=0.01, random_state=5, format="csr")
    allowed = rng.random(5000) > 0.1
    blocks = list(top_n(q, items, 10, query_rows=rows, exclude=exclude, allowed_items=allowed,
                        block_bytes=4 * 1024 * 100, device=torch.device("cpu")))
    assert len(blocks) > 3
    assert [b.start for b in blocks] == list(np.cumsum([0] + [len(b.queries) for b in blocks[:-1]]))
    np.testing.assert_array_equal(np.concatenate([b.queries for b in blocks]), rows)
    want_idx, want_scores = brute(q[rows], items, 10, exclude[rows], allowed)
    np.testing.assert_allclose(np.vstack([b.scores for b in blocks]), want_scores, rtol=1e-5, atol=1e-5)
    assert (np.vstack([b.items for b in blocks]) == want_idx).mean() > 0.999  # float32 ties aside


@pytest.mark.parametrize("low_precision", [None, torch.bfloat16])
def test_pruned_search_equals_the_plain_reference(low_precision):
    """The fast path (thresholds, norm order, seed, pre-test) and the plain blocked top-k agree."""
    rng = np.random.default_rng(8)
    items = (rng.normal(size=(2000, 16)) * rng.lognormal(0, 0.5, (2000, 1))).astype(np.float32)
    items = items[np.argsort(-np.linalg.norm(items, axis=1))]
    q = torch.as_tensor(rng.normal(size=(120, 16)).astype(np.float32))
    exclude = sparse.random(120, 2000, density=0.05, random_state=9, format="csr")
    own = torch.as_tensor(rng.integers(0, 2000, 120))
    seed = torch.as_tensor(np.sort(rng.choice(2000, 300, replace=False)))
    want_v, want_i = reference_top_k(q, torch.as_tensor(items), 20, exclude=exclude, exclude_items=own, column_block=128)
    for use_seed in (None, seed):
        v, i = exact_top_k(q, torch.as_tensor(items), 20, item_norms_sorted=True, exclude=exclude, exclude_items=own,
                           column_block=128, first_block=32, low_precision=low_precision, seed=use_seed)
        torch.testing.assert_close(v, want_v, rtol=1e-5, atol=1e-5)
        assert (i == want_i).float().mean() > 0.999  # float32 ties aside


def test_reference_matches_brute_force():
    rng = np.random.default_rng(10)
    q, items = rng.normal(size=(33, 5)).astype(np.float32), rng.normal(size=(301, 5)).astype(np.float32)
    exclude = sparse.random(33, 301, density=0.1, random_state=11, format="csr")
    v, i = reference_top_k(torch.as_tensor(q), torch.as_tensor(items), 7, exclude=exclude, column_block=50)
    want_idx, want_scores = brute(q, items, 7, exclude)
    np.testing.assert_allclose(v.numpy(), want_scores, rtol=1e-5)
    np.testing.assert_array_equal(i.numpy(), want_idx)


def test_bfloat16_bits_maximum_never_misses_a_row_the_plain_maximum_finds():
    """The int16 view of positive bfloat16 values keeps their order: the same rows as the plain row
    maximum, plus (the cut is stepped down one bfloat16 value, to be safe) rows whose maximum sits at the cut."""
    rng = np.random.default_rng(12)
    tile = torch.as_tensor(rng.normal(size=(500, 300)).astype(np.float32)).to(torch.bfloat16)
    cuts = torch.as_tensor(rng.normal(loc=2.0, scale=1.5, size=500).astype(np.float32))  # some <= 0
    cuts[:50] = tile[:50].float().amax(dim=1)  # cuts exactly at a row's maximum: that row has none above
    assert (cuts <= 0).any() and (cuts > 0).any()
    bits, plain = pruned._may_beat(tile, cuts), pruned._may_beat_plain(tile, cuts)
    assert not (plain & ~bits).any()
    assert bits[:50].all() and not plain[:50].any()
    torch.testing.assert_close(bits[50:], plain[50:])


def test_chunk_maxima_bound_the_kth_best_from_below():
    rng = np.random.default_rng(13)
    scores = torch.as_tensor(rng.normal(size=(64, 1024)).astype(np.float32))
    for k in (1, 10, 64):
        bound = pruned._chunk_max_bound(scores, k)
        kth = torch.topk(scores, k, dim=1).values[:, -1]
        assert (bound < kth).all() and ((scores > bound[:, None]).sum(1) >= k).all()
    assert torch.isneginf(pruned._chunk_max_bound(scores[:, :16], 10)).all()  # too narrow: no bound


def test_thread_count_is_restored_after_single_threaded_blocks():
    from rec_models.threads import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    rng = np.random.default_rng(14)
    vectors = rng.normal(size=(6000, 8)).astype(np.float32)
    for _ in top_n(vectors, vectors, 5, query_rows=np.arange(3000), device=torch.device("cpu")):
        assert torch.get_num_threads() == before  # the caller's code between blocks runs with its threads


def test_bfloat16_pretest_follows_the_hardware():
    flags = pruned._cpu_flags()
    assert pruned.filter_dtype("cpu") == (torch.bfloat16 if flags & {"avx512_bf16", "amx_bf16"} else None)
    assert pruned.filter_dtype("mps") is None
