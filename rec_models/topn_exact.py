"""Exact top-k by dot product, faster than scoring-then-sorting everything.

For each block of queries the catalogue is scanned in column blocks; the running k-th best score of
every query is a threshold, and a column block is only searched (topk) for the queries where some
score beats it. After the first blocks almost none do, so the cost approaches the matmul alone.
With items in descending norm order, a query whose |q| * (largest remaining item norm) cannot beat
its k-th best score is finished early (norm-ordered termination).

Where bfloat16 matmul is measured faster than float32 (CPUs with AVX512-BF16, GPUs), that test runs
on a bfloat16 tile with a proven error bound: |approx - exact| <= FILTER_ERROR * |q| * |x|. A query
whose approximate block maximum plus that bound cannot beat its threshold provably has no candidate
in the block; the few that might are rescored in float32, so every returned score and item is the
float32 answer. Ties at the k-th score aside, the result equals a full sort. Memory: one
(query block x column block) tile at a time.
"""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import torch
from scipy import sparse

# bfloat16 rounds each input and the output with unit roundoff 2^-8 (fp32 accumulation in between):
# per Cauchy-Schwarz the error is <= ~3u |q||x|; 4u leaves room for non-IEEE rounding in the kernel.
FILTER_ERROR = 4 * 2.0 ** -8


@cache
def filter_dtype(device_type: str) -> torch.dtype | None:
    """bfloat16 where a bfloat16 matmul of the scoring shape is measured clearly faster than float32 on
    this device (AVX512-BF16 or AMX CPUs, GPUs), else None (the test runs on the exact tile)."""
    device = torch.device(device_type)
    try:
        noise = torch.Generator(device=device).manual_seed(0)  # private: the global RNG stays untouched
        q = torch.randn(1024, 64, device=device, generator=noise)
        x = torch.randn(2048, 64, device=device, generator=noise)
        seconds = {}
        for dtype in (torch.float32, torch.bfloat16):
            a, b = q.to(dtype), x.to(dtype)
            a @ b.T
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(5):
                a @ b.T
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[dtype] = time.perf_counter() - started
    except RuntimeError:  # no bfloat16 matmul on this device
        return None
    return torch.bfloat16 if seconds[torch.bfloat16] < 0.6 * seconds[torch.float32] else None


def exact_top_k(
    queries: torch.Tensor,
    items: torch.Tensor,
    k: int,
    *,
    item_norms_sorted: bool = False,
    exclude: sparse.csr_matrix | None = None,
    exclude_items: torch.Tensor | None = None,
    column_block: int = 2048,
    first_block: int = 512,
    low_precision: torch.dtype | None | str = "auto",
    items_low: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices), each (len(queries), k), best first; -inf where fewer than k candidates.

    exclude: CSR (len(queries) x n_items) of pairs never returned; exclude_items: one item per query
    never returned (itself; negative: none). item_norms_sorted: items are in descending L2-norm order
    (enables early termination). low_precision: dtype of the pruning test ("auto": measured, None: float32);
    items_low: items already in that dtype (saves converting the catalogue for every query block).
    """
    n_q, n_items = queries.shape[0], items.shape[0]
    k = min(k, n_items)
    device = queries.device
    if low_precision == "auto":
        low_precision = filter_dtype(device.type)
    best_v = torch.full((n_q, k), float("-inf"), device=device)
    best_i = torch.zeros((n_q, k), dtype=torch.int64, device=device)
    threshold = best_v[:, -1].clone()
    q_norm = queries.norm(dim=1)
    item_norm = items.norm(dim=1)
    active = torch.ones(n_q, dtype=torch.bool, device=device)
    mask = _Exclusions(n_q, device, exclude, exclude_items)
    if low_precision is not None:
        queries_low = queries.to(low_precision)
        items_low = items.to(low_precision) if items_low is None else items_low
    # A small first block seeds every threshold cheaply (with norm order: from the largest items).
    starts = [0, *range(min(first_block, n_items), n_items, column_block)]
    hit_share = 1.0
    for start, stop in zip(starts, [*starts[1:], n_items]):
        rows = active.nonzero().squeeze(1) if item_norms_sorted else torch.arange(n_q, device=device)
        n_active = rows.shape[0]
        if n_active == 0:
            break
        # The pre-test pays off only where most queries have nothing in the block (not the first ones).
        if low_precision is not None and hit_share < LOW_PRECISION_BELOW_HIT_SHARE:
            # Provably no candidate where the approximate maximum plus its error bound stays below.
            approx = queries_low[rows] @ items_low[start:stop].T
            mask(approx, rows, start, stop)
            block_norm = item_norm[start] if item_norms_sorted else item_norm[start:stop].max()
            bound = approx.amax(dim=1).float() + FILTER_ERROR * q_norm[rows] * block_norm
            rows = rows[bound > threshold[rows]]
        if rows.shape[0]:
            scores = queries[rows] @ items[start:stop].T
            mask(scores, rows, start, stop)
            hit_share = _merge(best_v, best_i, threshold, rows, scores, start) / n_active
        else:
            hit_share = 0.0
        if item_norms_sorted and stop < n_items:
            # No remaining item can beat the k-th best: |q . x| <= |q| |x| <= |q| * (next norm).
            active &= q_norm * item_norm[stop] > threshold
    # Rows whose best entries were never filled keep -inf, like the plain search.
    return best_v, best_i


# Below this share of queries with a candidate in the last block, the bfloat16 pre-test runs first.
LOW_PRECISION_BELOW_HIT_SHARE = 0.5
# Rows with at most this many scores above their threshold merge just those (no topk over the tile).
SPARSE_CANDIDATES = 256


def _merge(best_v, best_i, threshold, rows, scores, start) -> int:
    """Merge a block's scores (for ``rows``) into the running best k of those rows, in place; returns
    how many of the rows had a score above their k-th best.

    After the first blocks a row has only a handful of scores above its k-th best, and a topk over the
    whole tile costs several times the matmul; those few are gathered (nonzero) and merged instead.
    Rows with many (early blocks), or no k-th best yet, take a topk of their tile rows."""
    thresholds = threshold[rows]
    unseeded = torch.isneginf(thresholds)
    n_hit = 0
    if bool(unseeded.any()):
        n_hit += _merge_topk(best_v, best_i, threshold, rows, scores, start, unseeded.nonzero().squeeze(1))
        if n_hit == rows.shape[0]:
            return n_hit
        seeded = (~unseeded).nonzero().squeeze(1)
        rows, scores, thresholds = rows[seeded], scores[seeded], thresholds[seeded]
    r, c = (scores > thresholds[:, None]).nonzero(as_tuple=True)  # row-major: a row's are contiguous
    counts = torch.bincount(r, minlength=rows.shape[0])
    many = counts > SPARSE_CANDIDATES
    if bool(many.any()):
        n_hit += _merge_topk(best_v, best_i, threshold, rows, scores, start, many.nonzero().squeeze(1))
        keep = ~many[r]
        r, c, counts = r[keep], c[keep], counts.masked_fill(many, 0)
    if r.shape[0] == 0:
        return n_hit
    has = counts > 0
    hit_rows = has.nonzero().squeeze(1)
    compact = torch.cumsum(has, 0) - 1  # row in the tile -> row among those with candidates
    hit_counts = counts[hit_rows]
    rr = compact[r]
    slot = torch.arange(r.shape[0], device=scores.device) - (torch.cumsum(hit_counts, 0) - hit_counts)[rr]
    most = int(hit_counts.max())
    v = torch.full((hit_rows.shape[0], most), float("-inf"), device=scores.device)
    i = torch.zeros((hit_rows.shape[0], most), dtype=torch.int64, device=scores.device)
    v[rr, slot] = scores[r, c]
    i[rr, slot] = c + start
    _merge_rows(best_v, best_i, threshold, rows[hit_rows], v, i)
    return n_hit + hit_rows.shape[0]


def _merge_topk(best_v, best_i, threshold, rows, scores, start, dense) -> int:
    """Merge the tile's top k of the tile rows ``dense`` (rows with many candidates, or no k-th best yet)."""
    v, i = torch.topk(scores[dense], min(best_v.shape[1], scores.shape[1]), dim=1)
    _merge_rows(best_v, best_i, threshold, rows[dense], v, i + start)
    return dense.shape[0]


def _merge_rows(best_v, best_i, threshold, rows, v, i) -> None:
    merged_v = torch.cat([best_v[rows], v], dim=1)
    merged_i = torch.cat([best_i[rows], i], dim=1)
    top_v, order = torch.topk(merged_v, best_v.shape[1], dim=1)
    best_v[rows] = top_v
    best_i[rows] = torch.gather(merged_i, 1, order)
    threshold[rows] = top_v[:, -1]


class _Exclusions:
    """Sets excluded (query, item) pairs of a score tile to -inf: a CSR of pairs and one item per query."""

    def __init__(self, n_q: int, device: torch.device, exclude: sparse.csr_matrix | None,
                 exclude_items: torch.Tensor | None):
        self.n_q, self.device = n_q, device
        self.pairs = _by_column(exclude) if exclude is not None and exclude.nnz else None
        self.own = exclude_items

    def __call__(self, tile: torch.Tensor, rows: torch.Tensor, start: int, stop: int) -> None:
        if self.pairs is None and self.own is None:
            return
        local = torch.arange(rows.shape[0], device=self.device)
        if self.pairs is not None:
            r, c = self.pairs(start, stop)
            if len(r):
                position = torch.full((self.n_q,), -1, dtype=torch.int64, device=self.device)
                position[rows] = local
                r_t = position[torch.as_tensor(r, device=self.device)]
                keep = r_t >= 0
                tile[r_t[keep], torch.as_tensor(c - start, device=self.device)[keep]] = float("-inf")
        if self.own is not None:
            own = self.own[rows] - start
            inside = (own >= 0) & (own < stop - start)
            tile[local[inside], own[inside]] = float("-inf")


def _by_column(matrix: sparse.csr_matrix):
    """A function (start, stop) -> (rows, cols) of the nonzeros with start <= col < stop."""
    coo = matrix.tocoo()
    order = np.argsort(coo.col, kind="stable")
    cols, rows = coo.col[order].astype(np.int64), coo.row[order].astype(np.int64)

    def between(start: int, stop: int):
        a, b = np.searchsorted(cols, start), np.searchsorted(cols, stop)
        return rows[a:b], cols[a:b]

    return between
